"""Sending a delivery, its retries, and the test event.

An attempt: claim the delivery (a conditional UPDATE), POST the signed body
(client), log the attempt (WebhookAttempt), then either it succeeded (any
2xx), or it is tried again later, or, a day after the event, it failed.
The waits double from WEBHOOK_RETRY_BASE (1, 2, 4, ... minutes); the last
attempt is made when WEBHOOK_RETRY_WINDOW (a day) has passed since the
event, so a receiver that is down for up to a day still gets everything.
Retries wait in the database, not in the broker: a task held for hours
would be given to a second worker by Redis (its visibility timeout), and
a lost task costs at most one beat interval (deliver_due)."""

import time
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from .. import languages
from . import client, events, signing
from .models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

S = WebhookDelivery.Status
# Longer than an attempt can take (WEBHOOK_TIMEOUT and the writes around it).
CLAIM = timedelta(seconds=120)
DUE_BATCH = 500
USER_AGENT = "Postroute-Webhooks/1"
TEST_MESSAGE = gettext_noop("A test event from Postroute: your endpoint receives and verifies our webhooks.")


def deliver(*, delivery_id: int, now: datetime | None = None) -> bool | None:
    """One attempt, if the delivery is due and nobody else holds it: True
    when the receiver took it, False when not, None when not attempted."""
    now = now or timezone.now()
    pending = WebhookDelivery.objects.filter(pk=delivery_id, status=S.PENDING, next_attempt_at__lte=now)
    if not pending.filter(Q(claimed_until=None) | Q(claimed_until__lt=now)).update(claimed_until=now + CLAIM):
        return None
    delivery = WebhookDelivery.objects.select_related("endpoint__tenant").get(pk=delivery_id)
    tenant = delivery.endpoint.tenant
    with languages.of_organisation(tenant.default_language):
        stopped = not delivery.endpoint.enabled and delivery.event_type != events.TEST
        if stopped or not tenant.is_active:
            _log(delivery, now, error=_("Not sent: the endpoint is disabled or the organisation suspended."))
            _finish(delivery, S.FAILED)
            return False
        ok = _attempt(delivery)
    if ok:
        _finish(delivery, S.SUCCEEDED)
    else:
        _retry_or_fail(delivery, now)  # the waits count from the attempt's start
    return ok


def _attempt(delivery: WebhookDelivery) -> bool:
    payload = signing.body(
        event_id=str(delivery.event_id), type=delivery.event_type, created=delivery.created, data=delivery.data
    )
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Postroute-Event": delivery.event_type,
        "Postroute-Delivery": str(delivery.public_id),
        "Postroute-Attempt": str(delivery.attempts + 1),
        signing.HEADER: signing.header(delivery.endpoint.secret(), int(time.time()), payload),
    }
    at, started = timezone.now(), time.monotonic()
    try:
        reply = client.post(delivery.endpoint.url, payload, headers, timeout=settings.WEBHOOK_TIMEOUT)
    except client.Failure as exc:
        _log(delivery, at, error=str(exc), seconds=time.monotonic() - started)
        return False
    ok = 200 <= reply.status < 300
    error = ""
    if 300 <= reply.status < 400:
        error = _("Redirects are not followed: give the endpoint its final URL.")
    elif not ok:
        error = _("The endpoint answered %(status)s.") % {"status": reply.status}
    _log(delivery, at, status=reply.status, body=reply.body, error=error, seconds=time.monotonic() - started)
    return ok


def _log(
    delivery: WebhookDelivery, at: datetime, *, status: int | None = None, body: str = "", error: str = "",
    seconds: float = 0.0,
) -> None:  # fmt: skip
    delivery.attempts += 1
    WebhookAttempt.objects.create(
        delivery=delivery,
        number=delivery.attempts,
        at=at,
        status_code=status,
        duration_ms=round(seconds * 1000),
        error=error[:300],
        response_body=body[: settings.WEBHOOK_RESPONSE_CHARS],
    )


def _finish(delivery: WebhookDelivery, status: str) -> None:
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status=status, attempts=delivery.attempts, next_attempt_at=None, claimed_until=None, finished_at=timezone.now()
    )


def next_attempt_at(*, created: datetime, attempts: int, now: datetime) -> datetime | None:
    """After `attempts` failed ones: the next moment to try, or None (give
    up). The waits double; the last attempt falls at the window's end."""
    end = created + timedelta(seconds=settings.WEBHOOK_RETRY_WINDOW)
    if now >= end:
        return None
    wait = timedelta(seconds=settings.WEBHOOK_RETRY_BASE * 2 ** min(max(attempts - 1, 0), 30))
    return min(now + wait, end)


def _retry_or_fail(delivery: WebhookDelivery, now: datetime) -> None:
    due = None
    if delivery.event_type != events.TEST:  # a test is tried once: its answer is the point
        due = next_attempt_at(created=delivery.created, attempts=delivery.attempts, now=now)
    if due is None:
        _finish(delivery, S.FAILED)
        return
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        attempts=delivery.attempts, next_attempt_at=due, claimed_until=None
    )


def deliver_due(*, now: datetime | None = None) -> int:
    """Beat: queue the deliveries whose next attempt is due (retries, and
    any whose task was lost)."""
    now = now or timezone.now()
    due = WebhookDelivery.objects.filter(status=S.PENDING, next_attempt_at__lte=now).filter(
        Q(claimed_until=None) | Q(claimed_until__lt=now)
    )
    ids = list(due.order_by("next_attempt_at", "pk").values_list("pk", flat=True)[:DUE_BATCH])
    events.enqueue([WebhookDelivery(pk=pk) for pk in ids], due=now)
    return len(ids)


def send_test(*, endpoint: WebhookEndpoint) -> WebhookDelivery:
    """The "Send test event" button: one delivery of a `webhook.test` event,
    whatever the endpoint subscribes to and even when it is disabled."""
    now = timezone.now()
    data = {"endpoint": str(endpoint.public_id), "message": TEST_MESSAGE}
    with transaction.atomic():
        delivery = WebhookDelivery.objects.create(  # due at once (next_attempt_at defaults to now)
            endpoint=endpoint, event_id=uuid.uuid4(), event_type=events.TEST, created=now, data=data
        )
        events.enqueue([delivery])
    return delivery
