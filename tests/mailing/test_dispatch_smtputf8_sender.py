"""A sender-side address that is not ASCII before its @ (the envelope
sender: the bounce mailbox or the server's own address; the From; the
Reply-To) on a server that does not offer SMTPUTF8: the server's settings
problem, not every recipient's. No letter fails for it, they wait in the
queue, and the server fails naming the address and its role; with SMTPUTF8
they all go. A recipient's own international mailbox still fails alone.
Real aiosmtpd servers, with and without SMTPUTF8 (aiosmtpd's Controller
offers it unless told not to)."""

import html
import re

import pytest
from django.urls import reverse
from django.utils import timezone, translation

from mailing import dispatch, limits
from mailing import mailings as services
from mailing.dispatch import rests
from mailing.models import Letter, Mailing
from mailing.sink import SinkHandler
from servers.models import BounceMailbox, Health, SmtpServer, TenantRest
from servers.probes import smtp_probe
from servers.services import mailbox_save, record_health
from servers.wire import Role, SenderNeedsSmtpUtf8
from tests.servers.factories import make_server
from tests.smtp_servers import PipeliningSink, smtp_server

from .builders import run_until_settled as settle
from .builders import servers_in_order
from .test_dispatch_real_world import start

pytestmark = pytest.mark.django_db
L = Letter.Status
BOUNCES = "рассылка@компания.рф"
CYRILLIC = re.compile("[А-Яа-яЁё]")


class MailOptions(SinkHandler):
    """Keeps each letter's MAIL FROM and its parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.mail: list[tuple[str, list[str]]] = []

    async def handle_DATA(self, server, session, envelope):
        self.mail.append((envelope.mail_from, list(envelope.mail_options)))
        return await super().handle_DATA(server, session, envelope)


def bounce_mailbox(tenant, address: str = BOUNCES) -> BounceMailbox:
    mailbox = BounceMailbox(tenant=tenant, host="imap.example.test", port=993, login=address)
    mailbox_save(mailbox=mailbox, password="secret")
    return mailbox


def statuses(mailing: Mailing) -> list[str]:
    return sorted(Letter.objects.filter(mailing=mailing).values_list("status", flat=True))


EMAILS = ["ann@x.test", "bob@x.test", "cat@x.test"]


def test_a_bounce_mailbox_that_needs_smtputf8_fails_the_server_not_the_letters(tenant_a):
    bounce_mailbox(tenant_a)
    handler = MailOptions()
    with smtp_server(handler=handler, enable_SMTPUTF8=False) as (controller, _):
        server = make_server(tenant_a, port=controller.port, allow_sender_substitution=True)
        mailing = start(tenant_a, [server], EMAILS, sender_email="news@acme.test")
        settle(mailing)
    # Before the fix: all three failed with "does not accept international
    # addresses", naming no address, as if each recipient were at fault.
    assert statuses(mailing) == [L.QUEUED] * 3
    assert Letter.objects.filter(mailing=mailing, attempts=0, last_reply="").count() == 3
    assert handler.received == []
    server.refresh_from_db()
    assert server.health == Health.FAILING
    assert BOUNCES in server.health_error and "bounce address" in server.health_error, server.health_error
    assert "SMTPUTF8" in server.health_hint and "Gmail" in server.health_hint, server.health_hint
    mailing.refresh_from_db()
    assert mailing.status == Mailing.Status.BLOCKED
    [(_, reason, fix)] = dispatch.blocked_reasons(mailing, timezone.now())
    assert BOUNCES in reason and fix == server.health_hint


def test_with_smtputf8_the_same_mailing_goes_with_smtputf8_in_mail_from(tenant_a):
    bounce_mailbox(tenant_a)
    handler = MailOptions()
    with smtp_server(handler=handler, enable_SMTPUTF8=True) as (controller, _):
        server = make_server(tenant_a, port=controller.port, allow_sender_substitution=True)
        mailing = start(tenant_a, [server], EMAILS, sender_email="news@acme.test")
        assert settle(mailing) == "done"
    assert statuses(mailing) == [L.SENT] * 3
    assert len(handler.mail) == 3
    for mail_from, options in handler.mail:
        assert mail_from.startswith("рассылка+") and mail_from.endswith("@xn--80aqeigdi5k.xn--p1ai"), mail_from
        assert "SMTPUTF8" in options


@pytest.mark.parametrize("utf8", [False, True], ids=["no SMTPUTF8", "SMTPUTF8"])
def test_a_recipients_international_mailbox_still_fails_alone(tenant_a, utf8):
    with smtp_server(enable_SMTPUTF8=utf8) as (controller, _):
        server = make_server(tenant_a, port=controller.port)
        mailing = start(tenant_a, [server], ["josé@example.com", *EMAILS])
        assert settle(mailing) == "done"
    letters = dict(Letter.objects.filter(mailing=mailing).values_list("email", "status"))
    assert letters == {"josé@example.com": L.SENT if utf8 else L.FAILED, **dict.fromkeys(EMAILS, L.SENT)}
    server.refresh_from_db()
    assert server.health != Health.FAILING


def test_the_senders_problem_comes_before_a_recipients_own(tenant_a):
    # The first letter's recipient is international too: it is not its
    # fault either, the sender's address is.
    with smtp_server(enable_SMTPUTF8=False) as (controller, _):
        server = make_server(tenant_a, port=controller.port, sender_email="почта@пример.рф")
        mailing = start(tenant_a, [server], ["josé@example.com", *EMAILS])
        settle(mailing)
    assert statuses(mailing) == [L.QUEUED] * 4
    server.refresh_from_db()
    assert "почта@пример.рф" in server.health_error and "sender address" in server.health_error


@pytest.mark.parametrize("language", ["ru", "vi"])
def test_the_owner_reads_it_in_its_own_language(tenant_a, language):
    tenant_a.default_language = language
    tenant_a.save(update_fields=["default_language"])
    bounce_mailbox(tenant_a)
    with smtp_server(enable_SMTPUTF8=False) as (controller, _):
        server = make_server(tenant_a, port=controller.port, allow_sender_substitution=True)
        mailing = start(tenant_a, [server], EMAILS, sender_email="news@acme.test")
        with translation.override("en"):
            settle(mailing)
    server.refresh_from_db()
    assert BOUNCES in server.health_error
    assert "The server does not offer" not in server.health_error, server.health_error
    assert "Use an address" not in server.health_hint, server.health_hint
    if language == "ru":
        assert CYRILLIC.search(server.health_error.replace(BOUNCES, "")) and CYRILLIC.search(server.health_hint)
    else:
        assert "SMTPUTF8" in server.health_error and "máy chủ" in server.health_error, server.health_error


def test_on_the_platform_server_only_this_tenant_waits(tenant_a):
    bounce_mailbox(tenant_a)
    with smtp_server(enable_SMTPUTF8=False) as (controller, handler):
        platform = make_server(None, port=controller.port, allow_sender_substitution=True)
        mailing = start(tenant_a, [platform], EMAILS, sender_email="news@acme.test")
        settle(mailing)
    assert statuses(mailing) == [L.QUEUED] * 3
    assert handler.received == []
    platform.refresh_from_db()
    assert platform.health != Health.FAILING  # the other tenants' letters go on
    rest = TenantRest.objects.get(server=platform, tenant=tenant_a)
    assert BOUNCES in rest.reply and not rest.blocked


def test_the_platform_servers_own_sender_address_fails_the_platform_server(tenant_a):
    with smtp_server(enable_SMTPUTF8=False) as (controller, _):
        platform = make_server(None, port=controller.port, sender_email="почта@пример.рф")
        mailing = start(tenant_a, [platform], EMAILS)
        settle(mailing)
    assert statuses(mailing) == [L.QUEUED] * 3
    platform.refresh_from_db()
    assert platform.health == Health.FAILING and "почта@пример.рф" in platform.health_error
    assert not TenantRest.objects.filter(server=platform).exists()


@pytest.mark.parametrize(
    ("server_fields", "template", "address", "role"),
    [
        ({}, {"reply_to": "josé@acme.test"}, "josé@acme.test", "Reply-To address"),
        ({"allow_sender_substitution": True}, {"sender_email": "josé@acme.test"}, "josé@acme.test", "sender address"),
    ],
    ids=["its Reply-To", "its substituted sender"],
)
def test_a_mailings_own_address_pauses_that_mailing_not_the_server(tenant_a, server_fields, template, address, role):
    # A started mailing keeps the addresses it started with (its snapshot):
    # no change of the template nor a passing connection test (it does not
    # read mailings) could fix it. Failing the server for it stopped every
    # other mailing of the tenant, and after each passing test it failed
    # the server again.
    with smtp_server(enable_SMTPUTF8=False) as (controller, handler):
        server = make_server(tenant_a, port=controller.port, **server_fields)
        bad = start(tenant_a, [server], EMAILS, **template)
        settle(bad)
        other = start(tenant_a, [server], ["zed@x.test"])
        assert settle(other) == "done"
    assert statuses(bad) == [L.QUEUED] * 3 and statuses(other) == [L.SENT]
    assert [message.mail_from for message in handler.received] == [server.sender_email]
    server.refresh_from_db()
    assert server.health != Health.FAILING, server.health_error
    bad.refresh_from_db()
    assert bad.status == Mailing.Status.PAUSED
    note = bad.events.order_by("pk").last().note
    assert address in note and role in note and server.name in note, note


@pytest.mark.parametrize(
    ("server_fields", "template", "role"),
    [
        ({}, {"reply_to": "josé@acme.test"}, "Reply-To address"),
        ({"allow_sender_substitution": True}, {"sender_email": "josé@acme.test"}, "sender address"),
    ],
    ids=["its Reply-To", "its substituted sender"],
)
@pytest.mark.parametrize("pipelining", [False, True], ids=["one by one", "pipelined"])
def test_a_mailings_own_address_goes_on_through_its_next_server_that_offers_smtputf8(
    tenant_a, alice, server_fields, template, role, pipelining
):
    # It paused at the first server that lacks SMTPUTF8, although the next
    # one of the mailing could carry its address: the tenant had to cancel
    # it and start it again without that server.
    sink = PipeliningSink if pipelining else SinkHandler
    plain = {"handler": sink(), "enable_SMTPUTF8": False, "name": "Plain"}
    utf8 = {"handler": sink(), "enable_SMTPUTF8": True, "name": "Unicode"}
    with servers_in_order(tenant_a, plain, utf8, **server_fields) as [(first, plain), (second, utf8)]:
        mailing = start(tenant_a, [first, second], EMAILS, **template)
        assert settle(mailing) == "done"
        # The tenant's other mailings still go through the first server.
        other = start(tenant_a, [first, second], ["zed@x.test"])
        assert settle(other) == "done"
    assert statuses(mailing) == [L.SENT] * 3 and statuses(other) == [L.SENT]
    assert sorted(m.rcpt_tos[0] for m in utf8.received) == EMAILS
    assert [m.rcpt_tos for m in plain.received] == [["zed@x.test"]]
    first.refresh_from_db()
    assert first.health != Health.FAILING, first.health_error
    assert not first.backoff_until
    assert set(Letter.objects.filter(mailing=mailing).values_list("attempts", flat=True)) == {1}
    mailing.refresh_from_db()
    assert mailing.status == Mailing.Status.COMPLETED
    # Its history and its page say which server it went on without, and why.
    passed = mailing.server_links.get(server=first).passed_over
    assert "Plain" in passed and "josé@acme.test" in passed and role in passed, passed
    assert not mailing.server_links.get(server=second).passed_over
    notes = [event.note for event in mailing.events.all()]
    assert passed in notes and not any("Paused" in note for note in notes), notes
    page = html.unescape(page_text(alice.client, reverse("mailings:detail", args=[mailing.public_id])))
    assert "Passed over" in page and passed in page, page
    assert f"→ {Mailing.Status.ACTIVE.label} — {passed}" not in page  # a line of history, no change of state


def test_a_mailing_passed_over_by_every_server_pauses_and_a_resume_tries_them_again(tenant_a):
    one, two = {"enable_SMTPUTF8": False, "name": "One"}, {"enable_SMTPUTF8": False, "name": "Two"}
    with servers_in_order(tenant_a, one, two) as [(first, _), (second, _)]:
        mailing = start(tenant_a, [first, second], EMAILS, reply_to="josé@acme.test")
        settle(mailing)
        mailing.refresh_from_db()
        assert mailing.status == Mailing.Status.PAUSED
        assert statuses(mailing) == [L.QUEUED] * 3
        notes = [event.note for event in mailing.events.order_by("pk")]
        assert "One" in notes[-2] and "Paused" not in notes[-2], notes
        assert notes[-1].startswith("Paused") and "One" in notes[-1] and "Two" in notes[-1], notes
        assert all(link.passed_over for link in mailing.server_links.all())
        services.transition(mailing=mailing, action="resume")
        assert not any(link.passed_over or link.passed_over_words for link in mailing.server_links.all())
    for server in (first, second):
        server.refresh_from_db()
        assert server.health != Health.FAILING, server.health_error


def test_a_reply_to_spelled_as_the_platform_sender_pauses_the_mailing_not_the_platform(tenant_a):
    # The platform's own sender address is not ASCII, but with a bounce
    # mailbox of the tenant's no letter carries it: a tenant giving it as
    # its Reply-To must not fail the platform server for every tenant.
    bounce_mailbox(tenant_a, "bounces@acme.test")
    with smtp_server(enable_SMTPUTF8=False) as (controller, _):
        platform = make_server(
            None, port=controller.port, sender_email="почта@пример.рф", allow_sender_substitution=True
        )
        mailing = start(tenant_a, [platform], EMAILS, sender_email="news@acme.test", reply_to="почта@пример.рф")
        settle(mailing)
    assert statuses(mailing) == [L.QUEUED] * 3
    platform.refresh_from_db()
    assert platform.health != Health.FAILING, platform.health_error
    mailing.refresh_from_db()
    assert mailing.status == Mailing.Status.PAUSED


def test_the_paused_mailing_says_why_in_its_organisations_language(tenant_a):
    tenant_a.default_language = "ru"
    tenant_a.save(update_fields=["default_language"])
    with smtp_server(enable_SMTPUTF8=False) as (controller, _):
        server = make_server(tenant_a, port=controller.port)
        mailing = start(tenant_a, [server], EMAILS, reply_to="josé@acme.test")
        with translation.override("en"):
            settle(mailing)
    note = mailing.events.order_by("pk").last().note
    assert "josé@acme.test" in note and server.name in note and "Paused" not in note, note
    assert CYRILLIC.search(note.replace("josé@acme.test", "")), note


def page_text(client, url: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", client.get(url).content.decode()))


def test_on_the_platform_server_the_tenant_reads_what_to_fix_and_its_fix_sends_at_once(tenant_a, alice, settings):
    settings.DEPLOYMENT_MODE = "saas"
    mailbox = bounce_mailbox(tenant_a)
    with smtp_server(enable_SMTPUTF8=False) as (controller, handler):
        platform = make_server(None, port=controller.port, allow_sender_substitution=True)
        mailing = start(tenant_a, [platform], EMAILS, sender_email="news@acme.test")
        settle(mailing)
        page = page_text(alice.client, reverse("dashboard:page"))
        # Before: "Held back after your letters were refused ... How to fix:
        # Check the content of your template: the server refused it as spam".
        assert BOUNCES in page and "bounce mailbox" in page, page
        assert "refused" not in page and "Check the content of your template" not in page, page
        # The fix is the tenant's own: its letters go at once, not after
        # the rest (which grows to hours with each try).
        mailbox.login = "bounces@acme.test"
        mailbox_save(mailbox=mailbox, password=None)
        assert settle(mailing) == "done"
    assert statuses(mailing) == [L.SENT] * 3 and len(handler.received) == 3


@pytest.mark.parametrize("handler_class", [SinkHandler, PipeliningSink], ids=["one by one", "pipelined"])
def test_nothing_is_counted_until_the_server_offers_smtputf8_and_then_the_limit_is_exact(tenant_a, handler_class):
    # Pipelined, the next letter's envelope would go with a final dot
    # (Batch._then, which swallows what it raises): the first letter stops
    # the batch before any. The limit's room reserved for the batch comes
    # back whole, and once the provider offers SMTPUTF8 and the tenant
    # tests the server, exactly max_per_hour letters go, none failed.
    emails = [f"r{i}@x.test" for i in range(5)]
    with smtp_server(handler=handler_class(), enable_SMTPUTF8=False) as (controller, handler):
        server = make_server(tenant_a, port=controller.port, sender_email="почта@пример.рф", max_per_hour=3)
        mailing = start(tenant_a, [server], emails)
        settle(mailing)
        assert handler.received == []
    assert statuses(mailing) == [L.QUEUED] * 5
    assert Letter.objects.filter(mailing=mailing, attempts=0, server=None).count() == 5
    assert limits.window_usage([server], tenant_a)[server.pk].hour_used == 0
    with smtp_server(handler=handler_class(), enable_SMTPUTF8=True) as (controller, handler):
        SmtpServer.objects.filter(pk=server.pk).update(port=controller.port)
        server.refresh_from_db()
        result = smtp_probe(server)
        assert result.ok, result.diagnosis
        record_health(record=server, result=result)
        assert settle(mailing) == "waiting"
    assert statuses(mailing) == [L.QUEUED] * 2 + [L.SENT] * 3
    assert len(handler.received) == 3
    assert limits.window_usage([server], tenant_a)[server.pk].hour_used == 3


def test_a_mixed_batch_goes_whole_with_smtputf8_from_an_international_sender(tenant_a):
    # Sender and some recipients international, others not: with SMTPUTF8
    # every letter goes, each MAIL FROM asking for it (the From header is
    # UTF-8 for the ASCII recipients too).
    handler = MailOptions()
    recipients = ["josé@example.com", "ann@x.test", "ivan@пример.рф", "иван@пример.рф"]
    with smtp_server(handler=handler, enable_SMTPUTF8=True) as (controller, _):
        server = make_server(tenant_a, port=controller.port, sender_email="почта@пример.рф")
        mailing = start(tenant_a, [server], recipients)
        assert settle(mailing) == "done"
    assert statuses(mailing) == [L.SENT] * 4
    assert all("SMTPUTF8" in options for _, options in handler.mail), handler.mail
    assert {mail_from for mail_from, _ in handler.mail} == {"почта@xn--e1afmkfd.xn--p1ai"}


@pytest.mark.parametrize("substitution", [True, False], ids=["bounce mailbox as envelope sender", "as Reply-To"])
def test_an_international_domain_behind_an_ascii_local_part_needs_no_smtputf8(tenant_a, substitution):
    # Only a local part that is not ASCII needs SMTPUTF8: the domain goes
    # as IDNA to any server. Neither the letters nor the test stop for it.
    bounce_mailbox(tenant_a, "bounces@компания.рф")
    handler = MailOptions()
    with smtp_server(handler=handler, enable_SMTPUTF8=False) as (controller, _):
        server = make_server(
            tenant_a, port=controller.port, sender_email="info@пример.рф", allow_sender_substitution=substitution
        )
        result = smtp_probe(server)
        mailing = start(tenant_a, [server], EMAILS, sender_email="news@акме.рф")
        assert settle(mailing) == "done"
    assert result.ok, result.diagnosis
    assert "International sender addresses (SMTPUTF8)" not in [step.name for step in result.steps]
    assert statuses(mailing) == [L.SENT] * 3
    assert not any("SMTPUTF8" in options for _, options in handler.mail), handler.mail
    server.refresh_from_db()
    assert server.health != Health.FAILING


@pytest.mark.parametrize("substitution", [True, False], ids=["as envelope sender", "as Reply-To"])
def test_a_bounce_mailbox_whose_domain_cannot_go_as_idna_fails_the_server_not_every_letter(tenant_a, substitution):
    # A login standing as the mailbox's address is not checked as one: a
    # domain IDNA 2008 refuses (☃.net: IDNA 2003 took it) cannot go in any
    # letter through any server. Before: every letter failed for good, one
    # by one, and the connection test passed.
    bounce_mailbox(tenant_a, "box@☃.net")
    with smtp_server(enable_SMTPUTF8=True) as (controller, handler):
        server = make_server(tenant_a, port=controller.port, allow_sender_substitution=substitution)
        result = smtp_probe(server)
        mailing = start(tenant_a, [server], EMAILS)
        settle(mailing)
    assert handler.received == []
    assert statuses(mailing) == [L.QUEUED] * 3
    assert Letter.objects.filter(mailing=mailing, attempts=0, last_reply="").count() == 3
    server.refresh_from_db()
    assert server.health == Health.FAILING and "box@☃.net" in server.health_error, server.health_error
    assert "bounce mailbox" in server.health_hint, server.health_hint
    assert not result.ok and "box@☃.net" in result.diagnosis.message, result.diagnosis


def test_the_server_passed_over_is_said_in_the_organisations_language(tenant_a):
    tenant_a.default_language = "ru"
    tenant_a.save(update_fields=["default_language"])
    plain, utf8 = {"enable_SMTPUTF8": False, "name": "Plain"}, {"enable_SMTPUTF8": True, "name": "Unicode"}
    with servers_in_order(tenant_a, plain, utf8) as [(first, _), (second, _)]:
        mailing = start(tenant_a, [first, second], EMAILS, reply_to="josé@acme.test")
        with translation.override("en"):
            assert settle(mailing) == "done"
    passed = mailing.server_links.get(server=first).passed_over
    assert "josé@acme.test" in passed and "Plain" in passed, passed
    assert CYRILLIC.search(passed.replace("josé@acme.test", "")), passed


def test_a_mailing_whose_other_server_is_failing_blocks_rather_than_waits_on_the_one_passed_over(tenant_a):
    # The server passed over counted as one that may send (room now) when
    # the mailing decided what it waits for: with its other server failing
    # it waited a tick, woke, found nothing to send through and waited
    # again, for ever, instead of being blocked with the failing server
    # named; the blocked reasons said the passed-over server "can send".
    with smtp_server(enable_SMTPUTF8=False) as (plain_controller, plain):
        first = make_server(tenant_a, port=plain_controller.port, name="Plain", priority=1)
        second = make_server(tenant_a, port=1, name="Unicode", priority=2)
        mailing = start(tenant_a, [first, second], EMAILS, reply_to="josé@acme.test")
        SmtpServer.objects.filter(pk=second.pk).update(health=Health.FAILING, health_error="auth refused")
        assert settle(mailing) == "blocked"
    mailing.refresh_from_db()
    assert mailing.status == Mailing.Status.BLOCKED and mailing.resume_at is None
    assert mailing.server_links.get(server=first).passed_over
    assert plain.received == []
    reasons = {server.name: reason for server, reason, _ in dispatch.blocked_reasons(mailing, timezone.now())}
    assert reasons["Plain"] != "can send" and "josé@acme.test" in reasons["Plain"], reasons
    assert "auth refused" in reasons["Unicode"], reasons


def test_two_chains_passing_over_the_same_server_say_it_once(tenant_a):
    # Two chains of a big mailing, each in a batch through the same server,
    # both meet the mailing's own address at their next letter: the history
    # said "goes on without" that server once per chain.
    first = make_server(tenant_a, name="Plain", priority=1)
    second = make_server(tenant_a, name="Unicode", priority=2)
    mailing = start(tenant_a, [first, second], EMAILS, reply_to="josé@acme.test")
    before = mailing.events.count()
    for _chain in range(2):
        rests.mailing_needs_smtputf8(mailing, first, SenderNeedsSmtpUtf8("josé@acme.test", Role.REPLY_TO))
    mailing.refresh_from_db()
    assert mailing.status == Mailing.Status.ACTIVE
    notes = [event.note for event in mailing.events.order_by("pk")][before:]
    assert len(notes) == 1 and "Plain" in notes[0], notes
