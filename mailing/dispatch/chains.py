"""Chains of batches: each task runs one batch and queues the next.
DISPATCH_CHAINS slots per mailing let that many workers send one mailing
side by side; a slot whose chain stopped renewing (its worker died) is free
again after its lease."""

from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from ..models import DispatchChain

CHAIN_LEASE = timedelta(seconds=120)


def take_chain(mailing_id: int, *, now: datetime | None = None) -> int | None:
    """A free chain slot of the mailing (None when DISPATCH_CHAINS chains
    already run): a conditional UPDATE, or the INSERT of a new slot row;
    either way only one caller wins a slot."""
    now = now or timezone.now()
    free = Q(until__isnull=True) | Q(until__lt=now)
    for slot in range(settings.DISPATCH_CHAINS):
        chains = DispatchChain.objects.filter(mailing_id=mailing_id, slot=slot)
        if chains.filter(free).update(until=now + CHAIN_LEASE):
            return slot
        try:
            with transaction.atomic():
                DispatchChain.objects.create(mailing_id=mailing_id, slot=slot, until=now + CHAIN_LEASE)
        except IntegrityError:
            continue  # the slot exists and is busy
        return slot
    return None


def renew_chain(mailing_id: int, slot: int | None, *, more: bool, now: datetime | None = None) -> None:
    if slot is None:
        return  # a chain started by hand (benchmarks, tests) holds no slot
    until = (now or timezone.now()) + CHAIN_LEASE if more else None
    DispatchChain.objects.filter(mailing_id=mailing_id, slot=slot).update(until=until)


def free_chain_slots(mailing_id: int) -> list[int]:
    """Take the free slots, at most DISPATCH_CHAINS of them (a chain that
    ran eagerly and already ended must not be started again here)."""
    slots = []
    for _ in range(settings.DISPATCH_CHAINS):
        slot = take_chain(mailing_id)
        if slot is None or slot in slots:
            break
        slots.append(slot)
    return slots


def hold_chains(mailing_id: int, *, until: datetime) -> None:
    """Take every slot until `until` (tests that act as the worker)."""
    for slot in range(settings.DISPATCH_CHAINS):
        DispatchChain.objects.update_or_create(mailing_id=mailing_id, slot=slot, defaults={"until": until})
