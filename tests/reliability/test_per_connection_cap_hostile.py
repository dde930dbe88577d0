"""A server's cap on the letters of one connection, played by hostile
servers around the edges the plain cap does not reach: a cap said and the
connection dropped without a 421, a cap said to the DATA command, the cap
beside a letter that cannot be built or at the batch's last letter, and
the cap under a max per minute. Whatever the server does: each letter
arrives once, is counted once, nothing rests that was not refused, and
the batch never reconnects for ever."""

import math

import pytest
from django.utils import timezone

from mailing import limits
from mailing.dispatch import batch as batch_module
from mailing.dispatch.batch import STORM
from mailing.dispatch.replies import NOT_BUILT
from mailing.models import Letter
from tests.mailing.builders import run_until_settled as settle
from tests.servers.factories import make_server
from tests.smtp_servers import Scripted, tarpit

from .faults import Fault, FaultHandler, fault_server
from .test_per_connection_cap import assert_not_resting, capped_server
from .test_smtp_faults import message_id, start_mailing

pytestmark = pytest.mark.django_db
L = Letter.Status


@pytest.fixture
def dispatching(settings, db) -> None:
    settings.DISPATCH_BATCH = 20
    settings.DISPATCH_SMTP_TIMEOUT = 2.0


def emails(count: int) -> list[str]:
    return [f"c{i:02d}@x.test" for i in range(count)]


@pytest.mark.parametrize("pipelining", [False, True], ids=["one by one", "pipelined"])
@pytest.mark.parametrize("phase", ["mail", "rcpt"])
def test_a_cap_of_one_said_then_hung_up_without_421(phase, pipelining, tenant_a, dispatching):
    """One letter a connection; the next one meets the cap's words with a
    452 and the server hangs up at once, not waiting for RSET nor QUIT."""
    fault = Fault("cap", phase, "452 4.3.1 Too many messages in this session", close=True)
    handler = FaultHandler(pipelining=pipelining, cap=1, cap_fault=fault)
    now = timezone.now()
    with fault_server(handler) as controller:
        server = make_server(tenant_a, port=controller.port)
        mailing = start_mailing(tenant_a, [server], emails(5))
        assert settle(mailing, now) == "done"
    letters = list(Letter.objects.filter(mailing=mailing))
    assert {(le.status, le.attempts) for le in letters} == {(L.SENT, 1)}
    assert sorted(handler.accepted) == sorted(message_id(le) for le in letters)
    assert handler.sessions == 5
    assert_not_resting(server)
    assert limits.window_usage([server], tenant_a, now)[server.pk].day_used == handler.handed == 5


@pytest.mark.parametrize("letters", [4, 6], ids=["the last letter capped", "one after the cap"])
@pytest.mark.parametrize("pipelining", [False, True], ids=["one by one", "pipelined"])
def test_the_cap_beside_a_letter_that_cannot_be_built(letters, pipelining, tenant_a, dispatching, monkeypatch):
    """The 4th letter meets the cap (3 a connection) while the 5th cannot be
    built (its making ahead raised): the 4th goes over a new connection, the
    5th fails alone, and the rest go; with 4 letters the capped one is the
    batch's last."""
    real = batch_module.Builder.wire
    made: list[str] = []

    def wire(builder, letter):
        made.append(letter.email)
        if letter.email == "c04@x.test":
            raise ValueError("broken template")
        return real(builder, letter)

    monkeypatch.setattr(batch_module.Builder, "wire", wire)
    handler = capped_server("421 too many messages in this connection", True, "mail", pipelining=pipelining)
    now = timezone.now()
    with fault_server(handler) as controller:
        server = make_server(tenant_a, port=controller.port)
        mailing = start_mailing(tenant_a, [server], emails(letters))
        assert settle(mailing, now) == "done"
    by_email = {le.email: le for le in Letter.objects.filter(mailing=mailing)}
    broken = by_email.pop("c04@x.test", None)
    if broken is not None:
        assert (broken.status, broken.last_reply) == (L.FAILED, NOT_BUILT + "broken template")
    assert {(le.status, le.attempts) for le in by_email.values()} == {(L.SENT, 1)}
    assert sorted(handler.accepted) == sorted(message_id(le) for le in by_email.values())
    assert handler.sessions == 2
    assert_not_resting(server)
    assert limits.window_usage([server], tenant_a, now)[server.pk].day_used == handler.handed == len(by_email)


@pytest.mark.parametrize("pipelining", [False, True], ids=["one by one", "pipelined"])
def test_the_cap_under_a_max_per_minute_overshoots_nothing(pipelining, tenant_a, dispatching):
    """A server taking 3 letters a connection and 5 a minute: the minute's 5
    go over two connections, not one more, each counted once."""
    handler = capped_server("421 too many messages in this connection", True, "mail", pipelining=pipelining)
    now = timezone.now().replace(second=1, microsecond=0)
    with fault_server(handler) as controller:
        server = make_server(tenant_a, port=controller.port, max_per_minute=5)
        mailing = start_mailing(tenant_a, [server], emails(8))
        assert settle(mailing, now) == "paced"  # the rest in the next minute
    letters = Letter.objects.filter(mailing=mailing)
    assert letters.filter(status=L.SENT).count() == 5 == len(handler.accepted) == handler.handed
    assert {(le.status, le.attempts) for le in letters.exclude(status=L.SENT)} == {(L.QUEUED, 0)}
    assert handler.sessions == 2
    usage = limits.window_usage([server], tenant_a, now)[server.pk]
    assert (usage.minute_used, usage.day_used) == (5, 5)
    assert_not_resting(server)


# Stalwart says it to the DATA command (stalwartlabs/stalwart#1384: "Expected
# response code 354 but got code 452").
CAP_AT_DATA = b"452 4.4.5 Maximum number of messages per session exceeded.\r\n"


class CapsAtTheDataCommand(Scripted):
    """Takes `cap` letters a connection and refuses the next one's DATA
    command (MAIL and RCPT taken): nothing of the letter was read."""

    def __init__(self, cap: int, *, pipelining: bool) -> None:
        ehlo = b"250-odd.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n" if pipelining else b"250 odd.test\r\n"
        super().__init__(self._answer, ehlo=ehlo)
        self.cap, self.begun = cap, {}

    def _answer(self, conn: int, line: bytes) -> bytes | None:
        verb = line[:4].upper()
        if verb == b"MAIL":
            self.begun[conn] = self.begun.get(conn, 0) + 1
        if verb == b"DATA" and self.begun[conn] > self.cap:
            return CAP_AT_DATA
        return None


@pytest.mark.parametrize("pipelining", [False, True], ids=["one by one", "pipelined"])
def test_a_cap_said_to_the_data_command(pipelining, tenant_a, dispatching):
    """Some servers count the letters of a connection at DATA: refused there,
    before its 354, nothing of the letter reached the server, and it goes
    over a new connection as at MAIL or RCPT."""
    script = CapsAtTheDataCommand(3, pipelining=pipelining)
    now = timezone.now()
    with tarpit(script, lasts=20.0) as port:
        server = make_server(tenant_a, port=port, login="")
        mailing = start_mailing(tenant_a, [server], emails(7))
        # Before the fix: "waiting", the letters after the cap deferred as a
        # recipient's temporary refusal, one by one on the same connection.
        assert settle(mailing, now) == "done"
    letters = Letter.objects.filter(mailing=mailing)
    assert {(le.status, le.attempts) for le in letters} == {(L.SENT, 1)}
    assert len(script.bodies) == 7
    assert len(script.heard) == math.ceil(7 / 3)
    assert_not_resting(server)
    assert limits.window_usage([server], tenant_a, now)[server.pk].day_used == 7


@pytest.mark.parametrize("pipelining", [False, True], ids=["one by one", "pipelined"])
def test_the_cap_across_claims_under_an_hourly_limit_overshoots_nothing(pipelining, tenant_a, settings):
    """Batches of 4 letters, the next claimed while the last go, over a server
    taking 3 a connection and 7 an hour: 7 arrive, once each, 7 counted."""
    settings.DISPATCH_BATCH, settings.DISPATCH_SMTP_TIMEOUT = 4, 2.0
    handler = capped_server("421 too many messages in this connection", False, "mail", pipelining=pipelining)
    now = timezone.now()
    with fault_server(handler) as controller:
        server = make_server(tenant_a, port=controller.port, max_per_hour=7)
        mailing = start_mailing(tenant_a, [server], emails(10))
        assert settle(mailing, now) == "waiting"
    letters = Letter.objects.filter(mailing=mailing)
    sent = list(letters.filter(status=L.SENT))
    assert len(sent) == 7 == len(handler.accepted) == handler.handed
    assert sorted(handler.accepted) == sorted(message_id(le) for le in sent)
    assert {(le.status, le.attempts) for le in letters.exclude(status=L.SENT)} == {(L.QUEUED, 0)}
    assert limits.window_usage([server], tenant_a, now)[server.pk].day_used == 7
    assert_not_resting(server)


@pytest.mark.parametrize("pipelining", [False, True], ids=["one by one", "pipelined"])
def test_a_cap_said_to_every_data_command_stops_within_the_storm(pipelining, tenant_a, dispatching):
    """Stalwart's words to every DATA, the first of a connection's included,
    where they read as a recipient's temporary refusal: each letter after
    the first meets them as a cap and goes over a new connection, but the
    refusals in a row end the batch (STORM) with the server resting, no
    attempt spent: a connection per letter for STORM letters, not for ever."""
    script = CapsAtTheDataCommand(0, pipelining=pipelining)
    now = timezone.now()
    with tarpit(script, lasts=20.0) as port:
        server = make_server(tenant_a, port=port, login="")
        mailing = start_mailing(tenant_a, [server], emails(8))
        assert settle(mailing, now) == "waiting"
    assert len(script.heard) == STORM and not script.bodies
    assert {(le.status, le.attempts) for le in Letter.objects.filter(mailing=mailing)} == {(L.QUEUED, 0)}
    server.refresh_from_db()
    assert server.backoff_until > now


class CapsThenTurnsAway(Scripted):
    """Takes one letter, says the cap to the next MAIL, and turns the next
    connection away at its greeting."""

    def __init__(self, *, pipelining: bool) -> None:
        ehlo = b"250-odd.test\r\n250-PIPELINING\r\n250 SIZE 0\r\n" if pipelining else b"250 odd.test\r\n"
        super().__init__(self._answer, ehlo=ehlo, greeting=self._greet)
        self.mails = 0

    def _greet(self, conn: int) -> bytes:
        return b"220 odd.test ESMTP\r\n" if conn == 0 else b"421 4.7.0 Too many connections from your IP\r\n"

    def _answer(self, conn: int, line: bytes) -> bytes | None:
        if line[:4].upper() == b"MAIL":
            self.mails += 1
            if self.mails > 1:
                return b"421 too many messages in this connection\r\n"
        return None


@pytest.mark.parametrize("pipelining", [False, True], ids=["one by one", "pipelined"])
def test_a_capped_letter_whose_new_connection_is_turned_away_goes_back(pipelining, tenant_a, dispatching):
    """The new connection the cap asks for is refused at its greeting: the
    capped letter and the rest go back uncounted, nothing fails, and alone
    with the server, the refusal rests it."""
    script = CapsThenTurnsAway(pipelining=pipelining)
    now = timezone.now()
    with tarpit(script, lasts=20.0) as port:
        server = make_server(tenant_a, port=port, login="")
        mailing = start_mailing(tenant_a, [server], emails(4))
        assert settle(mailing, now) == "waiting"
    letters = Letter.objects.filter(mailing=mailing)
    assert [le.status for le in letters.order_by("email")] == [L.SENT, L.QUEUED, L.QUEUED, L.QUEUED]
    assert {le.attempts for le in letters.exclude(status=L.SENT)} == {0}
    # One letter ended with its dot (the script, not hanging up after its
    # 421, answers a pipelined DATA 354: the client hangs up without the dot).
    assert sum(line == b".\r\n" for heard in script.heard for line in heard) == 1
    assert limits.window_usage([server], tenant_a, now)[server.pk].day_used == 1
    server.refresh_from_db()
    assert server.backoff_until > now
