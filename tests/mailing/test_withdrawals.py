"""An address suppressed while a mailing runs gets none of the letters
still queued for it: whatever suppressed it (the unsubscribe link, a hard
bounce, a refusal of the address while sending, the page, the API), its
tenant's queued letters to it leave the queue as failed with the reason,
in one statement, and a mailing left with nothing to send completes. A
letter a worker has claimed is left to it; other tenants are untouched."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from mailing import contacts
from mailing import mailings as services
from mailing.bounces import readers
from mailing.models import Letter, Mailing, Suppression
from mailing.sink import SinkHandler
from mailing.unsubscribe import unsubscribe_url
from tests.api.conftest import make_api
from tests.servers.factories import make_server
from tests.smtp_servers import smtp_server

from .bounce_helpers import append, make_mailbox, render, sent_letters
from .builders import make_list, make_template, run_until_settled

pytestmark = pytest.mark.django_db
L, M, R = Letter.Status, Mailing.Status, Suppression.Reason
UNSUBSCRIBED_NOTE = "Not sent: the address was suppressed after the mailing started (unsubscribed)."


def start(tenant, emails, *, server=None, name="m", **server_fields) -> Mailing:
    server = server or make_server(tenant, name=f"{name} server", **server_fields)
    mailing = Mailing(tenant=tenant, name=name, template=make_template(tenant, name=f"{name} template"))
    services.mailing_save(mailing=mailing, lists=[make_list(tenant, f"{name} list", emails)], servers=[server])
    services.mailing_start(mailing=mailing)
    return mailing


def letter(mailing: Mailing, email: str) -> Letter:
    return Letter.objects.get(mailing=mailing, email=email)


def one_click(tenant, email: str) -> None:
    path = unsubscribe_url("https://postroute.test", tenant.pk, email).removeprefix("https://postroute.test")
    response = Client(enforce_csrf_checks=True).post(
        path, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 200


def recipients(handler: SinkHandler) -> list[str]:
    return sorted(to for item in handler.received for to in item.rcpt_tos)


def test_an_unsubscribe_mid_mailing_keeps_the_queued_letter_from_going(tenant_a, alice):
    now = timezone.now().replace(second=30, microsecond=0)
    emails = ["a@x.test", "b@x.test", "c@x.test", "d@x.test"]
    with smtp_server() as (controller, handler):
        mailing = start(tenant_a, emails, port=controller.port, max_per_hour=2)
        assert run_until_settled(mailing, now) == "waiting"
        assert recipients(handler) == ["a@x.test", "b@x.test"]

        one_click(tenant_a, "c@x.test")
        gone = letter(mailing, "c@x.test")
        assert (gone.status, gone.last_reply) == (L.FAILED, UNSUBSCRIBED_NOTE)

        mailing.refresh_from_db()
        assert run_until_settled(mailing, mailing.resume_at) == "done"
    assert recipients(handler) == ["a@x.test", "b@x.test", "d@x.test"]
    mailing.refresh_from_db()
    assert mailing.status == M.COMPLETED
    page = alice.client.get(reverse("mailings:detail", args=[mailing.public_id])).content.decode()
    assert UNSUBSCRIBED_NOTE in page


def test_the_reason_is_shown_in_the_readers_language(tenant_a, alice):
    mailing = start(tenant_a, ["a@x.test"])
    contacts.suppression_add(tenant=tenant_a, email="a@x.test", reason=R.MANUAL)
    assert letter(mailing, "a@x.test").last_reply.startswith("Not sent: the address was suppressed")
    alice.client.cookies["django_language"] = "ru"
    page = alice.client.get(reverse("mailings:detail", args=[mailing.public_id]), HTTP_ACCEPT_LANGUAGE="ru")
    assert "Не отправлено" in page.content.decode()


def test_a_hard_bounce_read_mid_mailing_stops_the_address_in_the_running_mailing(tenant_a, dovecot_mailbox):
    bounced = sent_letters(tenant_a, ["bad@example.org", "good@example.org"], name="earlier")[0]
    with smtp_server() as (controller, handler):
        running = start(tenant_a, ["bad@example.org", "new@example.org"], name="now", port=controller.port)
        append(dovecot_mailbox, render("gmail_account_does_not_exist.eml", bounced))
        readers.read_mailbox(mailbox_id=make_mailbox(tenant_a, dovecot_mailbox).pk)

        withdrawn = letter(running, "bad@example.org")
        assert withdrawn.status == L.FAILED
        assert withdrawn.last_reply == "Not sent: the address was suppressed after the mailing started (hard bounce)."
        assert run_until_settled(running) == "done"
    assert recipients(handler) == ["new@example.org"]


class RefusingHandler(SinkHandler):
    """Knows every mailbox but one."""

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address == "gone@x.test":
            return "550 5.1.1 <gone@x.test>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"


def test_a_user_unknown_refusal_while_sending_withdraws_the_other_mailings_letter(tenant_a):
    with smtp_server(handler=RefusingHandler()) as (controller, handler):
        server = make_server(tenant_a, port=controller.port)
        paused = start(tenant_a, ["gone@x.test", "kept@x.test"], server=server, name="paused")
        services.transition(mailing=paused, action="pause")
        sending = start(tenant_a, ["gone@x.test"], server=server, name="sending")
        assert run_until_settled(sending) == "done"
        assert letter(sending, "gone@x.test").last_reply.startswith("550 5.1.1")

        withdrawn = letter(paused, "gone@x.test")
        assert withdrawn.status == L.FAILED and "(hard bounce)" in withdrawn.last_reply
        services.transition(mailing=paused, action="resume")
        assert run_until_settled(paused) == "done"
    assert recipients(handler) == ["kept@x.test"]


def test_a_suppression_by_hand_leaves_another_tenants_letter_to_be_sent(tenant_a, tenant_b, alice):
    with smtp_server() as (controller, handler):
        ours = start(tenant_a, ["ann@x.test", "bo@x.test"], port=controller.port)
        theirs = start(tenant_b, ["ann@x.test"], port=controller.port)
        response = alice.client.post(reverse("contacts:suppression_add"), {"email": "ann@x.test"})
        assert response.status_code == 302

        assert letter(theirs, "ann@x.test").status == L.QUEUED
        withdrawn = letter(ours, "ann@x.test")
        assert withdrawn.status == L.FAILED and "(added by hand)" in withdrawn.last_reply
        assert run_until_settled(ours) == run_until_settled(theirs) == "done"
    assert recipients(handler) == ["ann@x.test", "bo@x.test"]  # bo from us, ann from tenant B


def test_a_suppression_through_the_api_withdraws_the_queued_letter(tenant_a):
    mailing = start(tenant_a, ["ann@x.test", "bo@x.test"])
    response = make_api(tenant_a).post("/api/v1/suppressions/", {"email": "ann@x.test"})
    assert response.status_code == 201
    assert letter(mailing, "ann@x.test").status == L.FAILED
    assert letter(mailing, "bo@x.test").status == L.QUEUED


def test_the_address_matches_in_any_form_of_its_domain(tenant_a):
    contact_list = make_list(tenant_a, "IDN")
    for email in ("Ivan@Пример.РФ", "olga@BÜCHER.de"):  # stored as Ivan@пример.рф, olga@bücher.de
        contacts.contact_create(tenant=tenant_a, email=email, lists=[contact_list])
    mailing = Mailing(tenant=tenant_a, name="idn", template=make_template(tenant_a))
    services.mailing_save(mailing=mailing, lists=[contact_list], servers=[make_server(tenant_a)])
    services.mailing_start(mailing=mailing)
    contacts.suppression_add(tenant=tenant_a, email="Ivan@XN--E1AFMKFD.XN--P1AI", reason=R.MANUAL)
    contacts.suppression_add(tenant=tenant_a, email="olga@xn--bcher-kva.DE", reason=R.MANUAL)
    assert set(Letter.objects.filter(mailing=mailing).values_list("status", flat=True)) == {L.FAILED}


def test_the_address_matches_in_any_case(tenant_a, alice):
    """Ann@ and ann@ are one mailbox (Suppression.objects.of): whichever
    spelling is suppressed, and however, the letters to the others go too."""
    mailing = start(tenant_a, ["Ann@x.test", "BOB@x.test", "cat@x.test", "kept@x.test"])
    one_click(tenant_a, "ann@x.test")
    assert alice.client.post(reverse("contacts:suppression_add"), {"email": "Bob@X.test"}).status_code == 302
    assert make_api(tenant_a).post("/api/v1/suppressions/", {"email": "CAT@x.test"}).status_code == 201
    assert dict(Letter.objects.filter(mailing=mailing).values_list("email", "status")) == {
        "Ann@x.test": L.FAILED,
        "BOB@x.test": L.FAILED,
        "cat@x.test": L.FAILED,
        "kept@x.test": L.QUEUED,
    }
    assert letter(mailing, "Ann@x.test").last_reply == UNSUBSCRIBED_NOTE


def test_a_waiting_mailing_whose_last_queued_letters_are_suppressed_completes(tenant_a):
    now = timezone.now().replace(second=30, microsecond=0)
    with smtp_server() as (controller, handler):
        mailing = start(tenant_a, ["a@x.test", "b@x.test", "c@x.test"], port=controller.port, max_per_hour=1)
        assert run_until_settled(mailing, now) == "waiting"
    for email in ("b@x.test", "c@x.test"):
        contacts.suppression_add(tenant=tenant_a, email=email, reason=R.MANUAL)
    mailing.refresh_from_db()
    assert (mailing.status, mailing.finished_at is not None) == (M.COMPLETED, True)
    assert recipients(handler) == ["a@x.test"]


def test_a_blocked_mailing_whose_last_letters_are_suppressed_completes(tenant_a):
    mailing = start(tenant_a, ["a@x.test"])
    services.transition(mailing=mailing, action="block")
    contacts.suppression_add(tenant=tenant_a, email="a@x.test", reason=R.MANUAL)
    mailing.refresh_from_db()
    assert mailing.status == M.COMPLETED


def test_an_active_mailing_with_letters_left_keeps_running(tenant_a):
    mailing = start(tenant_a, ["a@x.test", "b@x.test"])
    contacts.suppression_add(tenant=tenant_a, email="a@x.test", reason=R.MANUAL)
    mailing.refresh_from_db()
    assert mailing.status == M.ACTIVE


def test_a_letter_claimed_by_a_worker_is_left_to_it(tenant_a):
    mailing = start(tenant_a, ["a@x.test"])
    claimed = letter(mailing, "a@x.test")
    Letter.objects.filter(pk=claimed.pk).update(
        status=L.SENDING, claim_token="00000000-0000-0000-0000-000000000001", lease_until=timezone.now()
    )
    contacts.suppression_add(tenant=tenant_a, email="a@x.test", reason=R.MANUAL)
    claimed.refresh_from_db()
    assert claimed.status == L.SENDING and claimed.last_reply == ""
    mailing.refresh_from_db()
    assert mailing.status == M.ACTIVE


def test_a_deferred_letter_is_withdrawn_and_a_finished_mailings_are_not_touched(tenant_a):
    deferred = start(tenant_a, ["a@x.test"], name="deferred")
    Letter.objects.filter(mailing=deferred).update(
        status=L.DEFERRED, attempts=1, next_attempt_at=timezone.now() + timedelta(minutes=5)
    )
    cancelled = start(tenant_a, ["a@x.test"], name="cancelled")
    services.transition(mailing=cancelled, action="cancel")
    contacts.suppression_add(tenant=tenant_a, email="a@x.test", reason=R.MANUAL)
    assert letter(deferred, "a@x.test").status == L.FAILED
    assert letter(cancelled, "a@x.test").status == L.QUEUED


def test_one_update_of_letters_per_suppression(tenant_a):
    for name in ("one", "two", "three"):
        start(tenant_a, ["a@x.test", "b@x.test"], name=name)
    with CaptureQueriesContext(connection) as queries:
        contacts.suppression_add(tenant=tenant_a, email="a@x.test", reason=R.MANUAL)
    updates = [q["sql"] for q in queries.captured_queries if q["sql"].startswith('UPDATE "mailing_letter"')]
    assert len(updates) == 1
    assert Letter.objects.filter(email="a@x.test", status=L.FAILED).count() == 3
