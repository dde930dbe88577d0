"""Chains of batches: each task runs one batch and queues the next.
DISPATCH_CHAINS slots per mailing let that many workers send one mailing
side by side; a slot whose chain stopped renewing (its worker died) is free
again after its lease."""

from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from config import statements

from ..models import DispatchChain
from .claims import DUE_COUNT, PENDING, SMALLEST_SHARE

CHAIN_LEASE = timedelta(seconds=120)

_TABLE = DispatchChain._meta.db_table
# A slot is taken by inserting its row, or by moving the lease of a row
# whose chain ended or whose lease ran out: one statement for all the slots
# asked for, where the ORM's try-update-then-insert took about seven round
# trips for two slots (and a savepoint per slot that was busy). Every start
# and every beat tick asks it of every running mailing. The row lock of the
# upsert lets only one caller win a slot.
_TAKE_SQL = (
    f"INSERT INTO {_TABLE} (mailing_id, slot, until) VALUES {{values}} "  # noqa: S608 (names only)
    f"ON CONFLICT (mailing_id, slot) DO UPDATE SET until = excluded.until "
    f"WHERE {_TABLE}.until IS NULL OR {_TABLE}.until < %s RETURNING slot"
)
_RENEW_SQL = f"UPDATE {_TABLE} SET until = %s WHERE mailing_id = %s AND slot = %s"  # noqa: S608 (names only)


def _take(mailing_id: int, slots: Iterable[int], now: datetime) -> list[int]:
    """The slots among `slots` that were free and are now this caller's."""
    slots = list(slots)
    if not slots:
        return []
    until = connection.ops.adapt_datetimefield_value(now + CHAIN_LEASE)
    params = [value for slot in slots for value in (mailing_id, slot, until)]
    with statements.cursor() as cursor:
        cursor.execute(
            _TAKE_SQL.format(values=", ".join(["(%s, %s, %s)"] * len(slots))),
            [*params, connection.ops.adapt_datetimefield_value(now)],
        )
        return sorted(row[0] for row in cursor.fetchall())


def take_chain(mailing_id: int, *, now: datetime | None = None) -> int | None:
    """The first free chain slot of the mailing (None when DISPATCH_CHAINS
    chains already run)."""
    now = now or timezone.now()
    for slot in range(settings.DISPATCH_CHAINS):
        if _take(mailing_id, [slot], now):
            return slot
    return None


def renew_chain(mailing_id: int, slot: int | None, *, more: bool, now: datetime | None = None) -> None:
    if slot is None:
        return  # a chain started by hand (benchmarks, tests) holds no slot
    until = (now or timezone.now()) + CHAIN_LEASE if more else None
    with statements.cursor() as cursor:  # once a task: plain SQL, not the ORM's compiling
        cursor.execute(_RENEW_SQL, [connection.ops.adapt_datetimefield_value(until), mailing_id, slot])


def free_chain_slots(mailing_id: int, *, now: datetime | None = None) -> list[int]:
    """Take every free slot, at most DISPATCH_CHAINS of them, in one
    statement."""
    return _take(mailing_id, range(settings.DISPATCH_CHAINS), now or timezone.now())


def wanted_chains(mailing_id: int, now: datetime) -> int:
    """As many chains as the letters due now fill, SMALLEST_SHARE letters
    a conversation (claims.share): a 20-letter mailing gets one chain, not a
    second task and connection that would carry nothing. At least one (it
    settles a mailing with nothing due), at most DISPATCH_CHAINS."""
    most = settings.DISPATCH_CHAINS
    if most <= 1:
        return most
    with statements.cursor() as cursor:
        cursor.execute(
            DUE_COUNT, [mailing_id, *PENDING, connection.ops.adapt_datetimefield_value(now), most * SMALLEST_SHARE]
        )
        due = cursor.fetchone()[0]
    return max(1, min(most, due // SMALLEST_SHARE))


def needed_chain_slots(mailing_id: int, *, now: datetime | None = None) -> list[int]:
    """The free slots among the first wanted_chains() ones, now taken: what
    a start and every beat tick queue a chain for. A slot beyond them stays
    free for a tick that finds more letters due (deferred ones come due)."""
    now = now or timezone.now()
    return _take(mailing_id, range(wanted_chains(mailing_id, now)), now)


def hold_chains(mailing_id: int, *, until: datetime) -> None:
    """Take every slot until `until` (tests that act as the worker)."""
    for slot in range(settings.DISPATCH_CHAINS):
        DispatchChain.objects.update_or_create(mailing_id=mailing_id, slot=slot, defaults={"until": until})
