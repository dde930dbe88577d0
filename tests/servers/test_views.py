"""The server pages: who may see and change what, order, presets, the
platform server, and the connection test through the page and the task."""

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts import services as account_services
from servers.models import ConnectionTest, Health, PlatformQuota, SmtpServer
from tests.helpers import deployment_mode
from tests.smtp_servers import smtp_server

from .factories import make_server

pytestmark = pytest.mark.django_db


@pytest.fixture
def servers(tenant_a):
    return [make_server(tenant_a, name=f"S{i}", priority=i) for i in range(3)]


def object_urls(server: SmtpServer, test: ConnectionTest) -> list[tuple[str, str]]:
    pid = server.public_id
    return [
        ("get", reverse("servers:edit", args=[pid])),
        ("post", reverse("servers:edit", args=[pid])),
        ("post", reverse("servers:delete", args=[pid])),
        ("post", reverse("servers:toggle", args=[pid])),
        ("post", reverse("servers:move", args=[pid])),
        ("post", reverse("servers:test_start", args=[pid])),
        ("get", reverse("servers:test", args=[test.public_id])),
        ("get", reverse("servers:test_json", args=[test.public_id])),
    ]


def test_an_outsider_gets_404_on_every_server_url(servers, charlie, tenant_a):
    test = ConnectionTest.objects.create(tenant=tenant_a, server=servers[0])
    for method, url in object_urls(servers[0], test):
        assert getattr(charlie.client, method)(url).status_code == 404, url
    listing = charlie.client.get(reverse("servers:list")).content.decode()
    # Not a bare "S0": a random token on the page may hold those two letters.
    for server in servers:
        assert str(server.public_id) not in listing and f">{server.name}<" not in listing
    assert SmtpServer.objects.filter(tenant=tenant_a).count() == 3 and servers[0].enabled


def test_a_member_reads_but_gets_403_on_writes(servers, bob, tenant_a):
    assert b"S1" in bob.client.get(reverse("servers:list")).content
    test = ConnectionTest.objects.create(tenant=tenant_a, server=servers[0])
    for method, url in object_urls(servers[0], test):
        expected = 200 if method == "get" else 403
        assert getattr(bob.client, method)(url).status_code == expected, url
    assert bob.client.post(reverse("servers:add"), {}).status_code == 403
    assert bob.client.post(reverse("servers:mailbox"), {}).status_code == 403


def test_a_member_sees_read_only_pages_without_the_actions_they_may_not_take(servers, bob, caplog):
    listing = bob.client.get(reverse("servers:list")).content.decode()
    assert "Add a server" not in listing and ">Delete<" not in listing and ">Settings<" in listing
    add = bob.client.get(reverse("servers:add")).content.decode()
    assert "Only the organisation's owners and admins can add servers" in add and 'name="host"' not in add
    edit = bob.client.get(reverse("servers:edit", args=[servers[0].public_id]))
    html = edit.content.decode()
    assert all(field.disabled for field in edit.context["form"].fields.values())
    assert "only the organisation's owners and admins can change them" in html and ">Save<" not in html
    mailbox = bob.client.get(reverse("servers:mailbox")).content.decode()
    assert ">Save<" not in mailbox and "Back to servers" in mailbox
    # A refused write is one log line, without a traceback.
    caplog.clear()
    assert bob.client.post(reverse("servers:add"), {"name": "x"}).status_code == 403
    (record,) = [r for r in caplog.records if r.name == "django.request"]
    assert record.getMessage() == "Forbidden (Permission denied): /servers/add/" and record.exc_info is None


def names(tenant) -> list[str]:
    return list(SmtpServer.objects.filter(tenant=tenant).order_by("priority").values_list("name", flat=True))


def test_the_owner_orders_servers_with_up_and_down_and_by_dragging(servers, alice, charlie, tenant_a, tenant_b):
    alice.client.post(reverse("servers:move", args=[servers[2].public_id]), {"direction": "up"})
    assert names(tenant_a) == ["S0", "S2", "S1"]
    alice.client.post(reverse("servers:move", args=[servers[0].public_id]), {"direction": "down"})
    assert names(tenant_a) == ["S2", "S0", "S1"]
    foreign = make_server(tenant_b, name="theirs")
    order = [str(servers[1].public_id), str(foreign.public_id), str(servers[0].public_id)]
    assert alice.client.post(reverse("servers:reorder"), {"order": order}).status_code == 200
    assert names(tenant_a) == ["S1", "S0", "S2"]
    assert SmtpServer.objects.get(pk=foreign.pk).priority == 0  # untouched


def test_a_preset_fills_the_form(alice):
    form = alice.client.get(reverse("servers:add") + "?preset=yandex").context["form"]
    assert (form["host"].value(), form["port"].value(), form["security"].value()) == ("smtp.yandex.ru", 465, "ssl")
    assert form["allow_sender_substitution"].value() is False


def test_new_servers_go_last_and_disable_toggles(alice, servers, tenant_a):
    data = {"name": "New", "sender_email": "n@acme.test", "host": "8.8.8.8", "port": 587, "security": "starttls",
            "login": "n@acme.test", "password": "pw", "enabled": "on"}  # fmt: skip
    assert alice.client.post(reverse("servers:add"), data).status_code == 302
    assert names(tenant_a)[-1] == "New"
    alice.client.post(reverse("servers:toggle", args=[servers[0].public_id]))
    assert not SmtpServer.objects.get(pk=servers[0].pk).enabled


def test_the_platform_server_is_shown_read_only_with_the_tenants_quota(alice, charlie, tenant_a, settings):
    settings.DEPLOYMENT_MODE = "saas"
    platform = make_server(None, name="Postroute platform", tenant_daily_quota=200)
    PlatformQuota.objects.create(server=platform, tenant=tenant_a, daily_quota=1000)
    page = alice.client.get(reverse("servers:list"))
    assert page.context["platform"] == [(platform, 1000)]
    assert charlie.client.get(reverse("servers:list")).context["platform"] == [(platform, 200)]
    assert alice.client.get(reverse("servers:edit", args=[platform.public_id])).status_code == 404


def test_testing_a_server_runs_the_probe_and_records_health(alice, tenant_a, django_capture_on_commit_callbacks):
    with smtp_server() as (controller, _):
        server = make_server(tenant_a, port=controller.port)
        with django_capture_on_commit_callbacks(execute=True):
            response = alice.client.post(reverse("servers:test_start", args=[server.public_id]))
    test = ConnectionTest.objects.get()
    assert response["Location"] == reverse("servers:test", args=[test.public_id])
    data = alice.client.get(reverse("servers:test_json", args=[test.public_id])).json()
    assert data["status"] == "passed" and data["finished"]
    assert [s["ok"] for s in data["steps"]] == [True] * len(data["steps"])
    server.refresh_from_db()
    assert server.health == Health.OK and server.health_checked_at


def test_a_failing_test_marks_the_server_failing_with_the_hint(alice, tenant_a, django_capture_on_commit_callbacks):
    with smtp_server() as (controller, _):
        server = make_server(tenant_a, port=controller.port, password="wrong")
        with django_capture_on_commit_callbacks(execute=True):
            alice.client.post(reverse("servers:test_start", args=[server.public_id]))
    server.refresh_from_db()
    assert server.health == Health.FAILING and "535" in server.health_error and server.health_hint
    assert not server.is_usable
    page = alice.client.get(reverse("servers:list")).content.decode()
    assert "535" in page


def test_a_test_queued_before_the_tenant_was_suspended_does_not_connect(
    alice, tenant_a, django_capture_on_commit_callbacks
):
    with smtp_server() as (controller, _):
        server = make_server(tenant_a, port=controller.port)
        with django_capture_on_commit_callbacks() as queued:
            alice.client.post(reverse("servers:test_start", args=[server.public_id]))
        account_services.tenant_suspend(tenant=tenant_a, reason="unpaid")
        for run_on_a_worker in queued:
            run_on_a_worker()
    test = ConnectionTest.objects.get()
    assert (test.status, test.steps) == (ConnectionTest.Status.FAILED, [])
    assert test.error == "The organisation is suspended: the test did not run."
    server.refresh_from_db()
    assert server.health == Health.UNKNOWN


def test_a_test_letter_to_a_refused_address_is_explained_not_skipped(alice, tenant_a, settings):
    deployment_mode(settings, "saas")
    server = make_server(tenant_a)
    url = reverse("servers:test_start", args=[server.public_id])
    response = alice.client.post(url, {"send_to": "me@corp.local"}, follow=True)
    assert "only a self-hosted installation may use it" in response.content.decode()
    assert not ConnectionTest.objects.exists()


def test_connection_tests_are_throttled_per_tenant(alice, tenant_a, settings):
    settings.CONNECTION_TESTS_PER_MINUTE = 2
    server = make_server(tenant_a)
    url = reverse("servers:test_start", args=[server.public_id])
    for _ in range(2):
        alice.client.post(url)
    response = alice.client.post(url, follow=True)
    assert b"Too many connection tests" in response.content
    assert ConnectionTest.objects.count() == 2


def test_the_live_test_page_says_when_it_started_not_how_long_ago(servers, alice, tenant_a):
    """The page updates itself without a reload: "0 minutes ago" would stay."""
    test = ConnectionTest.objects.create(tenant=tenant_a, server=servers[0])
    page = alice.client.get(reverse("servers:test", args=[test.public_id])).content.decode()
    assert f">today at {timezone.localtime(test.created_at):%H:%M}</time>" in page and " ago</time>" not in page


def test_the_server_form_says_the_limits_roll_and_do_not_reset_at_midnight(alice):
    """The limits code counts the last 60 minutes and the last 24 hours;
    "Max letters per day" alone reads as a calendar day in the
    organisation's zone, reset at midnight."""
    alice.user.language = "ru"
    alice.user.save(update_fields=["language"])
    page = alice.client.get(reverse("servers:add")).content.decode()
    assert "последние 24 часа, а не календарные сутки" in page
    assert "последние 60 минут, а не час по часам" in page
