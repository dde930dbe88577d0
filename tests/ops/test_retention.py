"""Retention: what is older than its RETENTION_* days goes (or, for the
letters, loses its copy of the contact data), in small batches; what is
younger stays."""

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts import api_keys
from accounts.models import (
    ApiIdempotency,
    AuthThrottle,
    UserSession,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookOnce,
)
from config.retention import apply_retention
from mailing.models import BounceReport, ContactImport, ImportRejection, Letter, Mailing, MailingEvent
from servers.models import ConnectionTest
from tests.mailing.builders import make_template

pytestmark = pytest.mark.django_db


def days_ago(n: float):
    return timezone.now() - timedelta(days=n)


def make_mailing(tenant, finished_days_ago: float, letters: int) -> Mailing:
    mailing = Mailing.objects.create(
        tenant=tenant,
        name=f"m{finished_days_ago}",
        template=make_template(tenant),
        status=Mailing.Status.COMPLETED,
        finished_at=days_ago(finished_days_ago),
    )
    Letter.objects.bulk_create(
        Letter(tenant=tenant, mailing=mailing, email=f"r{i}@x.test", context={"first_name": "Ann"}, status="sent")
        for i in range(letters)
    )
    return mailing


def make_import(tenant, finished_days_ago: float, rejections: int) -> ContactImport:
    imp = ContactImport.objects.create(
        tenant=tenant, file_name="a.csv", file_path="/nowhere", status="done", finished_at=days_ago(finished_days_ago)
    )
    ImportRejection.objects.bulk_create(
        ImportRejection(contact_import=imp, line=i, reason="bad", raw="x;y") for i in range(rejections)
    )
    return imp


def make_delivery(endpoint: WebhookEndpoint, created_days_ago: float, status: str) -> WebhookDelivery:
    delivery = WebhookDelivery.objects.create(
        endpoint=endpoint, event_id=uuid.uuid4(), event_type="import.finished", created=days_ago(created_days_ago),
        status=status,
    )  # fmt: skip
    WebhookAttempt.objects.create(delivery=delivery, number=1, status_code=200 if status == "succeeded" else 500)
    return delivery


def test_old_rows_go_in_batches_and_young_ones_stay(tenant_a, settings):
    settings.RETENTION_BATCH = 2  # several batches of each kind
    old_mailing, young_mailing = make_mailing(tenant_a, 100, 5), make_mailing(tenant_a, 10, 3)
    old_import, young_import = make_import(tenant_a, 40, 3), make_import(tenant_a, 5, 2)
    for n, days in enumerate((40, 40, 40, 1)):
        test = ConnectionTest.objects.create(tenant=tenant_a, status="passed")
        ConnectionTest.objects.filter(pk=test.pk).update(created_at=days_ago(days))
        AuthThrottle.objects.create(key=f"k{n}", first_failure_at=days_ago(days / 4))
        BounceReport.objects.create(tenant=tenant_a, source_key=f"s{n}", kind="hard", received_at=days_ago(days * 5))
    running = ConnectionTest.objects.create(tenant=tenant_a, status="running")
    ConnectionTest.objects.filter(pk=running.pk).update(created_at=days_ago(40))
    UserSession.objects.create(session_key="a" * 32, session_data="", expire_date=days_ago(1))
    UserSession.objects.create(session_key="b" * 32, session_data="", expire_date=days_ago(-1))
    key, _ = api_keys.api_key_create(tenant=tenant_a, by=None, name="CRM", scopes=["read"])
    for n, expires in enumerate((days_ago(0.1), days_ago(-0.5))):
        ApiIdempotency.objects.create(tenant=tenant_a, api_key=key, key=f"k{n}", fingerprint="f", expires_at=expires)
    endpoint = WebhookEndpoint.objects.create(tenant=tenant_a, url="https://crm.test/hook", events=["import.finished"])
    old_deliveries = [make_delivery(endpoint, 31, status) for status in ("succeeded", "failed", "succeeded")]
    still_retried = make_delivery(endpoint, 31, "pending")  # its log stays while it is retried
    young = make_delivery(endpoint, 29, "succeeded")
    WebhookOnce.objects.create(tenant=tenant_a, key="1:limit:1:hour", until=days_ago(0.01))
    WebhookOnce.objects.create(tenant=tenant_a, key="1:limit:1:day", until=days_ago(-0.5))

    report = apply_retention()

    assert report.finished
    assert report.counts == {
        "letter_contact_data": 5,
        "connection_tests": 3,
        "throttles": 3,
        "import_rejections": 3,
        "bounce_reports": 3,
        "api_idempotency_keys": 1,
        "webhook_deliveries": 3,
        "webhook_once": 1,
        "expired_sessions": 1,
    }
    assert Letter.objects.filter(mailing=old_mailing).count() == 5  # the letters stay, with address and result
    assert not Letter.objects.filter(mailing=old_mailing).exclude(context={}).exists()
    assert not Letter.objects.filter(mailing=young_mailing, context={}).exists()
    assert ImportRejection.objects.filter(contact_import=young_import).count() == 2
    assert not ImportRejection.objects.filter(contact_import=old_import).exists()
    assert set(ConnectionTest.objects.values_list("status", flat=True)) == {"passed", "running"}
    assert AuthThrottle.objects.count() == 1 and BounceReport.objects.count() == 1
    assert list(UserSession.objects.values_list("session_key", flat=True)) == ["b" * 32]
    assert list(ApiIdempotency.objects.values_list("key", flat=True)) == ["k1"]  # the one within its day
    assert not WebhookDelivery.objects.filter(pk__in=[d.pk for d in old_deliveries]).exists()
    assert set(WebhookDelivery.objects.all()) == {still_retried, young}
    assert WebhookAttempt.objects.count() == 2  # the old deliveries' log went with them
    assert list(WebhookOnce.objects.values_list("key", flat=True)) == ["1:limit:1:day"]
    assert apply_retention().counts == dict.fromkeys(report.counts, 0)  # nothing left to do


def test_a_cancelled_mailings_letters_lose_their_data_too(tenant_a):
    mailing = make_mailing(tenant_a, 100, 2)
    Mailing.objects.filter(pk=mailing.pk).update(status=Mailing.Status.CANCELLED, finished_at=None)
    MailingEvent.objects.create(mailing=mailing, from_status="active", to_status="cancelled", at=days_ago(95))
    assert apply_retention().counts["letter_contact_data"] == 2


def test_a_run_out_of_time_stops_and_the_next_one_goes_on(tenant_a, settings):
    settings.RETENTION_BATCH = 2
    make_mailing(tenant_a, 100, 5)
    stopped = apply_retention(run_seconds=0)
    assert not stopped.finished and stopped.counts["letter_contact_data"] == 0
    assert apply_retention().counts["letter_contact_data"] == 5


def test_zero_days_keeps_for_ever(tenant_a, settings):
    settings.RETENTION_DAYS = {**settings.RETENTION_DAYS, "letter_contact_data": 0}
    make_mailing(tenant_a, 1000, 2)
    assert "letter_contact_data" not in apply_retention().counts
    assert not Letter.objects.filter(context={}).exists()
