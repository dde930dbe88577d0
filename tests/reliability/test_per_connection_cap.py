"""Servers that take so many letters a connection (Exim's
smtp_accept_max_per_connection, Amazon SES, Yahoo, Microsoft, qmail) and
refuse the next one with "too many messages in this connection": the
dispatcher opens a new connection and goes on at once, the letter goes
again untried, nothing rests and nothing fails. A real aiosmtpd server
plays the cap (tests/reliability/faults.py), at MAIL, at RCPT or after the
message, hanging up or not, with PIPELINING or without.

What is not a cap keeps resting the server: the same words said to the
first letter of a fresh connection (no letter at all passes), and the rate
of the client's mail (Postfix's smtpd_client_message_rate_limit "too many
messages from <ip>", "per hour", "try again in 60 seconds")."""

import math

import pytest
from django.utils import timezone

from mailing import limits
from mailing.models import Letter
from servers.models import Health, SmtpServer
from tests.mailing.builders import run_until_settled as settle
from tests.servers.factories import make_server

from .faults import Fault, FaultHandler, fault_server
from .test_smtp_faults import message_id, start_mailing

pytestmark = pytest.mark.django_db
L = Letter.Status

LETTERS, CAP = 10, 3

# (reply, hangs up, where it is said)
CAPS = [
    ("421 too many messages in this connection", True, "mail"),  # Exim 4.x, Amazon SES (then closes)
    ("421 too many messages in this connection", False, "mail"),  # Exim, waiting for QUIT
    ("452 4.3.1 Too many messages in this session", False, "mail"),
    ("421 4.3.2 Message limit per session reached, closing transmission channel", True, "mail"),  # Microsoft
    ("421 Max message per connection reached, closing transmission channel", True, "mail"),  # Yahoo
    ("451 too many messages per connection", False, "mail"),  # qmail
    ("452 4.3.1 Too many messages in this session", False, "rcpt"),
    ("421 4.7.0 Too many messages in one connection", True, "rcpt"),
]


@pytest.fixture
def dispatching(settings, db) -> None:
    settings.DISPATCH_BATCH = 20  # the whole mailing in one batch: its connections are the cap's
    settings.DISPATCH_SMTP_TIMEOUT = 2.0


def capped_server(reply: str, close: bool, phase: str, *, cap: int = CAP, pipelining: bool) -> FaultHandler:
    fault = Fault("cap", phase, reply, close=close)
    return FaultHandler(pipelining=pipelining, cap=cap, cap_fault=fault)


def assert_not_resting(server: SmtpServer) -> None:
    server.refresh_from_db()
    assert (server.backoff_until, server.connection_failures, server.rest_reason) == (None, 0, "")
    assert server.health != Health.FAILING


@pytest.mark.parametrize("pipelining", [False, True], ids=["one by one", "pipelined"])
@pytest.mark.parametrize("reply, close, phase", CAPS)
def test_a_server_capping_letters_per_connection_gets_them_all_over_new_connections(
    reply, close, phase, pipelining, tenant_a, dispatching
):
    handler = capped_server(reply, close, phase, pipelining=pipelining)
    emails = [f"c{i:02d}@x.test" for i in range(LETTERS)]
    now = timezone.now()
    with fault_server(handler) as controller:
        server = make_server(tenant_a, port=controller.port)
        mailing = start_mailing(tenant_a, [server], emails)
        # Before the fix: "waiting", the server resting a minute after CAP letters.
        assert settle(mailing, now) == "done"
    letters = list(Letter.objects.filter(mailing=mailing))
    # Every letter arrived exactly once, tried once, none failed nor waits.
    assert {(le.status, le.attempts) for le in letters} == {(L.SENT, 1)}
    assert sorted(handler.accepted) == sorted(message_id(le) for le in letters)
    # CAP letters a connection, and a new one at once for the next.
    assert handler.sessions == math.ceil(LETTERS / CAP)
    assert [name for name, _ in handler.played] == ["cap"] * (handler.sessions - 1)
    # Each connection ended: the ones the server kept open with a QUIT.
    assert handler.quits == (1 if close else handler.sessions)
    assert_not_resting(server)
    # The limits count each letter once: what reached DATA.
    assert limits.window_usage([server], tenant_a, now)[server.pk].day_used == handler.handed == LETTERS


@pytest.mark.parametrize("pipelining", [False, True], ids=["one by one", "pipelined"])
@pytest.mark.parametrize("reply, close", [(r, c) for r, c, phase in CAPS if phase == "mail"][:3])
def test_the_cap_said_to_the_first_letter_of_a_connection_is_a_refusal_and_the_server_rests(
    reply, close, pipelining, tenant_a, dispatching
):
    """A server that says it to every letter, the first of a fresh connection
    included, caps nothing: reconnecting would loop. It rests, as before."""
    handler = capped_server(reply, close, "mail", cap=0, pipelining=pipelining)
    now = timezone.now()
    with fault_server(handler) as controller:
        server = make_server(tenant_a, port=controller.port)
        mailing = start_mailing(tenant_a, [server], ["a@x.test", "b@x.test"])
        assert settle(mailing, now) == "waiting"
    assert handler.sessions == 1 and handler.handed == 0
    assert {(le.status, le.attempts) for le in Letter.objects.filter(mailing=mailing)} == {(L.QUEUED, 0)}
    server.refresh_from_db()
    assert server.backoff_until > now and server.rest_reply == reply


def test_a_letter_capped_again_at_the_start_of_its_new_connection_rests_the_server(tenant_a, dispatching):
    """The cap met, then met again by the same letter as the first of the
    next connection: no endless reconnecting."""
    fault = Fault("cap", "mail", "421 too many messages in this connection", close=True)
    handler = FaultHandler(mail_faults={4: fault, 5: fault})  # the 4th MAIL, then the first of the next connection
    now = timezone.now()
    with fault_server(handler) as controller:
        server = make_server(tenant_a, port=controller.port)
        mailing = start_mailing(tenant_a, [server], [f"c{i:02d}@x.test" for i in range(LETTERS)])
        assert settle(mailing, now) == "waiting"
    assert handler.sessions == 2
    statuses = sorted((le.email, le.status, le.attempts) for le in Letter.objects.filter(mailing=mailing))
    assert [s for _, s, _ in statuses] == [L.SENT] * 3 + [L.QUEUED] * (LETTERS - 3)
    assert {a for _, s, a in statuses if s == L.QUEUED} == {0}
    server.refresh_from_db()
    assert server.backoff_until > now


# The client's rate, per IP or per hour, or with a wait named: not this
# connection's cap. The server rests (Postfix smtpd_client_message_rate_limit).
RATES = [
    "452 4.3.1 Error: too many messages from 127.0.0.1",  # Postfix
    "450 4.7.1 Error: too many messages from [127.0.0.1], try again later",
    "421 4.7.0 Too many messages per hour in this session",
    "452 4.3.1 Too many messages in this session, try again in 60 seconds",
]


@pytest.mark.parametrize("pipelining", [False, True], ids=["one by one", "pipelined"])
@pytest.mark.parametrize("reply", RATES)
def test_a_rate_of_the_clients_mail_still_rests_the_server(reply, pipelining, tenant_a, dispatching):
    handler = capped_server(reply, False, "mail", pipelining=pipelining)
    now = timezone.now()
    with fault_server(handler) as controller:
        server = make_server(tenant_a, port=controller.port)
        mailing = start_mailing(tenant_a, [server], [f"c{i:02d}@x.test" for i in range(LETTERS)])
        assert settle(mailing, now) == "waiting"
    assert handler.sessions == 1
    letters = Letter.objects.filter(mailing=mailing)
    assert letters.filter(status=L.SENT).count() == CAP
    assert {le.attempts for le in letters.exclude(status=L.SENT)} == {0}
    server.refresh_from_db()
    assert (server.backoff_until > now, server.rest_reason, server.rest_reply) == (True, "rate_limit", reply)
    assert limits.window_usage([server], tenant_a, now)[server.pk].day_used == handler.handed == CAP


@pytest.mark.parametrize("pipelining", [False, True], ids=["one by one", "pipelined"])
def test_the_cap_said_after_the_message_is_judged_as_any_refusal_there(pipelining, tenant_a, dispatching):
    """After its DATA the letter counted against the limit (the server may
    count it too): it is not sent again in the same batch. The reply is
    judged as before (a rate: the server rests), nothing lost or counted twice."""
    handler = capped_server("452 4.3.1 Too many messages in this session", False, "data", pipelining=pipelining)
    now = timezone.now()
    with fault_server(handler) as controller:
        server = make_server(tenant_a, port=controller.port)
        mailing = start_mailing(tenant_a, [server], [f"c{i:02d}@x.test" for i in range(LETTERS)])
        assert settle(mailing, now) == "waiting"
    letters = Letter.objects.filter(mailing=mailing)
    assert letters.filter(status=L.SENT).count() == CAP
    assert {(le.status, le.attempts) for le in letters.exclude(status=L.SENT)} == {(L.QUEUED, 0)}
    assert limits.window_usage([server], tenant_a, now)[server.pk].day_used == handler.handed
    server.refresh_from_db()
    assert server.backoff_until > now


class AnnouncesItsCap(FaultHandler):
    """Says its cap in its EHLO, as Exim 4.95 and later do (RFC 9422:
    "LIMITS MAILMAX=3 RCPTMAX=50"), and refuses one letter more as before."""

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        responses = await super().handle_EHLO(server, session, envelope, hostname, responses)
        return [*responses[:-1], f"250-LIMITS RCPTMAX=50 MAILMAX={self.cap}", responses[-1]]


@pytest.mark.parametrize("pipelining", [False, True], ids=["one by one", "pipelined"])
def test_a_server_announcing_its_cap_gets_a_new_connection_before_it(pipelining, tenant_a, dispatching):
    """Before the fix the LIMITS line was not read: every fourth letter met
    the server's refusal first (a round trip, and a refusal in its log for
    each connection). Now the batch opens a new connection after MAILMAX
    letters, its next envelope never riding the last dot of a connection."""
    fault = Fault("cap", "mail", "421 too many messages in this connection", close=True)
    handler = AnnouncesItsCap(pipelining=pipelining, cap=CAP, cap_fault=fault)
    emails = [f"c{i:02d}@x.test" for i in range(LETTERS)]
    with fault_server(handler) as controller:
        server = make_server(tenant_a, port=controller.port)
        mailing = start_mailing(tenant_a, [server], emails)
        assert settle(mailing, timezone.now()) == "done"
    letters = list(Letter.objects.filter(mailing=mailing))
    assert {(le.status, le.attempts) for le in letters} == {(L.SENT, 1)}
    assert sorted(handler.accepted) == sorted(message_id(le) for le in letters)
    assert handler.played == []  # the cap was never said
    assert handler.mails == LETTERS
    assert handler.sessions == handler.quits == math.ceil(LETTERS / CAP)
    assert_not_resting(server)


@pytest.mark.parametrize(
    "limits, expected",
    [
        ("MAILMAX=1000 RCPTMAX=100", 1000),
        ("rcptmax=5 mailmax=7", 7),  # any order, any case
        ("RCPTMAX=100 RCPTDOMAINMAX=10", None),  # no MAILMAX
        ("MAILMAX=0", None),  # no cap at all
        ("MAILMAX=", None),
        ("MAILMAX=²", None),  # a digit to isdigit(), not to int()
        ("MAILMAX=-3", None),
        ("", None),
    ],
)
def test_the_limits_keyword_is_read_as_rfc_9422_writes_it(limits, expected):
    import smtplib

    from mailing.dispatch.exchange import mail_max

    client = smtplib.SMTP()
    client.does_esmtp, client.esmtp_features = True, {"limits": limits}
    assert mail_max(client) == expected
