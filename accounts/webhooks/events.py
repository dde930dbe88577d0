"""The event types and `emit()`, the one call the rest of the product makes.

Emitting is cheap when nobody listens: the set of event types a tenant's
enabled endpoints want is cached (SUBSCRIPTIONS_SECONDS, dropped on every
endpoint change), so the dispatcher pays one cache read, not a query, for a
tenant without webhooks. The data may be a function: it is only called when
someone listens, after the caller's transaction committed. Nothing here
raises into the caller: a failure to record an event is logged, and the
sending, bouncing or importing that caused it goes on."""

import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from config import statements

from .models import WebhookDelivery, WebhookEndpoint, WebhookOnce

log = logging.getLogger(__name__)

LETTER_BOUNCED = "letter.bounced"
LETTER_COMPLAINED = "letter.complained"
CONTACT_UNSUBSCRIBED = "contact.unsubscribed"
MAILING_STATE_CHANGED = "mailing.state_changed"
MAILING_COMPLETED = "mailing.completed"
SERVER_FAILING = "server.failing"
SERVER_LIMIT_REACHED = "server.limit_reached"
IMPORT_FINISHED = "import.finished"
TEST = "webhook.test"  # the "Send test event" button's; no endpoint subscribes to it

TYPES: dict[str, Any] = {
    LETTER_BOUNCED: _("A letter bounced (a delivery failure report was matched to it)"),
    LETTER_COMPLAINED: _("A recipient marked a letter as spam (a feedback loop's complaint)"),
    CONTACT_UNSUBSCRIBED: _("A recipient unsubscribed through the link in a letter"),
    MAILING_STATE_CHANGED: _("A mailing changed state (started, paused, waiting for limits, …)"),
    MAILING_COMPLETED: _("A mailing completed"),
    SERVER_FAILING: _("One of your sending servers started failing"),
    SERVER_LIMIT_REACHED: _("A sending server reached its hourly or daily limit, or a daily quota"),
    IMPORT_FINISHED: _("A contact import finished (done or failed)"),
}

# How long the answer "which types does this tenant listen to" is kept. Each
# endpoint change drops it; with a per-process cache (CACHE_URL unset) other
# processes see a change within this time.
SUBSCRIPTIONS_SECONDS = 30

Data = dict[str, Any] | Callable[[], dict[str, Any]]


def _key(tenant_id: int) -> str:
    return f"webhooks:types:{tenant_id}"


_EVENTS = WebhookEndpoint._meta.get_field("events")
# Plain SQL (config.statements): the dispatcher asks it of every tenant whose
# mailing it finishes, mostly tenants without webhooks whose answer is not in
# the cache, and the ORM's compiling of it was 8% of its CPU with 200 small
# mailings at once.
_TYPES_SQL = "SELECT {events} FROM {table} WHERE {tenant} = %s AND {enabled} = %s".format(  # noqa: S608 (names only)
    table=WebhookEndpoint._meta.db_table,
    events=_EVENTS.column,
    tenant=WebhookEndpoint._meta.get_field("tenant").column,
    enabled=WebhookEndpoint._meta.get_field("enabled").column,
)


def subscribed_types(tenant_id: int) -> frozenset[str]:
    types = cache.get(_key(tenant_id))
    if types is None:
        with statements.cursor() as cursor:
            cursor.execute(_TYPES_SQL, [tenant_id, True])
            wanted = [_EVENTS.from_db_value(value, None, cursor.db) for (value,) in cursor.fetchall()]
        types = frozenset(t for events in wanted if events for t in events)
        cache.set(_key(tenant_id), types, SUBSCRIPTIONS_SECONDS)
    return types


def forget_subscriptions(tenant_id: int) -> None:
    cache.delete(_key(tenant_id))


def emit(
    *, tenant_id: int | None, type: str, data: Data, once: tuple[str, timedelta] | None = None,
    at: datetime | None = None,
) -> None:  # fmt: skip
    """Record `type` for the tenant's endpoints that want it, once the
    current transaction commits. `once=(key, span)`: not again for the same
    key within `span` (a limit reached is told once per window). `at`: when
    it happened, if not now (the dispatcher's clock)."""
    if tenant_id is None:
        return  # a platform server's own business: staff's, not a tenant's
    try:
        if type not in subscribed_types(tenant_id):
            return
        created = at or timezone.now()
        transaction.on_commit(lambda: _record_safely(tenant_id, type, data, once, created), robust=True)
    except Exception:
        log.exception("webhook event %s of tenant %s could not be emitted", type, tenant_id)


def _record_safely(tenant_id: int, type: str, data: Data, once: tuple[str, timedelta] | None, created: datetime):
    try:
        record(tenant_id=tenant_id, type=type, data=data, once=once, created=created)
    except Exception:
        log.exception("webhook event %s of tenant %s could not be recorded", type, tenant_id)


def record(
    *, tenant_id: int, type: str, data: Data, created: datetime, once: tuple[str, timedelta] | None = None
) -> list[WebhookDelivery]:
    """One delivery per enabled endpoint that wants `type`, queued."""
    endpoints = [e for e in WebhookEndpoint.objects.filter(tenant_id=tenant_id, enabled=True) if type in e.events]
    if not endpoints or (once and not claim_once(tenant_id, *once, now=created)):
        return []
    payload = data() if callable(data) else data
    event_id = uuid.uuid4()
    with transaction.atomic():
        deliveries = WebhookDelivery.objects.bulk_create(
            WebhookDelivery(endpoint=e, event_id=event_id, event_type=type, created=created, data=payload)
            for e in endpoints
        )
    enqueue(deliveries)
    return deliveries


def enqueue(deliveries: list[WebhookDelivery], *, due: datetime | None = None) -> None:
    """A task per delivery, once committed. `due`: the moment the sweep
    found them due; the task attempts one only if it still is due then (an
    attempt made meanwhile has moved its next one later)."""
    from . import tasks

    when = due.isoformat() if due else None
    for delivery in deliveries:
        transaction.on_commit(lambda pk=delivery.pk: tasks.deliver_webhook.delay(pk, when), robust=True)


def claim_once(tenant_id: int, key: str, span: timedelta, *, now: datetime) -> bool:
    """True for the first caller with this key within `span`: a conditional
    update of the key's row (or its insert), so two workers never both win."""
    full_key = f"{tenant_id}:{key}"[:150]
    with transaction.atomic():
        if WebhookOnce.objects.filter(key=full_key).filter(Q(until__lte=now)).update(until=now + span):
            return True
        try:
            with transaction.atomic():
                WebhookOnce.objects.create(tenant_id=tenant_id, key=full_key, until=now + span)
        except IntegrityError:
            return False  # the row exists and its span has not passed
    return True
