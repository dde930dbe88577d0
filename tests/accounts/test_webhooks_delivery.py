"""Delivering webhooks to a real local HTTP receiver: the body and its
signature, retries after a 500 with exponential backoff for a day, order,
redirects, timeouts, the response kept short, a lost task, a claim, and
the cost of emitting for a tenant that listens to nothing."""

import json
import time
from datetime import timedelta
from itertools import pairwise

import pytest
from django.utils import timezone

from accounts.webhooks import delivery, events
from accounts.webhooks.models import WebhookAttempt, WebhookDelivery
from mailing import contacts
from mailing.unsubscribe import make_token
from tests.webhook_receiver import webhook_receiver

from .webhook_helpers import make_endpoint

pytestmark = pytest.mark.django_db
S = WebhookDelivery.Status


def emit(tenant, committed, type=events.IMPORT_FINISHED, data=None):
    with committed():
        events.emit(tenant_id=tenant.pk, type=type, data=data or {"n": 1})


def test_a_delivery_is_signed_and_carries_the_event(tenant_a, receiver, committed):
    endpoint = make_endpoint(tenant_a, receiver)
    before = timezone.now()
    emit(tenant_a, committed, data={"import": {"id": "x", "rows": 3}})

    [request] = receiver.received
    event = request.event
    assert set(event) == {"id", "type", "created", "data"}
    assert event["type"] == "import.finished" and event["data"] == {"import": {"id": "x", "rows": 3}}
    assert before <= timezone.datetime.fromisoformat(event["created"]) <= timezone.now()
    assert request.verified  # HMAC-SHA256 of "t.body" with the endpoint's secret
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Postroute-Event"] == "import.finished"
    assert request.path == "/hooks/postroute?source=test"
    sent = WebhookDelivery.objects.get(endpoint=endpoint)
    assert sent.status == S.SUCCEEDED and sent.attempts == 1 and str(sent.event_id) == event["id"]
    assert request.headers["Postroute-Delivery"] == str(sent.public_id)
    attempt = sent.attempt_log.get()
    assert (attempt.number, attempt.status_code, attempt.error, attempt.response_body) == (1, 200, "", "thanks")
    assert 0 <= attempt.duration_ms < 5000


def test_a_wrong_secret_does_not_verify(tenant_a, receiver, committed):
    make_endpoint(tenant_a, receiver)
    receiver.secret = "whsec_not-the-one"
    emit(tenant_a, committed)
    assert receiver.received and not receiver.received[0].verified


def test_it_retries_after_a_500_and_the_retry_succeeds(tenant_a, receiver, committed):
    endpoint = make_endpoint(tenant_a, receiver)
    receiver.answers = [500]
    emit(tenant_a, committed)

    sent = WebhookDelivery.objects.get(endpoint=endpoint)
    assert sent.status == S.PENDING and sent.attempts == 1
    assert sent.next_attempt_at - sent.created == pytest.approx(timedelta(seconds=60), abs=timedelta(seconds=5))
    with committed():
        assert delivery.deliver_due(now=sent.next_attempt_at - timedelta(seconds=1)) == 0  # not yet
    with committed():
        assert delivery.deliver_due(now=sent.next_attempt_at) == 1
    sent.refresh_from_db()
    assert sent.status == S.SUCCEEDED and sent.attempts == 2 and sent.next_attempt_at is None
    assert [r.answered for r in receiver.received] == [500, 200]
    assert all(r.verified for r in receiver.received)
    first, second = receiver.events()
    assert first == second  # the same event, id and created, on every attempt
    log = list(sent.attempt_log.order_by("number").values_list("number", "status_code", "error"))
    assert log == [(1, 500, "The endpoint answered 500."), (2, 200, "")]


def test_backoff_doubles_for_a_day_then_it_gives_up(tenant_a, receiver, committed, settings):
    endpoint = make_endpoint(tenant_a, receiver)
    receiver.answers = [503] * 100
    emit(tenant_a, committed)
    sent = WebhookDelivery.objects.get(endpoint=endpoint)
    moments = [sent.created]
    while sent.status == S.PENDING:  # the sweep, run when the next attempt is due
        moments.append(sent.next_attempt_at)
        with committed():
            assert delivery.deliver_due(now=sent.next_attempt_at) == 1
        sent.refresh_from_db()
    waits = [round((b - a).total_seconds()) for a, b in pairwise(moments)]
    assert waits[:6] == [60, 120, 240, 480, 960, 1920]
    assert moments[-1] == sent.created + timedelta(days=1)  # the last attempt, a day after the event
    assert sent.status == S.FAILED and sent.attempts == len(moments) == 12
    assert len(receiver.received) == 12


def test_the_schedule(settings):
    created = timezone.now()
    at = delivery.next_attempt_at
    assert at(created=created, attempts=1, now=created) == created + timedelta(minutes=1)
    assert at(created=created, attempts=3, now=created) == created + timedelta(minutes=4)
    later = created + timedelta(hours=20)
    assert at(created=created, attempts=11, now=later) == created + timedelta(days=1)  # capped at the day's end
    assert at(created=created, attempts=12, now=created + timedelta(days=1)) is None


def test_order_each_event_keeps_its_id_and_time_and_a_retry_comes_after_later_events(
    tenant_a,
    receiver,
    committed,
):
    endpoint = make_endpoint(tenant_a, receiver)
    receiver.answers = [500]  # the first event's first attempt fails
    for n in range(3):
        emit(tenant_a, committed, data={"n": n})
    with committed():
        delivery.deliver_due(now=timezone.now() + timedelta(minutes=2))

    arrived = [(e["data"]["n"], r.answered) for r, e in zip(receiver.received, receiver.events(), strict=True)]
    assert arrived == [(0, 500), (1, 200), (2, 200), (0, 200)]  # the retry came last
    accepted = receiver.events(accepted_only=True)
    assert len({e["id"] for e in accepted}) == 3
    # What we guarantee: by `created`, the receiver gets the events in the order they happened.
    assert [e["data"]["n"] for e in sorted(accepted, key=lambda e: e["created"])] == [0, 1, 2]
    assert WebhookDelivery.objects.filter(endpoint=endpoint, status=S.SUCCEEDED).count() == 3


def test_without_failures_they_arrive_in_the_order_they_happened(tenant_a, receiver, committed):
    make_endpoint(tenant_a, receiver)
    for n in range(5):
        emit(tenant_a, committed, data={"n": n})
    assert [e["data"]["n"] for e in receiver.events()] == [0, 1, 2, 3, 4]


def test_a_redirect_is_not_followed(tenant_a, receiver, committed):
    endpoint = make_endpoint(tenant_a, receiver)
    receiver.answers = [302]
    emit(tenant_a, committed)
    assert [r.path for r in receiver.received] == ["/hooks/postroute?source=test"]  # /elsewhere never asked
    attempt = WebhookAttempt.objects.get(delivery__endpoint=endpoint)
    assert attempt.status_code == 302 and "Redirects are not followed" in attempt.error
    assert WebhookDelivery.objects.get(endpoint=endpoint).status == S.PENDING  # tried again later


def test_a_slow_receiver_is_cut_off_at_the_timeout(tenant_a, receiver, committed, settings):
    settings.WEBHOOK_TIMEOUT = 1.0
    endpoint = make_endpoint(tenant_a, receiver)
    receiver.delay = 3.0
    started = time.monotonic()
    emit(tenant_a, committed)
    assert time.monotonic() - started < 2.5
    attempt = WebhookAttempt.objects.get(delivery__endpoint=endpoint)
    assert attempt.status_code is None and attempt.error == "No answer within 1 second."
    assert 900 <= attempt.duration_ms < 2500


def test_the_timeout_is_told_in_the_organisations_language_and_numbers(tenant_a, receiver, committed, settings):
    """The number had an English decimal point ("1.5"), and English said "1 seconds"."""
    tenant_a.default_language = "ru"
    tenant_a.save(update_fields=["default_language"])
    settings.WEBHOOK_TIMEOUT = 1.5
    endpoint = make_endpoint(tenant_a, receiver)
    receiver.delay = 3.0
    emit(tenant_a, committed)
    assert WebhookAttempt.objects.get(delivery__endpoint=endpoint).error == "Нет ответа за 1,5 секунды."


def test_nobody_listening_is_an_error_in_the_log_not_a_crash(tenant_a, committed, settings):
    with webhook_receiver() as gone:
        pass  # closed: its port refuses
    endpoint = make_endpoint(tenant_a, gone)
    emit(tenant_a, committed)
    attempt = WebhookAttempt.objects.get(delivery__endpoint=endpoint)
    assert attempt.status_code is None and "refused the connection" in attempt.error


def test_the_response_body_is_kept_short(tenant_a, receiver, committed, settings):
    endpoint = make_endpoint(tenant_a, receiver)
    receiver.answer_body = "é" * 5000
    emit(tenant_a, committed)
    body = WebhookAttempt.objects.get(delivery__endpoint=endpoint).response_body
    assert body == "é" * settings.WEBHOOK_RESPONSE_CHARS


def test_a_response_body_holding_a_nul_byte_is_kept_and_the_delivery_is_done(tenant_a, receiver, committed):
    """No PostgreSQL text holds a NUL: kept as U+FFFD. Before, the attempt
    could not be saved, the delivery stayed claimed and, its claim run out,
    was sent again and again."""
    endpoint = make_endpoint(tenant_a, receiver)
    receiver.answer_body = "ok\x00done"
    emit(tenant_a, committed)
    attempt = WebhookAttempt.objects.get(delivery__endpoint=endpoint)
    assert (attempt.status_code, attempt.response_body) == (200, "ok\ufffddone")
    assert WebhookDelivery.objects.get(endpoint=endpoint).status == S.SUCCEEDED
    assert len(receiver.received) == 1


def test_a_lost_task_is_sent_by_the_sweep_and_a_claimed_one_is_not_sent_twice(tenant_a, receiver, committed):
    endpoint = make_endpoint(tenant_a, receiver)
    # Recorded, but its task never ran (a broker that lost it).
    [sent] = events.record(tenant_id=tenant_a.pk, type=events.IMPORT_FINISHED, data={}, created=timezone.now())
    assert receiver.received == []
    now = timezone.now()
    WebhookDelivery.objects.filter(pk=sent.pk).update(claimed_until=now + timedelta(seconds=30))
    assert delivery.deliver(delivery_id=sent.pk, now=now) is None  # another worker holds it
    assert delivery.deliver_due(now=now) == 0
    with committed():
        assert delivery.deliver_due(now=now + timedelta(minutes=1)) == 1  # its claim ran out
    assert len(receiver.received) == 1
    assert delivery.deliver(delivery_id=sent.pk) is None  # done: never again
    assert WebhookDelivery.objects.get(endpoint=endpoint).status == S.SUCCEEDED


def test_a_disabled_endpoint_gets_nothing_and_a_pending_delivery_stops(tenant_a, receiver, committed):
    from accounts.webhooks import services

    endpoint = make_endpoint(tenant_a, receiver)
    receiver.answers = [500]
    emit(tenant_a, committed)
    with committed():
        services.endpoint_set_enabled(endpoint=endpoint, enabled=False)
    emit(tenant_a, committed)  # not even recorded
    with committed():
        delivery.deliver_due(now=timezone.now() + timedelta(minutes=2))
    assert len(receiver.received) == 1 and WebhookDelivery.objects.count() == 1
    stopped = WebhookDelivery.objects.get()
    assert stopped.status == S.FAILED and "disabled" in stopped.attempt_log.first().error


def test_emitting_for_a_tenant_without_listeners_costs_no_query(
    tenant_a,
    tenant_b,
    receiver,
    django_assert_num_queries,
):
    make_endpoint(tenant_b, receiver, events=[events.LETTER_BOUNCED])
    events.emit(tenant_id=tenant_a.pk, type=events.SERVER_LIMIT_REACHED, data={})  # fills the cache
    events.emit(tenant_id=tenant_b.pk, type=events.SERVER_LIMIT_REACHED, data={})
    with django_assert_num_queries(0):
        for _ in range(100):
            events.emit(tenant_id=tenant_a.pk, type=events.SERVER_LIMIT_REACHED, data=lambda: 1 / 0)
            events.emit(tenant_id=tenant_b.pk, type=events.SERVER_LIMIT_REACHED, data=lambda: 1 / 0)


def test_a_failure_to_record_an_event_never_fails_what_caused_it(tenant_a, receiver, committed, monkeypatch):
    make_endpoint(tenant_a, receiver)

    def broken(**kwargs):
        raise RuntimeError("the database said no")

    monkeypatch.setattr(events, "record", broken)
    with committed():
        suppression = contacts.unsubscribe(token=make_token(tenant_a.pk, "ann@example.com"))
    assert suppression.pk and receiver.received == []


def test_the_body_is_compact_json_in_utf8(tenant_a, receiver, committed):
    make_endpoint(tenant_a, receiver)
    emit(tenant_a, committed, data={"name": "Рассылка"})
    body = receiver.received[0].body
    assert "Рассылка".encode() in body and b": " not in body
    assert json.loads(body)["data"] == {"name": "Рассылка"}
