"""How the dispatcher reacts to what SMTP servers say and how they hang up,
played by scripted servers that misbehave on purpose (tests.smtp_servers):
a conversation turned away at the greeting while another one works, relay
refusals said as 454, a 451 to every letter, a hang-up after a plain 5xx.
Each test states the promise it holds the dispatcher to."""

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone, translation

from mailing import dispatch, tasks
from mailing.dispatch.replies import TOO_BIG_NOTE, shown_reply
from mailing.models import Letter, Suppression
from servers.models import Health
from tests.servers.factories import make_server
from tests.services import require_postgresql
from tests.smtp_servers import SCRIPTED_GREETING, Scripted, tarpit

from .builders import run_until_settled as settle
from .test_dispatch_real_world import start, statuses

pytestmark = pytest.mark.django_db
L = Letter.Status


def emails(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{i}@x.test" for i in range(count)]


# 1. A 421 at the greeting of a second conversation while the first one
#    sends: the provider counts our connections, and only the one too many
#    is refused. It must cost only that connection: the server does not
#    rest, and the first conversation's batch goes on to its end.


def _slowly(conn, body):
    time.sleep(0.1)
    return b"250 2.0.0 Ok: queued\r\n"


TURNED_AWAY = [
    b"421 4.7.0 Try again later, closing connection.",  # Gmail
    b"421 Too many connections from your IP",  # Mail.ru
    b"421 4.7.0 mx.example.test Error: too many connections from 127.0.0.1",  # Postfix anvil
    b"421 Too many concurrent SMTP connections; please try again later.",  # Exim smtp_accept_max
    # Exchange / Microsoft 365: MaxInboundConnectionPerSource
    b"421 4.3.2 The maximum number of concurrent server connections has exceeded a limit, closing transmission channel",
]


def _turning_away(greeting: bytes, at: str) -> Scripted:
    """The first connection is served; every later one is refused with
    `greeting` at the greeting, or `at` "ehlo" (Gmail says "(EHLO)") or
    "mail"."""

    def answer(conn, line):
        if at == "ehlo" and conn > 0 and line[:4].upper() == b"EHLO":
            return lambda peer: (peer.say(greeting + b"\r\n"), peer.sock.close())
        if at == "mail" and conn > 0 and line[:4].upper() == b"MAIL":
            return greeting + b"\r\n"
        return None

    def greet(conn):
        return greeting + b"\r\n" if at == "greeting" and conn > 0 else SCRIPTED_GREETING

    return Scripted(answer, greeting=greet, after_dot=_slowly)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "greeting, at",
    [
        *((reply, "greeting") for reply in TURNED_AWAY),
        (b"421 4.7.0 Try again later, closing connection. (EHLO)", "ehlo"),
        # Microsoft 365 takes three submissions of a mailbox at once, and
        # says so to MAIL FROM.
        (b"432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded [Hostname=AM0PR01MB1234]", "mail"),
    ],
    ids=["gmail", "mail.ru", "postfix", "exim", "microsoft", "gmail at EHLO", "microsoft 365 at MAIL"],
)
def test_a_conversation_turned_away_at_the_greeting_costs_only_that_connection(
    tenant_a, settings, monkeypatch, greeting, at
):
    require_postgresql()
    monkeypatch.setattr(tasks.send_mailing, "delay", lambda *args, **kwargs: None)  # only the runs below send
    settings.DISPATCH_TICK = 0.2  # a working batch asks every 0.1 s whether it may go on
    script = _turning_away(greeting, at)
    with tarpit(script, lasts=20.0) as port:
        server = make_server(tenant_a, port=port, login="", max_connections=2)
        working = start(tenant_a, [server], emails("w", 8))
        second = start(tenant_a, [server], emails("s", 3))
        results = []

        def first_conversation():
            try:
                results.append(dispatch.run_mailing(mailing_id=working.pk, now=timezone.now()))
            finally:
                connection.close()

        thread = threading.Thread(target=first_conversation)
        thread.start()
        for _ in range(100):
            if script.bodies:
                break
            time.sleep(0.02)
        turned_away = dispatch.run_mailing(mailing_id=second.pk, now=timezone.now())
        thread.join(20)
        server.refresh_from_db()
        # Before the fix: the server rested as a whole ("waiting"), and the
        # first conversation's batch stopped at its next check with its
        # letters back in the queue.
        assert (server.backoff_until, server.connection_failures) == (None, 0), server.rest_reply
        assert set(statuses(working).values()) == {L.SENT}, statuses(working)
        assert results == ["done"]
        # The refused conversation's chain tries again in a moment; its
        # letters wait in the queue, untried.
        assert turned_away == "crowded"
        assert set(Letter.objects.filter(mailing=second).values_list("status", "attempts")) == {(L.QUEUED, 0)}
        # Alone with the server, the same refusal is the server's state: it
        # rests (growing), so a chain does not knock every second for ever.
        assert settle(second, timezone.now()) == "waiting"
        server.refresh_from_db()
        assert server.connection_failures == 1 and server.backoff_until > timezone.now()
        assert greeting.decode() in server.rest_reply


@pytest.mark.django_db(transaction=True)
def test_a_greeting_that_speaks_of_the_rate_of_mail_rests_the_server_even_beside_another_conversation(
    tenant_a, settings, monkeypatch
):
    require_postgresql()
    monkeypatch.setattr(tasks.send_mailing, "delay", lambda *args, **kwargs: None)
    settings.DISPATCH_TICK = 0.2
    rate = b"421 4.7.28 Our system has detected an unusual rate of unsolicited mail originating from your IP address."
    script = Scripted(greeting=lambda conn: SCRIPTED_GREETING if conn == 0 else rate + b"\r\n", after_dot=_slowly)
    with tarpit(script, lasts=20.0) as port:
        server = make_server(tenant_a, port=port, login="", max_connections=2)
        working = start(tenant_a, [server], emails("w", 30))
        second = start(tenant_a, [server], emails("s", 3))
        thread = threading.Thread(
            target=lambda: (dispatch.run_mailing(mailing_id=working.pk, now=timezone.now()), connection.close())
        )
        thread.start()
        for _ in range(100):
            if script.bodies:
                break
            time.sleep(0.02)
        assert dispatch.run_mailing(mailing_id=second.pk, now=timezone.now()) == "waiting"
        thread.join(20)
    server.refresh_from_db()
    assert server.backoff_until > timezone.now() and rate.decode() in server.rest_reply
    # The rate is the account's: the working batch stops too, its rest back in the queue.
    assert L.QUEUED in set(statuses(working).values())


# 2. A settings refusal said with a 4xx: Postfix's default relay
#    restrictions end with defer_unauth_destination, which refuses a sender
#    without a login with "454 4.7.1 Relay access denied". Waiting mends
#    nothing: the tenant must set the login (or the sender).


@pytest.mark.parametrize(
    "reply, hint",
    [
        (b"454 4.7.1 <{rcpt}>: Relay access denied", "login and password"),  # Postfix defer_unauth_destination
        (b"451 4.7.1 <{rcpt}>... Relaying denied. Proper authentication required.", "login and password"),
        # Postfix soft_bounce = yes turns reject_sender_login_mismatch's 553 into a 450.
        (b"450 4.7.1 <robot@mail.test>: Sender address rejected: not owned by user other@mail.test", "sender"),
    ],
    ids=["postfix 454", "sendmail 451", "soft bounce"],
)
def test_a_relay_refusal_said_as_a_4xx_stops_the_server_with_a_hint_and_fails_no_letter(tenant_a, reply, hint):
    def answer(conn, line):
        if line[:4].upper() == b"RCPT":
            rcpt = line.split(b"<", 1)[1].split(b">", 1)[0]
            return reply.replace(b"{rcpt}", rcpt) + b"\r\n"
        return None

    with tarpit(Scripted(answer), lasts=5.0) as port:
        server = make_server(tenant_a, port=port, login="")
        mailing = start(tenant_a, [server], emails("r", 6))
        # Before the fix: "waiting" (a storm of temporary refusals rested the
        # server, and it was tried again, and again, for ever).
        assert settle(mailing, timezone.now()) == "blocked"
    server.refresh_from_db()
    assert server.health == Health.FAILING
    assert reply.split(b" ", 1)[0].decode() in server.health_error and hint in server.health_hint, server.health_hint
    # No letter is to blame, and none was tried: they wait for the fix.
    assert set(Letter.objects.filter(mailing=mailing).values_list("status", "attempts")) == {(L.QUEUED, 0)}


# 3. A 451 to every letter (a provider's throttle, or greylisting of the
#    whole domain) for two hours: a storm. The letters wait for the server
#    and none is lost; the server rests longer each time, and no batch
#    burns more than a storm's letters against it.


def test_a_two_hour_storm_of_451_loses_no_letter_and_rests_the_server_longer_each_time(tenant_a):
    clock = [timezone.now()]
    throttled_until = clock[0] + timedelta(hours=2)

    def answer(conn, line):
        if line[:4].upper() == b"RCPT" and clock[0] < throttled_until:
            answer.refused[conn] = answer.refused.get(conn, 0) + 1
            return b"451 4.7.1 Service unavailable, try again later\r\n"
        return None

    answer.refused = {}
    with tarpit(Scripted(answer), lasts=60.0) as port:
        server = make_server(tenant_a, port=port, login="")
        mailing = start(tenant_a, [server], emails("r", 12))
        rests = {}  # each rest's end: its length
        for _ in range(200):
            result = dispatch.run_mailing(mailing_id=mailing.pk, now=clock[0])
            if result == "done":
                break
            server.refresh_from_db()
            if server.backoff_until and server.backoff_until > clock[0] and server.backoff_until not in rests:
                rests[server.backoff_until] = server.backoff_until - clock[0]
            if result == "waiting":
                mailing.refresh_from_db()
                clock[0] = max(mailing.resume_at, clock[0]) + timedelta(seconds=1)
        else:
            raise AssertionError("never finished")
    # Before the fix: once every letter had been tried, their retries came
    # due together and each batch refused them all, an attempt each, with
    # no rest of the server: all 12 failed after 78 minutes of the storm.
    assert set(statuses(mailing).values()) == {L.SENT}, statuses(mailing)
    assert max(answer.refused.values()) <= 3, answer.refused  # STORM letters a connection at most
    lengths = [int(length.total_seconds()) for length in rests.values()]
    assert len(lengths) >= 5 and lengths == sorted(lengths) and lengths[0] < lengths[-1], lengths  # growing
    assert clock[0] >= throttled_until


# 4. A server that hangs up right after a plain 5xx (no 421): the refused
#    letter keeps its error, and the next letters go over a new connection,
#    neither lost nor the server rested for it.


def _say_and_hang_up(reply: bytes):
    def hang_up(peer):
        peer.say(reply + b"\r\n")
        peer.sock.close()

    return hang_up


@pytest.mark.parametrize("pipelining", [False, True], ids=["plain", "pipelining"])
@pytest.mark.parametrize(
    "stage, reply, status",
    [
        ("rcpt", b"550 5.1.1 <gone@x.test>: Recipient address rejected: User unknown", L.FAILED),
        ("data", b"554 5.7.1 Data command rejected by policy", L.FAILED),
        ("dot", b"550 5.7.1 Message rejected under suspicion of SPAM", L.FAILED),
        ("rcpt", b"450 4.2.1 <gone@x.test>: Mailbox busy", L.DEFERRED),
    ],
    ids=["550 at RCPT", "554 to DATA", "550 after the dot", "450 at RCPT"],
)
def test_a_server_that_hangs_up_after_a_refusal_costs_the_other_letters_nothing(
    tenant_a, settings, stage, reply, status, pipelining
):
    settings.DISPATCH_SMTP_TIMEOUT = 2.0

    def answer(conn, line):
        verb = line[:4].upper()
        if verb == b"RCPT":
            answer.rcpt[conn] = line
        if answer.rcpt.get(conn, b"").startswith(b"RCPT TO:<gone@") and verb == stage[:4].upper().encode():
            return _say_and_hang_up(reply)
        return None

    def after_dot(conn, body):
        if stage == "dot" and answer.rcpt[conn].startswith(b"RCPT TO:<gone@"):
            return _say_and_hang_up(reply)
        return b"250 2.0.0 Ok: queued\r\n"

    answer.rcpt = {}
    ehlo = b"250-odd.test\r\n250 PIPELINING\r\n" if pipelining else b"250 odd.test\r\n"
    script = Scripted(answer, ehlo=ehlo, after_dot=after_dot)
    with tarpit(script, lasts=10.0) as port:
        server = make_server(tenant_a, port=port, login="")
        mailing = start(tenant_a, [server], ["a@x.test", "gone@x.test", "h@x.test", "k@x.test"])
        settle(mailing, timezone.now())
    gone = Letter.objects.get(mailing=mailing, email="gone@x.test")
    assert (gone.status, gone.last_reply) == (status, reply.decode())
    # Before the fix: the next letter met the closed connection, the server
    # rested for it ("closed the connection unexpectedly") and the batch
    # ended with the next letters back in the queue until the rest was over.
    assert statuses(mailing) == {"a@x.test": L.SENT, "gone@x.test": status, "h@x.test": L.SENT, "k@x.test": L.SENT}
    server.refresh_from_db()
    assert (server.backoff_until, server.connection_failures) == (None, 0), server.rest_reply
    assert len(script.heard) == 2  # the second connection carried the rest


# 5. Spam refusals after the message, in the providers' own words: each
#    fails its letter with the reply (the address is not suppressed: the
#    recipient exists); letter after letter refused so stops the tenant's
#    server with a hint, rather than rest it and fail the list a few
#    letters a rest.

SPAM_REFUSALS = [
    b"554 5.7.1 Message rejected under suspicion of SPAM; https://ya.cc/1IrBc 1712345678-AbCdEfGh",  # Yandex
    b"550 spam message rejected. Please visit http://help.mail.ru/notspam-support/id?c=Vq2Ptk5-IWLUCKbsb2zsXg"
    b" or report details to abuse@corp.mail.ru. Error code: 7A2B3C. ID: 0000000A.",  # Mail.ru
    b"550-5.7.1 [203.0.113.7      12] Our system has detected that this message is\r\n"
    b"550-5.7.1 likely unsolicited mail. To reduce the amount of spam sent to Gmail,\r\n"
    b"550-5.7.1 this message has been blocked. Please visit\r\n"
    b"550 5.7.1  https://support.google.com/mail/?p=UnsolicitedMessageError a1si12 - gsmtp",  # Gmail
]


@pytest.mark.parametrize("reply", SPAM_REFUSALS, ids=["yandex", "mail.ru", "gmail"])
def test_letters_refused_as_spam_fail_alone_and_stop_the_server_with_a_hint(tenant_a, reply):
    script = Scripted(after_dot=lambda conn, body: reply + b"\r\n")
    with tarpit(script, lasts=5.0) as port:
        server = make_server(tenant_a, port=port, login="")
        mailing = start(tenant_a, [server], emails("r", 8))
        # Before the fix: "waiting" for the server's rest, after which three
        # more letters failed, and three more after the next rest...
        assert settle(mailing, timezone.now()) == "blocked"
    letters = Letter.objects.filter(mailing=mailing)
    failed = letters.filter(status=L.FAILED)
    assert failed.count() == 3 and letters.filter(status=L.QUEUED, attempts=0).count() == 5
    assert "spam" in failed.first().last_reply.lower() and failed.first().last_reply.startswith(reply[:3].decode())
    assert not Suppression.objects.filter(tenant=tenant_a).exists()
    server.refresh_from_db()
    assert server.health == Health.FAILING, (server.rest_reason, server.backoff_until)
    assert "spam" in server.health_error and "DKIM" in server.health_hint, server.health_hint


# 6. A server that hangs up after the letter it accepted (some take one, or
#    a few, letters a connection; some close instead of waiting for QUIT):
#    the next letter, of which nothing reached the server, goes over a new
#    connection, the server not rested for it. A connection lost before any
#    letter was accepted on it still rests the server.


@pytest.mark.parametrize("pipelining", [False, True], ids=["plain", "pipelining"])
def test_a_server_that_closes_after_each_accepted_letter_gets_a_new_connection_for_the_next(
    tenant_a, settings, pipelining
):
    settings.DISPATCH_SMTP_TIMEOUT = 2.0

    def accept_and_close(conn, body):
        def close(peer):
            peer.say(b"250 2.0.0 Ok: queued as 1A2B\r\n")
            peer.sock.close()

        return close

    ehlo = b"250-odd.test\r\n250 PIPELINING\r\n" if pipelining else b"250 odd.test\r\n"
    script = Scripted(ehlo=ehlo, after_dot=accept_and_close)
    with tarpit(script, lasts=10.0) as port:
        server = make_server(tenant_a, port=port, login="")
        mailing = start(tenant_a, [server], emails("r", 4))
        # Before the fix: "waiting", one letter sent a rest (a minute).
        assert settle(mailing, timezone.now()) == "done"
    assert set(statuses(mailing).values()) == {L.SENT}
    assert len(script.bodies) == 4 and len(script.heard) == 4
    server.refresh_from_db()
    assert (server.backoff_until, server.connection_failures) == (None, 0), server.rest_reply


# 7. A letter refused for its size: it fails with a sentence the tenant
#    reads before the server's terse words, and the server does not rest.


def test_a_letter_too_big_for_the_server_fails_saying_so_and_the_server_does_not_rest(tenant_a):
    # aiosmtpd's words after the message, from a server that announces no
    # SIZE (one that does is not sent a letter above it: test_dispatch_size).
    script = Scripted(after_dot=lambda conn, body: b"552 Error: Too much mail data\r\n")
    with tarpit(script, lasts=10.0) as port:
        server = make_server(tenant_a, port=port, login="")
        mailing = start(tenant_a, [server], emails("r", 2))
        assert settle(mailing, timezone.now()) == "done"
    letter = Letter.objects.filter(mailing=mailing).first()
    # Before the fix: "552 Error: Too much mail data" alone.
    assert (letter.status, letter.last_reply) == (L.FAILED, TOO_BIG_NOTE + "552 Error: Too much mail data")
    with translation.override("ru"):
        assert shown_reply(letter.last_reply).startswith("Письмо больше, чем принимает сервер: 552")
    server.refresh_from_db()
    assert server.backoff_until is None and server.health != Health.FAILING


# 8. A server that offers PIPELINING but drops what came in the same write
#    as the final dot (it answers the dot, then reads afresh): the next
#    letter's envelope, sent with the dot (RFC 2920 §3.1), is never
#    answered. Its silence costs one deadline, once: the letter goes over a
#    new connection, and the batch's later envelopes wait for the dot's reply.


def test_a_server_deaf_to_what_came_with_the_final_dot_costs_one_deadline_not_one_a_letter(tenant_a, settings):
    settings.DISPATCH_SMTP_TIMEOUT = 0.5

    def drops_the_rest(conn, body):
        def reply(peer):
            peer.pending = b""  # read with the dot, thrown away
            peer.say(b"250 2.0.0 Ok: queued\r\n")

        return reply

    script = Scripted(ehlo=b"250-odd.test\r\n250 PIPELINING\r\n", after_dot=drops_the_rest)
    with tarpit(script, lasts=10.0) as port:
        server = make_server(tenant_a, port=port, login="")
        mailing = start(tenant_a, [server], emails("r", 4))
        dispatch.run_mailing(mailing_id=mailing.pk, now=timezone.now())
    assert set(statuses(mailing).values()) == {L.SENT}
    assert len(script.bodies) == 4
    # Before the fix: four connections, each after a deadline (30 s a letter).
    assert len(script.heard) == 2
    server.refresh_from_db()
    assert server.backoff_until is None


# 9. A server out of step with the commands piped behind a final dot (it
#    answers the next envelope before the dot): a 354 read as the reply to
#    MAIL or RCPT means the server is in DATA mode, where an RSET would be
#    a line of the letter, and its reply never comes. The connection is
#    closed at once; the letter, of which nothing was taken, goes back.


def test_a_354_to_mail_or_rcpt_closes_the_connection_without_rset_or_waiting(tenant_a, settings):
    settings.DISPATCH_SMTP_TIMEOUT = 3.0
    said_in_data: list[bytes] = []

    def envelope_first(conn, body):
        def reply(peer):
            heard = [peer.line() for _ in range(3)]  # the next MAIL, RCPT and DATA
            assert heard[-1] == b"DATA\r\n", heard
            peer.say(b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued\r\n")
            while line := peer.line():  # in DATA mode until the client hangs up
                said_in_data.append(line)

        return reply if conn == 0 else b"250 2.0.0 Ok: queued\r\n"

    script = Scripted(ehlo=b"250-odd.test\r\n250 PIPELINING\r\n", after_dot=envelope_first)
    with tarpit(script, lasts=10.0) as port:
        server = make_server(tenant_a, port=port, login="")
        mailing = start(tenant_a, [server], emails("r", 2))
        started = time.monotonic()
        dispatch.run_mailing(mailing_id=mailing.pk, now=timezone.now())
        took = time.monotonic() - started
    # Before the fix: RSET written in DATA mode, then its reply awaited until the deadline.
    assert said_in_data == []
    assert took < settings.DISPATCH_SMTP_TIMEOUT
    letter = Letter.objects.get(mailing=mailing, email="r1@x.test")
    assert (letter.status, letter.attempts) == (L.QUEUED, 0), letter.last_reply
