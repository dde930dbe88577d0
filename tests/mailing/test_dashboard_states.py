"""What the dashboard says about servers that rest for a reason of their
own (a rate limit, a tenant held back on the platform server), letters in
flight, and mailings that cannot send."""

from datetime import timedelta

import pytest
from django.utils import timezone

from mailing import dispatch, limits
from mailing import mailings as services
from mailing.models import Mailing
from mailing.views.dashboard import payload
from servers.models import Health, RestReason, SmtpServer, TenantRest
from tests.servers.factories import make_server

from .builders import make_list, make_template

pytestmark = pytest.mark.django_db


def start(tenant, servers, count: int) -> Mailing:
    contact_list = make_list(tenant, "L", [f"r{i}@x.test" for i in range(count)])
    mailing = Mailing(tenant=tenant, name="m", template=make_template(tenant))
    services.mailing_save(mailing=mailing, lists=[contact_list], servers=servers)
    services.mailing_start(mailing=mailing)
    return mailing


def server_json(tenant, server: SmtpServer) -> dict:
    return next(s for s in payload(tenant)["servers"] if s["id"] == str(server.public_id))


def test_a_rate_limited_server_says_so_with_its_reply_and_the_next_try(tenant_a):
    server = make_server(tenant_a)
    reply = "450 4.7.1 Error: too much mail from 127.0.0.1"
    until = timezone.now() + timedelta(seconds=50)
    SmtpServer.objects.filter(pk=server.pk).update(
        backoff_until=until, rest_reason=RestReason.RATE_LIMIT, rest_reply=reply
    )
    row = server_json(tenant_a, server)
    assert row["state"] == "rate_limited"
    assert "Rate-limited by the server — next try " in row["notice"] and reply in row["notice"]
    assert "Waiting" not in row["notice"] and "connection trouble" not in row["notice"]


def test_a_tenant_held_back_on_the_platform_server_sees_it_others_do_not(tenant_a, tenant_b):
    platform = make_server(None, name="Platform", tenant_daily_quota=100)
    TenantRest.objects.create(
        server=platform, tenant=tenant_a, blocked=True, reason=RestReason.REFUSALS, reply="554 blocked using zen"
    )
    assert server_json(tenant_a, platform)["state"] == "held"
    assert "Blocked for your letters" in server_json(tenant_a, platform)["notice"]
    assert server_json(tenant_b, platform)["state"] != "held"


def test_letters_in_flight_are_not_counted_as_sent(tenant_a):
    server = make_server(tenant_a, max_per_hour=100, max_connections=1)  # one batch takes 25
    mailing = start(tenant_a, [server], 30)
    reservation = limits.reserve(server=server, tenant=tenant_a, wanted=25)
    dispatch.claim(mailing, server, reservation.granted, now=timezone.now())  # a batch of 25 in flight
    row = server_json(tenant_a, server)
    hour = next(w for w in row["windows"] if w["key"] == "hour")
    assert hour["sent"] == 0
    assert "25 being sent now" in row["rate_text"]


def test_a_mailing_that_cannot_send_says_so(tenant_a):
    server = make_server(tenant_a)
    mailing = start(tenant_a, [server], 2)
    SmtpServer.objects.filter(pk=server.pk).update(health=Health.FAILING, health_error="535 bad password")
    assert dispatch.run_mailing(mailing_id=mailing.pk) == "blocked"
    (row,) = payload(tenant_a)["mailings"]
    assert "Cannot send" in str(row)
    assert "Waiting for limits" not in str(row)


def test_the_mailing_page_names_each_servers_reason_and_the_fix(alice, tenant_a):
    from django.urls import reverse

    server = make_server(tenant_a, name="Yandex box")
    mailing = start(tenant_a, [server], 2)
    SmtpServer.objects.filter(pk=server.pk).update(enabled=False)
    assert dispatch.run_mailing(mailing_id=mailing.pk) == "blocked"
    page = alice.client.get(reverse("mailings:detail", args=[mailing.public_id])).content.decode()
    assert "Cannot send" in page and "Yandex box: disabled" in page and "Enable it on the Servers page" in page


@pytest.mark.parametrize("why", ["limits", "rest", "tenant rest", "retry"])
def test_a_waiting_mailing_says_what_it_waits_for(tenant_a, why):
    """ "Waiting for limits until 14:05" was said as well of a mailing whose
    server rests after a provider's refusals or a connection trouble (a
    tenant could raise its limits for nothing) and of one whose only
    letters wait to be tried again."""
    from mailing.models import Letter

    now = timezone.now()
    server = make_server(tenant_a, max_per_hour=1 if why == "limits" else None)
    platform_rest = why == "tenant rest"
    if platform_rest:
        server = make_server(None, name="Platform", tenant_daily_quota=100)
    mailing = start(tenant_a, [server], 2)
    if why == "limits":
        limits.reserve(server=server, tenant=tenant_a, wanted=1)
    elif why == "rest":
        SmtpServer.objects.filter(pk=server.pk).update(
            backoff_until=now + timedelta(minutes=5), rest_reason=RestReason.CONNECTION, rest_reply="timed out"
        )
    elif platform_rest:
        TenantRest.objects.create(
            server=server, tenant=tenant_a, until=now + timedelta(minutes=5), reason=RestReason.REFUSALS, reply="451"
        )
    else:
        Letter.objects.filter(mailing=mailing).update(
            status=Letter.Status.DEFERRED, next_attempt_at=now + timedelta(minutes=5)
        )
    assert dispatch.run_mailing(mailing_id=mailing.pk, now=now) == "waiting"
    (row,) = payload(tenant_a, now)["mailings"]
    expected = {
        "limits": "Waiting for limits until",
        "rest": "Waiting for its servers, which rest until",
        "tenant rest": "Waiting for its servers, which rest until",
        "retry": "Waiting to try letters again ",
    }[why]
    assert row["waiting_text"].startswith(expected), row["waiting_text"]
