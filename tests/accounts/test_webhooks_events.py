"""Each event from its real origin, received by a real local HTTP receiver:
a bounce read from a real Dovecot mailbox, an unsubscribe through the link
of a letter, a mailing started and completed against an aiosmtpd sink, a
server spending its hourly limit (told once per window, however many
batches find it spent), a server failing in the dispatcher and in a
connection test, an import finishing. Another organisation hears none of
it."""

from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.webhooks.models import WebhookDelivery
from mailing import mailings as mailing_services
from mailing.bounces import readers
from mailing.imports import mapping, services
from mailing.models import ContactImport, Letter, Mailing
from mailing.unsubscribe import make_token
from servers import services as server_services
from servers.models import Health
from tests.mailing.bounce_helpers import append, make_mailbox, render, sent_letters
from tests.mailing.builders import make_list, make_template, run_until_settled
from tests.mailing.test_dispatch import start_mailing
from tests.servers.factories import make_server
from tests.smtp_servers import smtp_server
from tests.webhook_receiver import webhook_receiver

from .webhook_helpers import make_endpoint

pytestmark = pytest.mark.django_db


def start_another(tenant, servers, count: int) -> Mailing:
    contact_list = make_list(tenant, "Other", [f"o{i}@x.test" for i in range(count)])
    mailing = Mailing(tenant=tenant, name="other", template=make_template(tenant, name="Other"))
    mailing_services.mailing_save(mailing=mailing, lists=[contact_list], servers=servers)
    mailing_services.mailing_start(mailing=mailing)
    return mailing


@pytest.fixture
def outsider_hears(tenant_b, committed):
    """An endpoint of tenant B listening to everything: it must hear nothing."""
    with webhook_receiver() as other:
        make_endpoint(tenant_b, other)
        yield other
    assert other.received == []


def test_a_bounce_read_from_the_mailbox(tenant_a, dovecot_mailbox, receiver, committed, outsider_hears):
    make_endpoint(tenant_a, receiver, events=["letter.bounced"])
    [letter] = sent_letters(tenant_a, ["gone@example.org"])
    append(dovecot_mailbox, render("postfix_user_unknown.eml", letter))
    mailbox = make_mailbox(tenant_a, dovecot_mailbox)
    with committed():
        readers.read_mailbox(mailbox_id=mailbox.pk)
        readers.read_mailbox(mailbox_id=mailbox.pk)  # read again: counted once, told once

    [event] = receiver.events()
    assert receiver.received[0].verified and event["type"] == "letter.bounced"
    data = event["data"]
    assert data["letter"] == {"id": str(letter.public_id), "email": "gone@example.org", "status": "bounced"}
    assert data["mailing"]["id"] == str(letter.mailing.public_id)
    assert data["bounce"]["kind"] == "hard" and data["bounce"]["status"].startswith("5.1.1")
    assert data["suppressed"] is True


def test_an_unsubscribe_through_the_link(tenant_a, receiver, committed, outsider_hears):
    make_endpoint(tenant_a, receiver, events=["contact.unsubscribed"])
    link = reverse("unsubscribe", args=[make_token(tenant_a.pk, "ann@example.com")])
    with committed():
        assert Client().post(link, {"confirm": "1"}).status_code == 200
        Client().post(link, {"confirm": "1"})  # a second click is no news
    [event] = receiver.events()
    assert event["type"] == "contact.unsubscribed"
    assert event["data"]["email"] == "ann@example.com" and event["data"]["contact"] is None


def test_a_mailing_starting_and_completing(tenant_a, receiver, committed, outsider_hears):
    make_endpoint(tenant_a, receiver, events=["mailing.state_changed", "mailing.completed"])
    with smtp_server() as (controller, sink):
        server = make_server(tenant_a, port=controller.port)
        with committed():  # the start's commit kicks the sending tasks (eager here)
            mailing = start_mailing(tenant_a, [server], 3)
        mailing.refresh_from_db()
        assert mailing.status == Mailing.Status.COMPLETED
    assert len(sink.received) == 3
    moves = [(e["data"]["from"], e["data"]["to"]) for e in receiver.events() if e["type"] == "mailing.state_changed"]
    assert moves == [("draft", "active"), ("active", "completed")]
    [completed] = [e for e in receiver.events() if e["type"] == "mailing.completed"]
    assert receiver.types()[-1] == "mailing.completed"
    data = completed["data"]
    assert data["mailing"]["id"] == str(mailing.public_id) and data["mailing"]["finished_at"]
    assert data["letters"]["total"] == 3 and data["letters"]["sent"] == 3 and data["letters"]["failed"] == 0
    assert all(r.verified for r in receiver.received)


def test_a_spent_hourly_limit_is_told_once_per_window(tenant_a, receiver, committed, outsider_hears):
    make_endpoint(tenant_a, receiver, events=["server.limit_reached"])
    now = timezone.now().replace(second=30, microsecond=0)
    with smtp_server() as (controller, sink):
        server = make_server(tenant_a, port=controller.port, max_per_hour=5)
        mailing = start_mailing(tenant_a, [server], 8)
        other = start_another(tenant_a, [server], 4)
        with committed():
            assert run_until_settled(mailing, now) == "waiting"
            for minutes in (1, 5, 30):  # more batches find it spent: nothing new to tell
                run_until_settled(other, now + timedelta(minutes=minutes))
        assert len(sink.received) == 5
        [event] = receiver.events()
        data = event["data"]
        assert data["server"]["id"] == str(server.public_id) and data["window"] == "hour"
        assert (data["limit"], data["used"]) == (5, 5) and data["resume_at"]
        mailing.refresh_from_db()
        later = mailing.resume_at
        with committed():
            run_until_settled(mailing, later)  # the next window: 5 more letters, and spent again
            run_until_settled(other, later + timedelta(minutes=1))
    assert len(sink.received) == 10
    assert receiver.types() == ["server.limit_reached", "server.limit_reached"]


def test_a_server_failing_in_the_dispatcher_then_in_a_connection_test(tenant_a, receiver, committed, outsider_hears):
    make_endpoint(tenant_a, receiver, events=["server.failing"])
    with smtp_server() as (c1, _), smtp_server() as (c2, h2):
        broken = make_server(tenant_a, name="Broken", port=c1.port, password="wrong")
        good = make_server(tenant_a, name="Good", port=c2.port, priority=1)
        mailing = start_mailing(tenant_a, [broken, good], 2)
        with committed():
            assert run_until_settled(mailing) == "done"
        assert len(h2.received) == 2
        with committed():  # tested again, still wrong: it was failing already
            server_services.connection_test_start(tenant=tenant_a, server=broken)
        broken.refresh_from_db()
        assert broken.health == Health.FAILING
        [event] = receiver.events()
        assert event["data"]["server"]["name"] == "Broken" and "535" in event["data"]["error"]
        assert event["data"]["hint"]

        fresh = make_server(tenant_a, name="Fresh", port=c1.port, password="also wrong")
        with committed():
            server_services.connection_test_start(tenant=tenant_a, server=fresh)
    assert [e["data"]["server"]["name"] for e in receiver.events()] == ["Broken", "Fresh"]


def test_an_import_finishing(tenant_a, receiver, committed, outsider_hears, settings, tmp_path):
    settings.IMPORTS_DIR = tmp_path / "imports"
    make_endpoint(tenant_a, receiver, events=["import.finished"])
    content = b"email,first_name\nann@example.com,Ann\nbob@example.com,Bob\nnot an address,X\n"
    upload = SimpleUploadedFile("crm.csv", content, "text/csv")
    imp = services.import_upload(tenant=tenant_a, by=None, upload=upload)
    columns = {i: mapping.guess_target(h, set()) for i, h in enumerate(imp.header)}
    with committed():
        services.import_start(contact_import=imp, columns=columns, contact_list=None, new_list_name="From the CRM")
    imp.refresh_from_db()
    assert imp.status == ContactImport.Status.DONE
    [event] = receiver.events()
    data = event["data"]
    assert data["import"]["id"] == str(imp.public_id) and data["import"]["status"] == "done"
    assert (data["import"]["created"], data["import"]["rejected"]) == (2, 1)
    assert data["list"]["name"] == "From the CRM"


def test_nothing_is_recorded_for_events_nobody_subscribed_to(tenant_a, receiver, committed):
    make_endpoint(tenant_a, receiver, events=["import.finished"])
    with smtp_server() as (controller, _), committed():
        mailing = start_mailing(tenant_a, [make_server(tenant_a, port=controller.port)], 2)
    assert Mailing.objects.get(pk=mailing.pk).status == Mailing.Status.COMPLETED
    assert Letter.objects.filter(mailing=mailing, status="sent").count() == 2
    assert receiver.received == [] and not WebhookDelivery.objects.exists()


def test_the_types_a_tenant_listens_to_are_its_enabled_endpoints_and_are_cached(tenant_a, tenant_b, receiver):
    from accounts.webhooks import events
    from accounts.webhooks.models import WebhookEndpoint

    make_endpoint(tenant_a, receiver, events=["import.finished", "mailing.completed"])
    make_endpoint(tenant_a, receiver, events=["letter.bounced"])
    off = make_endpoint(tenant_a, receiver, events=["server.failing"])
    WebhookEndpoint.objects.filter(pk=off.pk).update(enabled=False)
    make_endpoint(tenant_b, receiver, events=["contact.unsubscribed"])
    events.forget_subscriptions(tenant_a.pk)
    wanted = {"import.finished", "mailing.completed", "letter.bounced"}
    assert events.subscribed_types(tenant_a.pk) == wanted
    WebhookEndpoint.objects.filter(tenant=tenant_a).delete()  # behind the services' back: the cache answers
    assert events.subscribed_types(tenant_a.pk) == wanted
    events.forget_subscriptions(tenant_a.pk)
    assert events.subscribed_types(tenant_a.pk) == frozenset()
