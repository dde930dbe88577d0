"""What the real world sends the dispatcher (issue: dispatch keeps its
promises): international addresses, a builder that refuses one letter,
4xx storms, content refusals and blacklistings on a shared platform server,
a busy first server, mailings that cannot send and wake when a server is
fixed, a limit lowered in the middle of a batch, rate limits, refusals of
unknown recipients, the time of the 250. Real aiosmtpd servers answering as
described, on PostgreSQL where locks matter."""

import asyncio
import email
import email.policy
import re
import threading
import time
from contextlib import ExitStack
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from mailing import dispatch, limits
from mailing import mailings as services
from mailing.dispatch import batch as batch_module
from mailing.dispatch import exchange
from mailing.models import Letter, Mailing, Suppression
from mailing.sink import SinkHandler
from servers.models import BounceMailbox, Health, RestReason, SmtpServer, TenantRest
from servers.services import mailbox_save, reset_health
from tests.servers.factories import make_server
from tests.services import hold_slots, require_postgresql
from tests.smtp_servers import PipeliningSink, smtp_server

from .builders import from_the_reply, make_list, make_template
from .builders import run_until_settled as settle

pytestmark = pytest.mark.django_db
L = Letter.Status
M = Mailing.Status


def start(tenant, servers, emails, **template) -> Mailing:
    contact_list = make_list(tenant, f"L{Mailing.objects.count()}", emails)
    mailing = Mailing(tenant=tenant, name="m", template=make_template(tenant, **template))
    services.mailing_save(mailing=mailing, lists=[contact_list], servers=servers)
    services.mailing_start(mailing=mailing)
    return mailing


def statuses(mailing: Mailing) -> dict[str, str]:
    return dict(Letter.objects.filter(mailing=mailing).values_list("email", "status"))


def used(server: SmtpServer, tenant) -> int:
    return limits.window_usage([server], tenant)[server.pk].day_used


class Refusing(SinkHandler):
    """Answers `reply` at RCPT (or after DATA) to the recipients `who` picks."""

    def __init__(self, reply: str, *, at: str = "rcpt", who=lambda rcpt: True) -> None:
        super().__init__()
        self.reply, self.at, self.who, self.refused = reply, at, who, []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.at == "rcpt" and self.who(address):
            self.refused.append(address)
            return self.reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.at == "dot" and self.who(envelope.rcpt_tos[0]):
            self.refused.append(envelope.rcpt_tos[0])
            return self.reply
        return await super().handle_DATA(server, session, envelope)


# 1. On the wire: international addresses, lines that start with a dot


@pytest.mark.parametrize("utf8", [False, True], ids=["no SMTPUTF8", "SMTPUTF8"])
def test_international_addresses_go_as_idna_and_with_smtputf8_when_offered(tenant_a, utf8):
    emails = ["a@x.test", "ivan@пример.рф", "josé@example.com", "b@x.test"]
    with smtp_server(enable_SMTPUTF8=utf8) as (controller, handler):
        server = make_server(tenant_a, port=controller.port, max_per_hour=10)
        mailing = start(tenant_a, [server], emails)
        assert settle(mailing) == "done"
    rcpts = [r.rcpt_tos[0] for r in handler.received]
    assert "ivan@xn--e1afmkfd.xn--p1ai" in rcpts
    letters = {le.email: le for le in Letter.objects.filter(mailing=mailing)}
    if utf8:
        assert "josé@example.com" in rcpts and letters["josé@example.com"].status == L.SENT
    else:
        josé = letters["josé@example.com"]
        assert josé.status == L.FAILED and "does not accept international addresses" in josé.last_reply
    assert [letters[e].status for e in ("a@x.test", "ivan@пример.рф", "b@x.test")] == [L.SENT] * 3
    assert not Letter.objects.filter(status=L.SENDING).exists()
    # Only what reached DATA counts against the limit.
    assert used(server, tenant_a) == len(handler.received)


class MailOptions(SinkHandler):
    """Keeps each letter's MAIL FROM parameters (SMTPUTF8, BODY=...)."""

    def __init__(self) -> None:
        super().__init__()
        self.mail_options: list[list[str]] = []

    async def handle_DATA(self, server, session, envelope):
        self.mail_options.append(list(envelope.mail_options))
        return await super().handle_DATA(server, session, envelope)


@pytest.mark.parametrize(
    "sender, template",
    [
        ({"sender_email": "почта@пример.рф", "sender_name": "Иван, отдел продаж"}, {}),
        ({"allow_sender_substitution": True}, {"sender_email": "nguyễn@công-ty.vn", "sender_name": "Công ty"}),
        ({}, {"reply_to": "ответ@пример.рф"}),
    ],
    ids=["server sender", "template sender", "reply-to"],
)
@pytest.mark.parametrize("utf8", [False, True], ids=["no SMTPUTF8", "SMTPUTF8"])
def test_a_sender_or_reply_to_with_an_international_mailbox_goes_with_smtputf8_or_stops_the_server(
    tenant_a, utf8, sender, template
):
    # Headers in UTF-8 (RFC 6532) only with SMTPUTF8: a From or Reply-To
    # whose mailbox is not ASCII is written as it is, never as an encoded
    # word, which would hide the address from every mail client.
    handler = MailOptions()
    with smtp_server(enable_SMTPUTF8=utf8, handler=handler) as (controller, _):
        server = make_server(tenant_a, port=controller.port, max_per_hour=10, **sender)
        mailing = start(tenant_a, [server], ["ann@x.test", "bob@x.test"], **template)
        result = settle(mailing)
    letters = Letter.objects.filter(mailing=mailing)
    assert not letters.filter(status=L.SENDING).exists()
    if not utf8:
        # The sender's address, the same for every letter: the server's
        # problem (the mailing's, where it is the mailing's own), named,
        # and no letter fails for it (each did, blamed on its recipient,
        # with no address named).
        assert handler.received == []
        assert {(le.status, le.last_reply) for le in letters} == {(L.QUEUED, "")}
        server.refresh_from_db()
        mailing.refresh_from_db()
        address, role = next(
            (fields[key], words)
            for fields in (sender, template)
            for key, words in (("sender_email", "sender address"), ("reply_to", "Reply-To address"))
            if key in fields
        )
        if template:  # kept from the mailing's start: it pauses, the server stays
            assert server.health != Health.FAILING and mailing.status == Mailing.Status.PAUSED
            said = mailing.events.order_by("pk").last().note
        else:
            assert server.health == Health.FAILING
            said = server.health_error
        assert address in said and role in said, said
        return
    assert result == "done"
    assert [le.status for le in letters] == [L.SENT] * 2
    assert all("SMTPUTF8" in options for options in handler.mail_options)
    # As a mail client reads UTF-8 headers (the sink's parser reads bytes as ASCII).
    message = email.message_from_string(handler.received[0].data.decode(), policy=email.policy.default)
    if "sender_email" in template or "sender_email" in sender:
        address = (template or sender)["sender_email"]
        local, _, domain = address.partition("@")
        assert message["From"].addresses[0].addr_spec == f"{local}@{domain.encode('idna').decode()}"
        assert message["From"].addresses[0].display_name == (template or sender)["sender_name"]
    else:
        assert message["Reply-To"].addresses[0].addr_spec == "ответ@xn--e1afmkfd.xn--p1ai"


def test_replies_reach_a_bounce_mailbox_whose_login_is_a_mailbox_that_is_not_ascii(tenant_a):
    # The tenant's mailbox (its login, the address being empty) is where
    # replies go: its address must arrive as an address, not an encoded word.
    mailbox = BounceMailbox(tenant=tenant_a, host="imap.yandex.ru", port=993, login="почта@пример.рф")
    mailbox_save(mailbox=mailbox, password="secret")
    with smtp_server(enable_SMTPUTF8=True) as (controller, handler):
        server = make_server(tenant_a, port=controller.port, max_per_hour=10)
        mailing = start(tenant_a, [server], ["ann@x.test"])
        assert settle(mailing) == "done"
    assert statuses(mailing) == {"ann@x.test": L.SENT}
    message = email.message_from_string(handler.received[0].data.decode(), policy=email.policy.default)
    assert message["Reply-To"].addresses[0].addr_spec == "почта@xn--e1afmkfd.xn--p1ai"


ROMASHKA = "Общество с ограниченной ответственностью «Ромашка» — отдел продаж"
ROMASHKA_WORDS = (
    b"From: =?utf-8?b?0J7QsdGJ0LXRgdGC0LLQviDRgSA=?=\r\n"
    b" =?utf-8?b?0L7Qs9GA0LDQvdC40YfQtdC90L3QvtC5IA==?=\r\n"
    b" =?utf-8?b?0L7RgtCy0LXRgtGB0YLQstC10L3QvdC+0YHRgtGM0Y4g?=\r\n"
    b" =?utf-8?b?wqvQoNC+0LzQsNGI0LrQsMK7IOKAlCDQvtGC0LTQtdC7IA==?=\r\n"
    b" =?utf-8?b?0L/RgNC+0LTQsNC2?= "
)


@pytest.mark.parametrize(
    "sender, address, utf8",
    [
        ("box@acme.test", b"<box@acme.test>", False),
        ("почта@пример.рф", "<почта@xn--e1afmkfd.xn--p1ai>".encode(), True),
    ],
    ids=["ASCII mailbox", "international mailbox, SMTPUTF8"],
)
def test_a_long_sender_name_arrives_in_encoded_words_of_at_most_75_characters(tenant_a, sender, address, utf8):
    # One word of 180 characters was shown raw by mail clients that keep to
    # RFC 2047 (and refused by strict filters).
    with smtp_server(enable_SMTPUTF8=utf8) as (controller, handler):
        server = make_server(tenant_a, port=controller.port, sender_email=sender, sender_name=ROMASHKA)
        mailing = start(tenant_a, [server], ["ann@x.test"])
        assert settle(mailing) == "done"
    [received] = handler.received
    assert b"\r\n" + ROMASHKA_WORDS + address + b"\r\nTo: ann@x.test\r\n" in received.data


@pytest.mark.parametrize("pipelining", [False, True], ids=["one command a time", "PIPELINING"])
def test_lines_that_start_with_a_dot_arrive_as_written(tenant_a, pipelining):
    """Dot-stuffing (RFC 5321 §4.5.2): a line of one dot would end the
    letter early at the server, and any other leading dot would be lost."""
    lines = [".first", ".", "..two", "a . not first", ".{{ first_name }}."]
    handler = PipeliningSink() if pipelining else SinkHandler()
    with smtp_server(handler=handler) as (controller, _):
        server = make_server(tenant_a, port=controller.port)
        mailing = start(tenant_a, [server], ["a@x.test"], text_body="\n".join(lines) + "\n{{ unsubscribe_url }}")
        assert settle(mailing) == "done"
    [received] = handler.received
    text = received.message.get_body(preferencelist=("plain",)).get_content()
    assert text.splitlines()[:5] == [".first", ".", "..two", "a . not first", ".a@x."]
    assert Letter.objects.get(mailing=mailing).status == L.SENT


@pytest.mark.parametrize("data", [b".", b"..", b"\n.", b"x\r\n.\r\n..\r\n", b".a\n.\n.", b"no dot.\r\n", b"\r.\n\n.."])
def test_dot_stuffing_is_smtplibs(data):
    assert exchange.stuffed(data) == re.sub(rb"(?m)^\.", b"..", data)


# 2. One letter's error never stops the batch


def test_a_letter_the_builder_refuses_fails_alone_and_the_batch_goes_on(tenant_a):
    with smtp_server() as (controller, handler):
        server = make_server(tenant_a, port=controller.port, max_per_hour=10)
        mailing = start(tenant_a, [server], ["a@x.test", "b@x.test", "c@x.test"])
        # A row written behind the forms' back: the builder refuses the header.
        Letter.objects.filter(mailing=mailing, email="b@x.test").update(email="b\x0b@x.test")
        assert settle(mailing) == "done"
    broken = Letter.objects.get(mailing=mailing, email="b\x0b@x.test")
    assert broken.status == L.FAILED and "could not be built" in broken.last_reply
    assert sorted(r.rcpt_tos[0] for r in handler.received) == ["a@x.test", "c@x.test"]
    assert used(server, tenant_a) == 2


class HoldsTheFirstReply(SinkHandler):
    """Holds its reply to the first letter's final dot until `released`
    (at most 5 s), and notes whether it was released in time."""

    def __init__(self) -> None:
        super().__init__()
        self.released = threading.Event()
        self.in_time: list[bool] = []

    async def handle_DATA(self, server, session, envelope):
        if not self.in_time:
            loop = asyncio.get_running_loop()
            self.in_time.append(await loop.run_in_executor(None, self.released.wait, 5))
        return await super().handle_DATA(server, session, envelope)


def test_the_next_letter_is_made_while_the_server_takes_one_and_a_refused_one_fails_in_its_turn(tenant_a, monkeypatch):
    """The builder makes a letter while the server still holds its reply
    to the final dot of the one before (the making leaves the chain of
    waits); a letter it refuses then still fails in its own turn, with its
    error, and the batch goes on; every letter goes as the builder makes it."""
    handler = HoldsTheFirstReply()
    real = batch_module.Builder.wire
    made: list[str] = []

    def wire(builder, letter):
        made.append(letter.email)
        if letter.email.startswith("b"):
            handler.released.set()
        return real(builder, letter)

    monkeypatch.setattr(batch_module.Builder, "wire", wire)
    with smtp_server(handler=handler) as (controller, _):
        server = make_server(tenant_a, port=controller.port, max_per_hour=10)
        mailing = start(tenant_a, [server], ["a@x.test", "b@x.test", "c@x.test", "d@x.test"])
        Letter.objects.filter(mailing=mailing, email="c@x.test").update(email="c\x0b@x.test")
        assert settle(mailing) == "done"
    assert handler.in_time == [True]  # b was made before the server answered a's final dot
    assert made == ["a@x.test", "b@x.test", "c\x0b@x.test", "d@x.test"]  # each made once
    broken = Letter.objects.get(mailing=mailing, email="c\x0b@x.test")
    assert broken.status == L.FAILED and "could not be built" in broken.last_reply
    letters = {letter.email: letter for letter in Letter.objects.filter(mailing=mailing)}
    assert [received.rcpt_tos for received in handler.received] == [["a@x.test"], ["b@x.test"], ["d@x.test"]]
    for received in handler.received:
        letter = letters[received.rcpt_tos[0]]
        assert letter.status == L.SENT
        assert f"X-Postroute-Letter: {letter.public_id}".encode() in received.data
    assert used(server, tenant_a) == 3


def seconds_observed() -> float:
    """The sum of postroute_letter_seconds so far (this process's registry)."""
    from config import metrics

    return next(s.value for s in metrics.LETTER_SECONDS.collect()[0].samples if s.name.endswith("_sum"))


def test_making_the_next_letter_does_not_use_up_the_time_the_server_has_to_answer(tenant_a, monkeypatch, settings):
    """The next letter is made after the final dot, before the reply is
    read: however long that takes us, the server's 250 already in is read,
    not taken for a server that did not answer in time (which would defer
    a letter the server took and send it again). Found by an outside
    review."""
    settings.DISPATCH_SMTP_TIMEOUT = 0.5
    real = batch_module.Builder.wire

    def slow(builder, letter):
        if letter.email == "b@x.test":
            time.sleep(0.8)  # a big letter on a loaded box
        return real(builder, letter)

    monkeypatch.setattr(batch_module.Builder, "wire", slow)
    observed_before = seconds_observed()
    with smtp_server() as (controller, handler):
        server = make_server(tenant_a, port=controller.port, max_per_hour=10)
        mailing = start(tenant_a, [server], ["a@x.test", "b@x.test"])
        assert settle(mailing) == "done"
    assert statuses(mailing) == {"a@x.test": L.SENT, "b@x.test": L.SENT}
    assert [received.rcpt_tos for received in handler.received] == [["a@x.test"], ["b@x.test"]]
    server.refresh_from_db()
    assert server.health != Health.FAILING
    # Nor does the time of a letter's exchange (postroute_letter_seconds) count it.
    assert 0 < seconds_observed() - observed_before < 0.5


def test_an_unexpected_error_after_data_keeps_the_count_and_leaves_nothing_sending(tenant_a, monkeypatch):
    real = batch_module.exchange

    def exploding(client, commands, data, recorder, progress, **options):
        culprit = b"b@x.test" in commands[1]
        reply = real(client, commands, data, recorder, progress, **options)
        if culprit:
            raise RuntimeError("a bug after the 250")
        return reply

    monkeypatch.setattr(batch_module, "exchange", exploding)
    with smtp_server() as (controller, handler):
        server = make_server(tenant_a, port=controller.port, max_per_hour=10)
        mailing = start(tenant_a, [server], ["a@x.test", "b@x.test", "c@x.test"])
        dispatch.run_mailing(mailing_id=mailing.pk)
    letters = statuses(mailing)
    assert letters == {"a@x.test": L.SENT, "b@x.test": L.DEFERRED, "c@x.test": L.QUEUED}
    assert "a bug after the 250" in Letter.objects.get(mailing=mailing, email="b@x.test").last_reply
    # b reached DATA (the server has it): it stays counted; c never did.
    assert used(server, tenant_a) == len(handler.received) == 2


def test_a_letter_that_kills_every_worker_fails_after_the_last_attempt(tenant_a, settings):
    settings.DISPATCH_MAX_ATTEMPTS, settings.DISPATCH_RETRY_BASE, settings.DISPATCH_RETRY_MAX = 3, 1, 1
    server = make_server(tenant_a, max_connections=1)  # one chain claims both letters
    mailing = start(tenant_a, [server], ["a@x.test", "b@x.test"])
    now = timezone.now()
    for n in range(3):
        claimed = dispatch.claim(mailing, server, 2, now=now)
        assert claimed[0].email == "a@x.test"  # the worker dies on it every time
        now += dispatch.LEASE + timedelta(seconds=1)
        dispatch.requeue_expired_leases(now=now)
    poison, other = Letter.objects.filter(mailing=mailing).order_by("pk")
    assert (poison.status, poison.attempts) == (L.FAILED, 3) and "stopped the worker" in poison.last_reply
    assert (other.status, other.attempts) == (L.QUEUED, 0)


# 4. A 4xx storm rests the server; the letters go to the next one at once


@pytest.mark.parametrize(
    "reply, at",
    [("451 4.3.0 Temporary local problem", "rcpt"), ("451 4.7.1 Service unavailable, message deferred", "dot")],
    ids=["451 at RCPT", "451 after DATA"],
)
def test_a_server_refusing_every_letter_for_now_rests_and_the_next_server_sends(tenant_a, reply, at):
    with smtp_server(handler=Refusing(reply, at=at)) as (c1, storm), smtp_server() as (c2, healthy):
        first = make_server(tenant_a, name="Storm", port=c1.port)
        second = make_server(tenant_a, name="Healthy", port=c2.port, priority=1)
        mailing = start(tenant_a, [first, second], [f"r{i}@x.test" for i in range(8)])
        assert settle(mailing) == "done"
    assert len(storm.refused) == 3 and len(healthy.received) == 8
    assert set(statuses(mailing).values()) == {L.SENT}
    first.refresh_from_db()
    assert first.rest_reason == RestReason.REFUSALS and first.backoff_until > timezone.now()
    assert first.health != Health.FAILING
    # Refusals that were the server's, not the recipients', cost no attempt.
    assert set(Letter.objects.filter(mailing=mailing).values_list("attempts", flat=True)) == {1}


def test_a_recipients_own_temporary_refusal_defers_that_letter_only(tenant_a):
    handler = Refusing("450 4.2.1 Greylisted, try again later", who=lambda rcpt: rcpt.startswith("grey"))
    with smtp_server(handler=handler) as (controller, _):
        server = make_server(tenant_a, port=controller.port)
        mailing = start(tenant_a, [server], ["a@x.test", "grey@x.test", "b@x.test"])
        settle(mailing)
    assert statuses(mailing) == {"a@x.test": L.SENT, "grey@x.test": L.DEFERRED, "b@x.test": L.SENT}
    server.refresh_from_db()
    assert server.backoff_until is None


def test_retries_span_at_least_the_longest_retry_before_a_letter_fails(settings):
    from mailing.dispatch.results import gives_up, retry_delays

    settings.DISPATCH_MAX_ATTEMPTS, settings.DISPATCH_RETRY_BASE, settings.DISPATCH_RETRY_MAX = 5, 60, 3600
    first_fail = next(n for n in range(1, 50) if gives_up(n))
    waited = sum((retry_delays(n) for n in range(1, first_fail)), timedelta())
    assert first_fail > 5 and waited >= timedelta(seconds=3600)


# 5. Content refusals and blacklistings on the shared platform server


def platform_server(port: int) -> SmtpServer:
    return make_server(None, name="Platform", port=port, tenant_daily_quota=100)


def test_content_refusals_fail_the_letters_and_hold_back_only_that_tenant_on_the_platform(tenant_a, tenant_b):
    spam = Refusing("554 5.7.1 Message rejected as spam", at="dot", who=lambda rcpt: rcpt.endswith("@a.test"))
    with smtp_server(handler=spam) as (controller, handler):
        platform = platform_server(controller.port)
        mailing_a = start(tenant_a, [platform], [f"r{i}@a.test" for i in range(6)])
        mailing_b = start(tenant_b, [platform], [f"r{i}@b.test" for i in range(4)])
        assert settle(mailing_a) == "waiting"
        assert settle(mailing_b) == "done"
    a = Letter.objects.filter(mailing=mailing_a)
    assert a.filter(status=L.FAILED, last_reply__contains="rejected as spam").count() == 3
    assert a.filter(status=L.QUEUED).count() == 3  # they wait for the tenant's rest to end
    assert len(handler.received) == 4  # tenant B sent everything meanwhile
    platform.refresh_from_db()
    assert platform.health != Health.FAILING and platform.backoff_until is None
    rest = TenantRest.objects.get(server=platform, tenant=tenant_a)
    assert rest.until > timezone.now() and not rest.blocked
    assert not TenantRest.objects.filter(tenant=tenant_b).exists()


def test_a_blacklisting_seen_on_one_tenants_letters_blocks_that_tenant_not_the_platform(tenant_a, tenant_b):
    listed = Refusing(
        "554 5.7.1 Service unavailable; Client host [10.0.0.1] blocked using zen.spamhaus.org",
        who=lambda rcpt: rcpt.endswith("@a.test"),
    )
    with smtp_server(handler=listed) as (controller, sink):
        platform = platform_server(controller.port)
        mailing_a = start(tenant_a, [platform], ["r1@a.test", "r2@a.test"])
        mailing_b = start(tenant_b, [platform], ["r1@b.test", "r2@b.test"])
        assert settle(mailing_a) == "blocked"
        assert settle(mailing_b) == "done"
        assert len(sink.received) == 2  # tenant B's letters went through
        reasons = dispatch.blocked_reasons(Mailing.objects.get(pk=mailing_a.pk), timezone.now())
        assert "blocked for your letters" in reasons[0][1]
        platform.refresh_from_db()
        assert platform.health != Health.FAILING
        assert TenantRest.objects.get(server=platform, tenant=tenant_a).blocked
        # Staff reset the server's health from the admin: tenant A may try again.
        reset_health(server_ids=[platform.pk])
        assert mailing_a.pk in dispatch.active_mailing_ids()
    assert Letter.objects.filter(mailing=mailing_a, status=L.QUEUED).count() == 2  # kept, never lost


# 7. A busy first server is waited for, never skipped


def test_a_busy_first_server_with_room_is_waited_for_not_skipped(tenant_a):
    require_postgresql()
    with smtp_server() as (c1, first_sink), smtp_server() as (c2, second_sink):
        first = make_server(tenant_a, name="First", port=c1.port, max_per_hour=100, max_connections=2)
        second = make_server(tenant_a, name="Second", port=c2.port, priority=1)
        mailing = start(tenant_a, [first, second], ["a@x.test", "b@x.test"])
        with hold_slots(first, 2):  # two other mailings' chains hold both slots
            assert dispatch.run_mailing(mailing_id=mailing.pk) == "busy"
            assert second_sink.received == []
        assert settle(mailing) == "done"  # the slots are free again: through the first
    assert (len(first_sink.received), len(second_sink.received)) == (2, 0)


# 8. Cannot send: a state of its own, woken when a server is fixed


@pytest.mark.parametrize("fix", ["health back", "enabled", "limit raised", "server added"])
def test_a_mailing_that_cannot_send_says_why_and_wakes_within_a_tick_once_fixed(tenant_a, fix):
    with smtp_server() as (controller, handler):
        server = make_server(tenant_a, port=controller.port)
        broken = {
            "health back": {"health": Health.FAILING, "health_error": "535 bad password"},
            "enabled": {"enabled": False},
            "limit raised": {"max_per_hour": 0},
            "server added": {"enabled": False},
        }[fix]
        mailing = start(tenant_a, [server], ["a@x.test", "b@x.test"])
        SmtpServer.objects.filter(pk=server.pk).update(**broken)
        assert settle(mailing) == "blocked"
        mailing.refresh_from_db()
        assert (mailing.status, mailing.resume_at) == (M.BLOCKED, None)
        (row,) = dispatch.blocked_reasons(mailing, timezone.now())
        assert row[1] != "can send" and row[2]  # a reason and what to do
        assert mailing.pk not in dispatch.active_mailing_ids()
        if fix == "server added":
            extra = make_server(tenant_a, name="Extra", port=controller.port, priority=1)
            mailing.server_links.create(server=extra, position=1)
        else:
            SmtpServer.objects.filter(pk=server.pk).update(
                health=Health.OK, enabled=True, max_per_hour=None if fix == "limit raised" else server.max_per_hour
            )
        assert mailing.pk in dispatch.active_mailing_ids()  # the next tick runs it
        assert settle(mailing) == "done"
    assert len(handler.received) == 2


def test_a_waiting_mailing_wakes_when_its_spent_limit_is_raised(tenant_a):
    with smtp_server() as (controller, handler):
        server = make_server(tenant_a, port=controller.port, max_per_day=1)
        mailing = start(tenant_a, [server], ["a@x.test", "b@x.test"])
        assert settle(mailing) == "waiting"
        mailing.refresh_from_db()
        assert mailing.resume_at > timezone.now() + timedelta(hours=23)
        SmtpServer.objects.filter(pk=server.pk).update(max_per_day=10)
        assert mailing.pk in dispatch.active_mailing_ids()
        assert settle(mailing) == "done"
    assert len(handler.received) == 2


# 9. A lowered limit applies within the batch


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("before", [100, None], ids=["lowered", "set on a server without limits"])
def test_a_limit_lowered_in_the_middle_of_a_batch_stops_it_at_the_new_limit(tenant_a, settings, before):
    settings.DISPATCH_TICK = 0  # check before every letter

    def lower(server_pk: int) -> None:
        SmtpServer.objects.filter(pk=server_pk).update(max_per_hour=3)
        connection.close()

    class Lowering(SinkHandler):
        async def handle_DATA(self, server, session, envelope):
            reply = await super().handle_DATA(server, session, envelope)
            if len(self.received) == 2:
                await asyncio.to_thread(lower, smtp.pk)
            return reply

    handler = Lowering()
    with smtp_server(handler=handler) as (controller, _):
        smtp = make_server(tenant_a, port=controller.port, max_per_hour=before)
        contact_list = make_list(tenant_a, "L", [f"r{i}@x.test" for i in range(10)])
        mailing = Mailing(tenant=tenant_a, name="m", template=make_template(tenant_a))
        services.mailing_save(mailing=mailing, lists=[contact_list], servers=[smtp])
        dispatch.hold_chains(mailing.pk, until=timezone.now() + timedelta(hours=1))
        services.mailing_start(mailing=mailing)
        assert settle(mailing) == "waiting"
    assert len(handler.received) == 3
    assert used(smtp, tenant_a) == 3
    assert Letter.objects.filter(mailing=mailing, status=L.QUEUED).count() == 7


# Issue 21: rate limits, unknown recipients, the time of the 250


class RateLimited(SinkHandler):
    """Postfix's smtpd_client_message_rate_limit: 450 at MAIL after `per_minute`."""

    def __init__(self, per_minute: int, reply: str) -> None:
        super().__init__()
        self.per_minute, self.reply, self.mails = per_minute, reply, 0

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        self.mails += 1
        if self.mails > self.per_minute:
            return self.reply
        envelope.mail_from = address
        return "250 OK"


@pytest.mark.parametrize(
    "reply",
    [
        "450 4.7.1 Error: too much mail from 127.0.0.1",  # Postfix
        "421 4.7.28 Our system has detected an unusual rate of unsolicited mail",  # Gmail
        "451 Ratelimit exceeded for mailbox",  # Mail.ru
    ],
)
def test_a_rate_limit_reply_makes_the_server_wait_a_minute_not_fail_nor_escalate(tenant_a, reply):
    now = timezone.now()
    with smtp_server(handler=RateLimited(3, reply)) as (controller, handler):
        server = make_server(tenant_a, port=controller.port)
        mailing = start(tenant_a, [server], [f"r{i}@x.test" for i in range(5)])
        assert settle(mailing, now) == "waiting"
        server.refresh_from_db()
        assert (server.rest_reason, server.rest_reply) == (RestReason.RATE_LIMIT, reply)
        assert from_the_reply(server.backoff_until, now + timedelta(minutes=1)) and server.health != Health.FAILING
        mailing.refresh_from_db()
        assert mailing.resume_at == server.backoff_until
        # The provider's window frees: the rest goes, uncounted attempts.
        handler.mails = 0
        assert settle(mailing, server.backoff_until) == "done"
    server.refresh_from_db()
    assert (server.connection_failures, server.rest_reason) == (0, "")  # reset by the accepted letters
    assert set(Letter.objects.filter(mailing=mailing).values_list("attempts", flat=True)) == {1}


def test_a_per_minute_limit_paces_the_server_and_never_passes_it_over(tenant_a):
    now = timezone.now().replace(second=5)
    with smtp_server() as (controller, handler), smtp_server() as (c2, second):
        server = make_server(tenant_a, port=controller.port, max_per_minute=4)
        other = make_server(tenant_a, name="Second", port=c2.port, priority=1)
        mailing = start(tenant_a, [server, other], [f"r{i}@x.test" for i in range(6)])
        assert settle(mailing, now) == "paced"  # still sending: the next minute takes the rest
        assert len(handler.received) == 4 and second.received == []
        mailing.refresh_from_db()
        assert mailing.status == M.ACTIVE
        assert settle(mailing, now + timedelta(minutes=1)) == "done"
    assert (len(handler.received), len(second.received)) == (6, 0)


def test_the_per_minute_limit_counts_the_clock_minute(tenant_a):
    now = timezone.now().replace(second=50)
    server = make_server(tenant_a, max_per_minute=3)
    assert limits.reserve(server=server, tenant=tenant_a, wanted=5, now=now).granted == 3
    assert limits.reserve(server=server, tenant=tenant_a, wanted=5, now=now + timedelta(seconds=5)).granted == 0
    assert limits.reserve(server=server, tenant=tenant_a, wanted=5, now=now + timedelta(seconds=15)).granted == 3


def test_an_unknown_recipient_refused_at_rcpt_is_suppressed_a_policy_refusal_is_not(tenant_a):
    def who(rcpt: str) -> bool:
        return rcpt.startswith(("gone", "policy"))

    handler = Refusing("550 5.1.1 <gone@example.com>: Recipient address rejected: User unknown", who=who)
    with smtp_server(handler=handler) as (controller, _):
        server = make_server(tenant_a, port=controller.port)
        mailing = start(tenant_a, [server], ["gone@example.com", "ok@example.com"])
        settle(mailing)
        handler.reply = "550 5.7.1 Recipient rejected by policy"
        other = start(tenant_a, [server], ["policy@x.test"])
        settle(other)
    gone = Suppression.objects.get(tenant=tenant_a, email="gone@example.com")
    assert gone.reason == Suppression.Reason.HARD_BOUNCE and "5.1.1" in gone.note
    assert not Suppression.objects.filter(email="policy@x.test").exists()
    assert Letter.objects.get(mailing=other).status == L.FAILED


def test_sent_at_is_when_the_server_accepted_each_letter(tenant_a):
    class Slow(SinkHandler):
        async def handle_DATA(self, server, session, envelope):
            await asyncio.sleep(0.3)
            return await super().handle_DATA(server, session, envelope)

    now = timezone.now()
    with smtp_server(handler=Slow()) as (controller, _):
        server = make_server(tenant_a, port=controller.port, max_connections=1)  # one batch
        mailing = start(tenant_a, [server], ["a@x.test", "b@x.test", "c@x.test"])
        settle(mailing, now)
    times = list(Letter.objects.filter(mailing=mailing).order_by("pk").values_list("sent_at", flat=True))
    assert times[0] > now and times[1] - times[0] >= timedelta(seconds=0.3)
    assert times[2] - times[1] >= timedelta(seconds=0.3)


def test_nothing_is_left_sending_whatever_the_servers_did(tenant_a):
    with ExitStack() as stack:
        c, _ = stack.enter_context(smtp_server(handler=Refusing("421 4.3.2 Shutting down")))
        server = make_server(tenant_a, port=c.port)
        mailing = start(tenant_a, [server], ["a@x.test", "b@x.test"])
        settle(mailing)
    assert not Letter.objects.filter(status=L.SENDING).exists()


def test_a_tenant_waiting_for_the_platform_server_gets_the_next_slot(tenant_a, tenant_b, settings):
    """Tenant A's big mailing holds the platform server's only slot batch
    after batch; tenant B's chain finds it busy and waits. When A's batch
    ends, A's next batch leaves the slot to B instead of taking it again."""
    require_postgresql()
    settings.DISPATCH_BATCH = 2
    with smtp_server() as (controller, sink):
        platform = make_server(None, name="Platform", port=controller.port, tenant_daily_quota=100, max_connections=1)
        big = start(tenant_a, [platform], [f"a{i}@a.example" for i in range(6)])
        small = start(tenant_b, [platform], ["b0@b.example", "b1@b.example"])
        with hold_slots(platform):  # a batch of A's in flight
            assert dispatch.run_mailing(mailing_id=small.pk) == "busy"  # B waits its turn
        assert dispatch.run_mailing(mailing_id=big.pk) == "busy"  # A's next batch leaves the slot to B
        assert dispatch.run_mailing(mailing_id=small.pk) == "done"  # both of B's letters in one batch
        assert settle(big) == "done"
    order = [r.rcpt_tos[0][0] for r in sink.received]
    assert order[:2] == ["b", "b"], order


def test_a_batch_on_the_platform_server_is_one_tenants_turn_of_at_most_50_letters(tenant_a, settings):
    """A tenant's own server takes DISPATCH_BATCH letters a connection; the
    shared platform server at most PLATFORM_TURN, after which a tenant that
    waits goes first."""
    from mailing.dispatch.batch import PLATFORM_TURN

    settings.DISPATCH_BATCH, settings.DISPATCH_CHAINS = 80, 1
    emails = [f"r{i}@a.example" for i in range(80)]
    with smtp_server() as (controller, _):
        platform = make_server(None, name="Platform", port=controller.port, tenant_daily_quota=1000)
        own = make_server(tenant_a, port=controller.port)
        on_platform, on_own = start(tenant_a, [platform], emails), start(tenant_a, [own], emails)
        assert dispatch.run_mailing(mailing_id=on_platform.pk) == "more"
        assert dispatch.run_mailing(mailing_id=on_own.pk) == "done"
    sent = Letter.objects.filter(status=L.SENT)
    assert (sent.filter(mailing=on_platform).count(), sent.filter(mailing=on_own).count()) == (PLATFORM_TURN, 80)
