"""The staff's admin: mailings searchable by tenant and name and filtered by
state, paused or cancelled by staff; letters, suppressions and bounces
read-only; the platform servers' use per tenant; users' verification resent
and two-factor login reset. No list costs a query per row."""

from datetime import timedelta

import pytest
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import Tenant, User, UserSession
from mailing.models import BounceReport, Letter, Mailing, MailingEvent, Suppression, UsageBucket
from tests.conftest import make_person
from tests.mailing.builders import make_template
from tests.servers.factories import make_server

pytestmark = pytest.mark.django_db


def make_mailings(tenant: Tenant, count: int, status: str = Mailing.Status.ACTIVE) -> list[Mailing]:
    template = make_template(tenant)
    made = []
    for i in range(count):
        name = f"{tenant.slug}-news-{i}"
        mailing = Mailing.objects.create(tenant=tenant, name=name, template=template, status=status)
        Letter.objects.create(tenant=tenant, mailing=mailing, email=f"r{i}@x.test")
        Suppression.objects.create(tenant=tenant, email=f"s{i}@x.test", reason=Suppression.Reason.MANUAL)
        key = f"k{tenant.pk}-{i}"
        BounceReport.objects.create(tenant=tenant, source_key=key, kind="hard", recipient=f"r{i}@x.test")
        made.append(mailing)
    return made


def queries_for(client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured)


@pytest.mark.parametrize("model", ["mailing", "letter", "suppression", "bouncereport"])
def test_lists_cost_no_query_per_row(staff_client, tenant_a, tenant_b, model):
    make_mailings(tenant_a, 2)
    url = reverse(f"admin:mailing_{model}_changelist")
    few = queries_for(staff_client, url)
    make_mailings(tenant_b, 8)
    assert queries_for(staff_client, url) == few


def test_mailings_are_found_by_tenant_and_name_and_filtered_by_state(staff_client, tenant_a, tenant_b):
    make_mailings(tenant_a, 2)
    make_mailings(tenant_b, 1, status=Mailing.Status.PAUSED)
    url = reverse("admin:mailing_mailing_changelist")
    by_tenant = staff_client.get(url, {"q": "globex"}).content.decode()
    assert "globex-news-0" in by_tenant and "acme-news" not in by_tenant
    by_name = staff_client.get(url, {"q": "acme-news-1"}).content.decode()
    assert "acme-news-1" in by_name and "acme-news-0" not in by_name
    paused = staff_client.get(url, {"status__exact": "paused"}).content.decode()
    assert "globex-news-0" in paused and "acme-news" not in paused


def test_staff_pause_and_cancel_a_tenants_mailing(staff_client, tenant_a):
    first, second, done = make_mailings(tenant_a, 3)
    Mailing.objects.filter(pk=done.pk).update(status=Mailing.Status.COMPLETED)
    url = reverse("admin:mailing_mailing_changelist")
    staff_client.post(url, {"action": "pause", "_selected_action": [first.pk]})
    response = staff_client.post(url, {"action": "cancel", "_selected_action": [second.pk, done.pk]}, follow=True)
    statuses = dict(Mailing.objects.values_list("pk", "status"))
    assert statuses == {first.pk: "paused", second.pk: "cancelled", done.pk: "completed"}
    assert "cannot cancel" in response.content.decode()  # the finished one is named, not changed
    event = MailingEvent.objects.get(mailing=second, to_status="cancelled")
    assert event.by.is_staff and event.note == "By staff"


def test_letters_suppressions_and_bounces_are_read_only(staff_client, tenant_a):
    (mailing,) = make_mailings(tenant_a, 1)
    letter = Letter.objects.get(mailing=mailing)
    page = staff_client.get(reverse("admin:mailing_letter_change", args=[letter.pk]))
    assert page.status_code == 200 and b'name="_save"' not in page.content
    staff_client.post(reverse("admin:mailing_letter_change", args=[letter.pk]), {"email": "x@evil.test"})
    letter.refresh_from_db()
    assert letter.email == "r0@x.test"
    for model in ("letter", "suppression", "bouncereport", "mailing"):
        assert staff_client.get(reverse(f"admin:mailing_{model}_add")).status_code == 403
    listed = staff_client.get(reverse("admin:mailing_letter_changelist"), {"mailing__id__exact": mailing.pk})
    assert b"r0@x.test" in listed.content and b'value="delete_selected"' not in listed.content


def test_the_platform_servers_use_per_tenant(staff_client, tenant_a, tenant_b):
    platform, own = make_server(None, name="Platform"), make_server(tenant_a, name="Own")
    now = timezone.now().replace(second=0, microsecond=0)
    UsageBucket.objects.create(server=platform, tenant=tenant_a, minute=now - timedelta(minutes=5), count=40)
    UsageBucket.objects.create(server=platform, tenant=tenant_a, minute=now - timedelta(hours=5), count=60)
    UsageBucket.objects.create(server=platform, tenant=tenant_b, minute=now - timedelta(hours=2), count=7)
    UsageBucket.objects.create(server=own, tenant=tenant_a, minute=now, count=999)  # not the platform's
    page = staff_client.get(reverse("admin:mailing_platform_usage"))
    rows = [(r["tenant__slug"], r["hour"], r["day"]) for r in page.context["rows"]]
    assert rows == [("acme", 40, 100), ("globex", 0, 7)]
    assert (
        reverse("admin:mailing_platform_usage").encode()
        in staff_client.get(reverse("admin:mailing_mailing_changelist")).content
    )


def test_staff_resend_a_verification_and_reset_two_factor(staff_client, tenant_a, django_capture_on_commit_callbacks):
    unverified = User.objects.create_user("new@acme.test", "pw-0123456789-long")
    bob = make_person("bob@acme.test", tenant_a)
    StaticDevice.objects.create(user=bob.user, name="backup")
    url = reverse("admin:accounts_user_changelist")
    with django_capture_on_commit_callbacks(execute=True):
        staff_client.post(url, {"action": "resend_verification", "_selected_action": [unverified.pk, bob.user.pk]})
    assert [m.to for m in mail.outbox] == [["new@acme.test"]]  # the verified one gets nothing
    assert UserSession.objects.filter(user_id=bob.user.pk).exists()
    staff_client.post(url, {"action": "reset_two_factor", "_selected_action": [bob.user.pk]})
    assert not TOTPDevice.objects.filter(user=bob.user).exists()
    assert not StaticDevice.objects.filter(user=bob.user).exists()
    assert not UserSession.objects.filter(user_id=bob.user.pk).exists()
    assert bob.client.get("/mailings/").status_code == 302  # signed out
