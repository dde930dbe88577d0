"""A letter one server cannot carry goes through another of its mailing's
servers: a recipient's mailbox that is not ASCII before its @ where the
server lacks SMTPUTF8, a letter above the size the server announces. It
failed at the first such server although the next one could carry it
(DOMAIN.md §7: "retry later or on the next server; never lose the
letter"). Only where none of the mailing's servers can does it fail, with
the reason. Real aiosmtpd servers, with and without SMTPUTF8 and SIZE."""

import re

import pytest
from django.utils import timezone
from prometheus_client import REGISTRY

from mailing import dispatch
from mailing import mailings as services
from mailing.dispatch.replies import TOO_BIG_NOTE
from mailing.models import Contact, Letter, Mailing, MailingEvent
from servers.models import Health, SmtpServer
from servers.wire import NO_SMTPUTF8
from tests.servers.factories import make_server
from tests.smtp_servers import PipeliningSink, SinkHandler, smtp_server

from .builders import run_until_settled as settle
from .builders import servers_in_order
from .test_dispatch_real_world import start
from .test_dispatch_size import BODY, LIMIT

pytestmark = pytest.mark.django_db
L = Letter.Status
EMAILS = ["ann@x.test", "иван@x.test", "bob@x.test", "cat@x.test"]
INTERNATIONAL = "иван@x.test"
PLAIN, UNICODE = {"enable_SMTPUTF8": False}, {"enable_SMTPUTF8": True}


def letters(mailing) -> dict[str, Letter]:
    return {letter.email: letter for letter in Letter.objects.filter(mailing=mailing).select_related("server")}


def received(handler) -> list[str]:
    return sorted(message.rcpt_tos[0] for message in handler.received)


def assert_failed_unsent(mailing, utf8) -> None:
    """The international recipient's letter failed with the reason, and
    the server that could have carried it received nothing."""
    letter = letters(mailing)[INTERNATIONAL]
    assert (letter.status, letter.last_reply) == (L.FAILED, str(NO_SMTPUTF8))
    assert utf8.received == []


def failed_at_no_server() -> float:
    labels = {"result": "failed", "server_kind": "none"}
    return REGISTRY.get_sample_value("postroute_letters_total", labels) or 0.0


def assert_healthy(*servers: SmtpServer) -> None:
    for server in servers:
        server.refresh_from_db()
        assert server.health != Health.FAILING, server.health_error
        assert server.backoff_until is None, server.rest_reply


@pytest.mark.parametrize("pipelining", [False, True], ids=["one by one", "pipelined"])
def test_a_recipients_international_mailbox_goes_through_the_next_server_that_offers_smtputf8(tenant_a, pipelining):
    sink = PipeliningSink if pipelining else SinkHandler
    plain, utf8 = {"handler": sink(), "enable_SMTPUTF8": False}, {"handler": sink(), "enable_SMTPUTF8": True}
    with servers_in_order(tenant_a, plain, utf8) as [(first, plain), (second, utf8)]:
        mailing = start(tenant_a, [first, second], EMAILS)
        assert settle(mailing, timezone.now()) == "done"
    sent = letters(mailing)
    assert {email: letter.status for email, letter in sent.items()} == dict.fromkeys(EMAILS, L.SENT)
    # The first server, first in the order, sent every letter it could carry.
    assert received(plain) == sorted(set(EMAILS) - {INTERNATIONAL})
    assert received(utf8) == [INTERNATIONAL]
    letter = sent[INTERNATIONAL]
    assert (letter.server, letter.attempts) == (second, 1)
    assert letter.passed_over == f",{first.pk},"
    assert_healthy(first, second)


def test_a_letter_no_server_of_its_mailing_can_carry_fails_with_the_reason(tenant_a):
    plain = {"enable_SMTPUTF8": False}
    with servers_in_order(tenant_a, plain, plain) as [(first, one), (second, two)]:
        mailing = start(tenant_a, [first, second], EMAILS)
        assert settle(mailing, timezone.now()) == "done"
    sent = letters(mailing)
    letter = sent[INTERNATIONAL]
    assert (letter.status, letter.last_reply) == (L.FAILED, str(NO_SMTPUTF8))
    assert letter.passed_over == f",{first.pk},"  # the second one was the last to try
    assert received(one) == sorted(set(EMAILS) - {INTERNATIONAL}) and received(two) == []
    assert_healthy(first, second)


def test_a_server_that_cannot_send_now_is_no_server_to_wait_for(tenant_a):
    # The only other server is turned off: the letter fails at once, as it
    # did, rather than wait for someone to turn it on.
    with smtp_server(enable_SMTPUTF8=False) as (controller, _):
        first = make_server(tenant_a, port=controller.port, name="Plain", priority=1)
        second = make_server(tenant_a, port=controller.port, name="Off", priority=2, enabled=False)
        mailing = start(tenant_a, [first, second], EMAILS)
        assert settle(mailing, timezone.now()) == "done"
    assert letters(mailing)[INTERNATIONAL].status == L.FAILED


def test_a_letter_above_one_servers_size_goes_through_the_next_one(tenant_a):
    big = "s1@x.test"
    Contact.objects.create(tenant=tenant_a, email=big, first_name="x" * 100)
    emails = ["s0@x.test", big, "s2@x.test"]
    # "SIZE 8000", then no maximum
    with servers_in_order(tenant_a, {"data_size_limit": LIMIT}, {"data_size_limit": 0}) as servers:
        [(first, small), (second, large)] = servers
        mailing = start(tenant_a, [first, second], emails, **BODY)
        assert settle(mailing, timezone.now()) == "done"
    sent = letters(mailing)
    assert {email: letter.status for email, letter in sent.items()} == dict.fromkeys(emails, L.SENT)
    assert received(small) == ["s0@x.test", "s2@x.test"] and received(large) == [big]
    assert_healthy(first, second)


def test_a_letter_above_every_servers_size_fails_with_both_sizes(tenant_a):
    big = "s1@x.test"
    Contact.objects.create(tenant=tenant_a, email=big, first_name="x" * 100)
    with servers_in_order(tenant_a, {"data_size_limit": LIMIT}, {"data_size_limit": LIMIT}) as servers:
        [(first, _), (second, _)] = servers
        mailing = start(tenant_a, [first, second], ["s0@x.test", big], **BODY)
        assert settle(mailing, timezone.now()) == "done"
    letter = letters(mailing)[big]
    assert letter.status == L.FAILED
    assert re.fullmatch(
        re.escape(TOO_BIG_NOTE) + r"\d+ bytes, the server.s maximum is 8000 \(its SIZE\)\.", letter.last_reply
    )


def test_a_mailing_waiting_for_the_server_that_can_carry_its_last_letter_does_not_wake_every_tick(tenant_a):
    # The only letter left was passed over by the first server, and the
    # second one rests: the first server, usable with room, cannot claim it.
    # The mailing waits for the rest, rather than waking each tick to find
    # nothing to claim (a history line each way, a batch's statements).
    with servers_in_order(tenant_a, PLAIN, UNICODE) as servers:
        [(first, _), (second, utf8)] = servers
        now = timezone.now()
        rest_end = now + timezone.timedelta(minutes=5)
        SmtpServer.objects.filter(pk=second.pk).update(backoff_until=rest_end)
        mailing = start(tenant_a, [first, second], EMAILS)
        assert settle(mailing, now) == "waiting"
        events = MailingEvent.objects.filter(mailing=mailing).count()
        later = now + timezone.timedelta(seconds=30)
        assert mailing.pk not in dispatch.active_mailing_ids(now=later)
        assert dispatch.run_mailing(mailing_id=mailing.pk, now=later) == "waiting"
        assert MailingEvent.objects.filter(mailing=mailing).count() == events
        assert Mailing.objects.get(pk=mailing.pk).resume_at >= rest_end
        assert settle(mailing, rest_end + timezone.timedelta(seconds=1)) == "done"
    assert received(utf8) == [INTERNATIONAL]


def test_a_server_with_a_limit_of_0_is_no_server_to_wait_for(tenant_a):
    # Its limit of 0 leaves nothing to wait for (only someone editing it
    # does): the letter fails as with a server turned off, rather than the
    # mailing waking every tick for ever to find nothing its first server
    # may claim.
    with servers_in_order(tenant_a, PLAIN, UNICODE) as servers:
        [(first, _), (second, utf8)] = servers
        SmtpServer.objects.filter(pk=second.pk).update(max_per_day=0)
        mailing = start(tenant_a, [first, second], EMAILS)
        assert settle(mailing, timezone.now()) == "done"
    assert_failed_unsent(mailing, utf8)


def test_a_waiting_mailing_whose_letter_is_stranded_wakes_to_fail_it(tenant_a):
    # Waiting for the second server's rest, the only one that can carry the
    # letter left: once that server is turned off, no wait brings it back,
    # and the first server, with room, fails the letter within a tick
    # rather than the mailing waiting for a rest that no longer matters.
    with servers_in_order(tenant_a, PLAIN, UNICODE) as servers:
        [(first, _), (second, utf8)] = servers
        now = timezone.now()
        SmtpServer.objects.filter(pk=second.pk).update(backoff_until=now + timezone.timedelta(hours=5))
        mailing = start(tenant_a, [first, second], EMAILS)
        assert settle(mailing, now) == "waiting"  # for the second server's rest
        assert letters(mailing)[INTERNATIONAL].status == L.QUEUED
        SmtpServer.objects.filter(pk=second.pk).update(enabled=False)
        later = now + timezone.timedelta(seconds=30)
        assert mailing.pk in dispatch.active_mailing_ids(now=later)
        failed_before = failed_at_no_server()
        assert settle(mailing, later) == "done"
    assert_failed_unsent(mailing, utf8)
    # Counted as the dispatcher counts every failed letter, at no server.
    assert failed_at_no_server() - failed_before == 1


def test_a_resume_lets_every_server_try_the_letters_it_passed_over_again(tenant_a):
    # The tenant may have moved the first server to a provider that offers
    # SMTPUTF8 meanwhile: after a pause and a resume it carries the letter.
    with servers_in_order(tenant_a, {"enable_SMTPUTF8": True}, {"enable_SMTPUTF8": True}) as servers:
        [(first, now_utf8), (second, _)] = servers
        mailing = start(tenant_a, [first, second], EMAILS)
        Letter.objects.filter(mailing=mailing, email=INTERNATIONAL).update(passed_over=f",{first.pk},")
        services.transition(mailing=mailing, action="pause")
        services.transition(mailing=mailing, action="resume")
        assert letters(mailing)[INTERNATIONAL].passed_over == ""
        assert settle(mailing, timezone.now()) == "done"
    assert received(now_utf8) == sorted(EMAILS)
