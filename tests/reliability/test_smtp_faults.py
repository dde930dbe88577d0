"""The SMTP fault matrix (DOMAIN.md §7) against the dispatcher, in process on
PostgreSQL, with real aiosmtpd servers that fail on cue
(tests/reliability/faults.py) and a clock moved forward until the mailing
settles:

- 535 and 550 5.7.1 at MAIL take the server out (FAILING, with the hint)
  and the letter goes through the next server;
- 550 5.1.1 or another 5xx for one recipient or one message (550 5.7.1
  "rejected as spam" after DATA) fails that letter only, with the server's
  reply kept, and the mailing goes on;
- 421 makes the server rest and gives the letter back uncounted (it is the
  server's state, not the letter's), with the reply kept;
- 450/451/452 defer the letter with exponential backoff, bounded, and fail
  it with the last reply after DISPATCH_MAX_ATTEMPTS; a stall past the
  timeout or a connection dropped in DATA (the final dot may have gone) the
  same, but the letter goes out once more only, never a third time;
  connection-level trouble makes the server rest;
- a 250 followed by a hang-up counts that letter sent and loses no other:
  the next one goes over a new connection.

After each fault, and after a seeded random mix of 200 letters over two
servers: no letter lost, none accepted twice, every sent letter accepted by
the server the database names, and the limit accounting counts exactly the
letters handed to each server in DATA."""

import random
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from mailing import dispatch, limits
from mailing import mailings as services
from mailing.dispatch.replies import NOT_AGAIN_NOTE, UNSURE_NOTE
from mailing.models import Letter, Mailing
from servers import presets, probes
from servers.models import Health, SmtpServer
from servers.services import record_health
from tests.mailing.builders import from_the_reply, make_list, make_template
from tests.servers.factories import make_server
from tests.services import require_postgresql

from .faults import MATRIX, SERVER_LEVEL, Fault, FaultHandler, FaultPlan, fault_server

pytestmark = pytest.mark.django_db
L = Letter.Status

MAX_ATTEMPTS = 4
BASE, CAP = 60, 100  # seconds: 60, 100, 100 (the cap bounds the exponential growth)
DELAYS = [timedelta(seconds=min(BASE * 2**n, CAP)) for n in range(MAX_ATTEMPTS - 1)]
EMAILS = [f"r{i:03d}@x.test" for i in range(5)]
BEFORE, FAULTY, AFTER = EMAILS[:2], EMAILS[2], EMAILS[3:]
SENT_REPLY = "250 Message accepted for delivery"  # the server's own reply is kept

# What §7 asks for each fault.
RESTS_UNCOUNTED = ("421 at MAIL", "421 at RCPT", "421 after DATA")
RESTS = ("drop in DATA", "stall past the timeout")
DEFERS = ("450 at RCPT", "451 at RCPT", "452 at RCPT", "450 after DATA", "451 after DATA", "452 after DATA")
FAILS_LETTER = ("550 5.1.1 at RCPT", "554 after DATA", "550 5.7.1 after DATA")
FAILS_SERVER = ("535 at AUTH", "550 5.7.1 at MAIL")
ACCEPTED = ("250 then hang up",)
EFFECT = {
    **dict.fromkeys(RESTS_UNCOUNTED, "rests uncounted"),
    **dict.fromkeys(RESTS, "rests"),
    **dict.fromkeys(DEFERS, "defers"),
    **dict.fromkeys(FAILS_LETTER, "fails letter"),
    **dict.fromkeys(FAILS_SERVER, "fails server"),
    **dict.fromkeys(ACCEPTED, "accepted"),
}
assert set(EFFECT) == set(MATRIX), "every fault of the matrix has its expected effect"

TOTALS: Counter = Counter()


@pytest.fixture(scope="module", autouse=True)
def summary() -> Iterator[None]:
    yield
    mix = f" + a mix of {TOTALS['mixed']} faults x {TOTALS['mix letters']} letters" if TOTALS["mixed"] else ""
    print(
        f"\nsmtp faults: {TOTALS['kinds']} faults x {len(EMAILS)} letters{mix},"
        f" {TOTALS[L.SENT]} sent, {TOTALS[L.FAILED]} failed with reason,"
        f" {TOTALS[L.DEFERRED] + TOTALS[L.QUEUED]} deferred ({TOTALS['retried']} retried on the way),"
        f" {TOTALS['lost']} lost, {TOTALS['twice']} twice"
    )


@pytest.fixture
def dispatching(settings, db) -> None:
    require_postgresql()
    settings.DISPATCH_BATCH = 2  # a connection per two letters: the faulty one opens the second
    settings.DISPATCH_MAX_ATTEMPTS = MAX_ATTEMPTS
    settings.DISPATCH_RETRY_BASE = BASE
    settings.DISPATCH_RETRY_MAX = CAP
    settings.DISPATCH_SMTP_TIMEOUT = 2.0  # the stall outlasts it (FaultHandler.stall_seconds)


def start_mailing(tenant, servers: list[SmtpServer], emails: list[str]) -> Mailing:
    contact_list = make_list(tenant, "L", emails)
    mailing = Mailing(tenant=tenant, name="m", template=make_template(tenant))
    services.mailing_save(mailing=mailing, lists=[contact_list], servers=servers)
    services.mailing_start(mailing=mailing)
    return mailing


@dataclass
class Pass:
    """One run of the dispatcher at a moment, until it had nothing more."""

    at: datetime
    result: str
    letters: dict[str, Letter]
    servers: dict[int, SmtpServer]


def drive(
    mailing: Mailing, servers: list[SmtpServer], now: datetime, *, on_wait: Callable[[], bool] = lambda: False
) -> list[Pass]:
    """Run the dispatcher until the mailing is done, moving the clock to the
    mailing's resume time whenever it waits. on_wait acts as the tenant
    would (re-testing a failing server); when it did something the clock
    stays."""
    passes: list[Pass] = []
    for _ in range(300):
        for _ in range(200):
            result = dispatch.run_mailing(mailing_id=mailing.pk, now=now)
            if result != "more":
                break
        letters = {le.email: le for le in Letter.objects.filter(mailing=mailing)}
        states = {s.pk: s for s in SmtpServer.objects.filter(pk__in=[s.pk for s in servers])}
        passes.append(Pass(now, result, letters, states))
        assert not [le for le in letters.values() if le.status == L.SENDING], "a letter left claimed"
        if result == "done":
            return passes
        assert result == "waiting", result
        if not on_wait():
            mailing.refresh_from_db()
            assert mailing.resume_at > now
            now = mailing.resume_at
    raise AssertionError("the mailing never settled")


def message_id(letter: Letter) -> str:
    return f"<{letter.public_id}@mail.test>"


def check_invariants(
    mailing: Mailing, servers: list[SmtpServer], handlers: list[FaultHandler], now: datetime
) -> Counter:
    """No letter lost, none accepted twice, the database agrees with the
    servers, and the limits counted what reached DATA."""
    letters = list(Letter.objects.filter(mailing=mailing))
    lost = [
        le
        for le in letters
        if not (
            (le.status == L.SENT and le.last_reply.startswith("250"))
            or (le.status == L.FAILED and le.last_reply)
            or (le.status == L.DEFERRED and le.next_attempt_at and le.last_reply)
            or le.status == L.QUEUED
        )
    ]
    accepted = Counter(mid for h in handlers for mid in h.accepted)
    twice = {mid: n for mid, n in accepted.items() if n > 1}
    TOTALS.update(lost=len(lost), twice=len(twice))
    assert not lost, [(le.email, le.status, le.last_reply) for le in lost]
    assert not twice
    sent = {message_id(le): le for le in letters if le.status == L.SENT}
    assert set(accepted) == set(sent)
    for server, handler in zip(servers, handlers, strict=True):
        assert {sent[mid].server_id for mid in handler.accepted} <= {server.pk}
    # The limits never count fewer letters than reached DATA, so no fault
    # lets a server take more than its limit. (Exactly those letters: see
    # test_the_limits_count_only_letters_handed_in_data.)
    usage = limits.window_usage(servers, mailing.tenant, now)
    for server, handler in zip(servers, handlers, strict=True):
        assert usage[server.pk].day_used >= handler.handed
    statuses = Counter(le.status for le in letters)
    TOTALS.update(statuses)
    TOTALS["retried"] += sum(1 for le in letters if le.attempts > 1)
    return statuses


def place(fault: Fault, first: FaultHandler, plan: FaultPlan, times: int) -> None:
    """Put the fault on the third letter. With two letters per connection
    the second connection carries it (AUTH #2), it is the third MAIL; the
    letters after it, untried, go first when the server wakes (queued before
    deferred), so its retries are the MAILs after theirs."""
    if fault.phase == "auth":
        first.auth_faults = {2: fault}
    elif fault.phase == "mail":
        retries = 3 + len(AFTER)
        first.mail_faults = {3: fault} | {retries + n: fault for n in range(1, times)}
    else:
        plan.add(FAULTY, fault, times)


def reason(fault: Fault) -> str:
    return fault.text(FAULTY)


def assert_untouched(server: SmtpServer) -> None:
    assert server.health != Health.FAILING
    assert (server.connection_failures, server.backoff_until) == (0, None)


def assert_progression(passes: list[Pass], t0: datetime, last: int = MAX_ATTEMPTS) -> None:
    """Deferred at once, retried only once due with the delay doubling up
    to the cap, and failed after the last attempt with the last reply (the
    second, for a letter whose server went silent after its final dot)."""
    assert passes[0].at == t0
    seen, due = 0, t0
    for p in passes:
        letter = p.letters[FAULTY]
        if letter.attempts == seen:
            continue
        assert letter.attempts == seen + 1, "one attempt per pass at most"
        assert p.at >= due, "never retried before it was due"
        seen = letter.attempts
        if seen < last:
            assert letter.status == L.DEFERRED
            assert from_the_reply(letter.next_attempt_at, p.at + DELAYS[seen - 1])
            due = letter.next_attempt_at
        else:
            assert letter.status == L.FAILED
    assert seen == last


def assert_rests(passes: list[Pass], server: SmtpServer) -> None:
    """Each failure in a row makes the server rest longer, up to the cap; a
    clean batch ends the row."""
    # A rest that began in a pass: its end moved, and is still to come. (A
    # pass may come a moment before the end of a rest begun earlier: the
    # rest and a letter's retry were decided at replies milliseconds apart.)
    rested, until = [], None
    for p in passes:
        state = p.servers[server.pk]
        if state.backoff_until != until and (state.backoff_until or p.at) > p.at:
            rested.append((p, state))
        until = state.backoff_until
    assert rested, "the server rested"
    for p, state in rested:
        assert from_the_reply(state.backoff_until, p.at + DELAYS[min(state.connection_failures, len(DELAYS)) - 1])


def is_reason(reply: str, fault: Fault) -> bool:
    """The server's reply, or, where the server hung up, what the client saw
    (after the dispatcher's notes on a letter that may have been delivered)."""
    for note in (NOT_AGAIN_NOTE, UNSURE_NOTE):
        reply = reply.removeprefix(note)
    return reply == reason(fault) or ((not fault.reply or fault.close) and reply.startswith("connection lost:"))


@pytest.mark.parametrize("pipelining", [False, True], ids=["one by one", "pipelined"])
@pytest.mark.parametrize("name", list(MATRIX))
def test_one_fault_among_five_letters(name, pipelining, tenant_a, dispatching):
    """The third of five letters meets the fault (a temporary one on every
    attempt); every letter's state and the server's are as §7 says, whether
    the server offers PIPELINING (MAIL, RCPT and DATA in one write) or not."""
    fault, effect = MATRIX[name], EFFECT[name]
    plan = FaultPlan()
    first = FaultHandler(plan=plan, pipelining=pipelining)
    following = FaultHandler(plan=plan, pipelining=pipelining)
    place(fault, first, plan, times=MAX_ATTEMPTS if effect in ("rests", "defers") else 1)
    t0 = timezone.now()
    with fault_server(first) as c1, fault_server(following) as c2:
        servers = [make_server(tenant_a, name="First", port=c1.port)]
        if effect == "fails server":
            servers.append(make_server(tenant_a, name="Next", port=c2.port, priority=1))
        mailing = start_mailing(tenant_a, servers, EMAILS)
        passes = drive(mailing, servers, t0)
    server = servers[0]
    first_pass, final = passes[0], passes[-1]
    letter = first_pass.letters[FAULTY]
    # The letters before the fault went out through the first server.
    for email in BEFORE:
        assert (first_pass.letters[email].status, first_pass.letters[email].server_id) == (L.SENT, server.pk)
    assert [f for f, _ in first.played + following.played] == [fault.name] * len(first.played + following.played)
    assert first.played, "the fault was played"

    if effect == "fails letter":
        assert [p.result for p in passes] == ["done"]
        assert (letter.status, letter.attempts, letter.last_reply) == (L.FAILED, 1, reason(fault))
        assert all(final.letters[e].status == L.SENT for e in BEFORE + AFTER)  # the mailing went on
        assert_untouched(final.servers[server.pk])

    elif effect == "defers":
        assert (letter.status, letter.last_reply) == (L.DEFERRED, reason(fault))
        assert from_the_reply(letter.next_attempt_at, t0 + DELAYS[0])
        assert all(first_pass.letters[e].status == L.SENT for e in AFTER)  # the same connection went on
        assert_progression(passes, t0)
        assert final.letters[FAULTY].last_reply == reason(fault)
        for p in passes:
            assert_untouched(p.servers[server.pk])

    elif effect == "rests uncounted":
        assert (letter.status, letter.attempts, letter.next_attempt_at) == (L.QUEUED, 0, None)
        assert letter.last_reply == reason(fault)
        for email in AFTER:
            assert (first_pass.letters[email].status, first_pass.letters[email].attempts) == (L.QUEUED, 0)
        rested = first_pass.servers[server.pk]
        assert rested.connection_failures == 1 and from_the_reply(rested.backoff_until, t0 + DELAYS[0])
        # "Too many connections from your IP" is the provider's rate limit.
        kind = "rate_limit" if "Too many" in fault.reply else "connection"
        assert (rested.rest_reason, rested.rest_reply) == (kind, reason(fault))
        assert_rests(passes, server)
        # Once the server answers again the letter goes, no attempt lost.
        assert all(final.letters[e].status == L.SENT for e in [FAULTY, *AFTER])
        assert final.letters[FAULTY].attempts == 1
        assert_untouched(final.servers[server.pk])

    elif effect == "rests":
        assert letter.status == L.DEFERRED and from_the_reply(letter.next_attempt_at, t0 + DELAYS[0])
        assert is_reason(letter.last_reply, fault), letter.last_reply
        # The rest of the batch never reached the server: back in the queue, untried.
        for email in AFTER:
            assert (first_pass.letters[email].status, first_pass.letters[email].attempts) == (L.QUEUED, 0)
            assert first_pass.letters[email].server_id is None
        rested = first_pass.servers[server.pk]
        assert rested.connection_failures == 1 and from_the_reply(rested.backoff_until, t0 + DELAYS[0])
        assert rested.health != Health.FAILING
        # Silent after the final dot, the server may have taken it: sent
        # once more, never a third time (RFC 1047's duplicates).
        assert letter.last_reply.startswith(UNSURE_NOTE)
        assert_progression(passes, t0, last=2)
        assert final.letters[FAULTY].last_reply.startswith(NOT_AGAIN_NOTE)
        assert is_reason(final.letters[FAULTY].last_reply, fault)
        assert_rests(passes, server)
        assert all(final.letters[e].status == L.SENT for e in AFTER)
        assert final.servers[server.pk].health != Health.FAILING  # it rests, it is never taken out

    elif effect == "accepted":
        assert (letter.status, letter.attempts, letter.last_reply) == (L.SENT, 1, "250 2.0.0 Ok: queued")
        # The next letter met the hang-up at MAIL, before anything of it
        # reached the server, on a connection that had carried a letter: it
        # goes over a new connection at once, the server not rested.
        for email in AFTER:
            after = first_pass.letters[email]
            assert (after.status, after.attempts) == (L.SENT, 1)
        assert [p.result for p in passes] == ["done"]
        assert all(le.status == L.SENT for le in final.letters.values())
        assert_untouched(first_pass.servers[server.pk])

    elif effect == "fails server":
        assert [p.result for p in passes] == ["done"]
        failed = final.servers[server.pk]
        assert failed.health == Health.FAILING
        assert ("535" if fault.phase == "auth" else "5.7.1") in failed.health_error
        hint = presets.GENERIC_AUTH_HINT if fault.phase == "auth" else presets.GENERIC_BLACKLIST_HINT
        assert failed.health_hint == hint
        # The faulty letter and the rest went through the next server.
        nxt = servers[1]
        assert all((final.letters[e].status, final.letters[e].server_id) == (L.SENT, nxt.pk) for e in [FAULTY, *AFTER])
        assert final.letters[FAULTY].attempts == 1  # handing it back was no attempt
        assert message_id(final.letters[FAULTY]) in following.accepted
        assert_untouched(final.servers[nxt.pk])

    statuses = check_invariants(mailing, servers, [first, following][: len(servers)], final.at)
    assert sum(statuses.values()) == len(EMAILS)
    TOTALS["kinds"] += 1


@pytest.mark.parametrize("pipelining", [False, True], ids=["one by one", "pipelined"])
def test_the_limits_count_only_letters_handed_in_data(pipelining, tenant_a, dispatching):
    plan = FaultPlan()
    plan.add(EMAILS[1], MATRIX["550 5.1.1 at RCPT"])
    plan.add(EMAILS[3], MATRIX["451 at RCPT"])
    handler = FaultHandler(plan=plan, pipelining=pipelining)
    now = timezone.now()
    with fault_server(handler) as controller:
        server = make_server(tenant_a, port=controller.port)
        mailing = start_mailing(tenant_a, [server], EMAILS)
        drive(mailing, [server], now)
    # In DATA: r000, r002, r004, and r003 when retried; r001 never.
    assert handler.handed == 4
    assert limits.window_usage([server], tenant_a, now)[server.pk].day_used == handler.handed


RATE_AT_THE_DOT = Fault("rate limit at the dot", "data", "451 4.7.1 Sending rate limit exceeded, try again later")


@pytest.mark.parametrize("fault", [RATE_AT_THE_DOT, MATRIX["421 after DATA"]], ids=lambda f: f.name)
def test_a_stop_at_the_final_dot_abandons_the_next_envelope_that_went_with_it(fault, tenant_a, dispatching, settings):
    """With PIPELINING the next letter's MAIL, RCPT and DATA go with the
    final dot (RFC 2920 §3.1). When that dot's reply stops the batch, the
    next letter is never given: no final dot follows, nor a QUIT (after a
    354 it would be a line of the letter), the connection is closed, the
    letter goes back untried, and the limits count it exactly when the
    server answered its DATA (the server that hangs up after its 421
    answers nothing more)."""
    from servers.netguard import PinnedSMTP

    settings.DISPATCH_BATCH = 5
    writes: list[bytes] = []
    send = PinnedSMTP.send

    def recording(self, data):
        writes.append(data.encode() if isinstance(data, str) else data)
        return send(self, data)

    plan = FaultPlan()
    plan.add(EMAILS[1], fault)
    handler = FaultHandler(plan=plan, pipelining=True)
    now = timezone.now()
    with fault_server(handler) as controller:
        server = make_server(tenant_a, port=controller.port)
        mailing = start_mailing(tenant_a, [server], EMAILS)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(PinnedSMTP, "send", recording)
            dispatch.run_mailing(mailing_id=mailing.pk, now=now)  # one batch: the server rests after it
    letters = {le.email: le for le in Letter.objects.filter(mailing=mailing)}
    assert (letters[EMAILS[0]].status, letters[EMAILS[0]].last_reply) == (L.SENT, SENT_REPLY)
    assert (letters[EMAILS[1]].status, letters[EMAILS[1]].attempts) == (L.QUEUED, 0)
    assert letters[EMAILS[1]].last_reply == fault.text()
    for email in EMAILS[2:]:
        assert (letters[email].status, letters[email].attempts, letters[email].last_reply) == (L.QUEUED, 0, "")
    assert handler.accepted == [message_id(letters[EMAILS[0]])]
    # The refused dot carried the next letter's envelope, and nothing went after it.
    (carrier,) = [w for w in writes if b"RCPT TO:<" + EMAILS[2].encode() in w]
    assert carrier.startswith(b"\r\n.\r\nMAIL FROM:") or b"\r\n.\r\nMAIL FROM:" in carrier
    assert writes[-1] == carrier
    handed = 3 if fault is RATE_AT_THE_DOT else 2  # the 421 server hears nothing after it
    assert handler.handed == handed
    assert limits.window_usage([server], tenant_a, now)[server.pk].day_used == handed


@pytest.mark.parametrize("name", ["421 at MAIL", "421 at RCPT", "421 after DATA"])
def test_a_421_keeps_the_servers_reply(name, tenant_a, dispatching):
    plan = FaultPlan()
    handler = FaultHandler(plan=plan)
    place(MATRIX[name], handler, plan, times=1)
    now = timezone.now()
    with fault_server(handler) as controller:
        server = make_server(tenant_a, port=controller.port)
        mailing = start_mailing(tenant_a, [server], EMAILS)
        (first_pass, *_) = drive(mailing, [server], now)
    letter = first_pass.letters[FAULTY]
    assert (letter.status, letter.attempts, letter.last_reply) == (L.QUEUED, 0, reason(MATRIX[name]))


# Replies about the server as a whole, beyond the list: a 4xx to
# MAIL FROM is a rate limit (the server rests), a 454 at AUTH a temporary
# login failure (it rests, it is not taken out), and Postfix refuses a
# listed client at RCPT (it is taken out, although the reply is at RCPT).
SERVER_WIDE = ["451 at MAIL", "454 at AUTH", "554 5.7.1 at RCPT"]


@pytest.mark.parametrize("name", SERVER_WIDE)
def test_a_server_level_refusal_sends_the_rest_through_the_next_server(name, tenant_a, dispatching):
    """§7 by the kind of reply: a blacklisting takes the server out, a
    temporary server-wide refusal makes it rest; either way the letters go
    through the next server and none fails."""
    fault = SERVER_LEVEL[name]
    plan = FaultPlan()
    first, following = FaultHandler(plan=plan), FaultHandler(plan=plan)
    if fault.phase == "auth":
        first.auth_faults = {2: fault}
    elif fault.phase == "mail":
        first.mail_faults = dict.fromkeys(range(3, 100), fault)  # from the third letter on, for as long as it lasts
    else:
        # A blacklisted client is refused every recipient, by that server
        # only: the next server has a plan of its own.
        following.plan = FaultPlan()
        for email in [FAULTY, *AFTER]:
            plan.add(email, fault)
    with fault_server(first) as c1, fault_server(following) as c2:
        servers = [make_server(tenant_a, name="First", port=c1.port), make_server(tenant_a, port=c2.port, priority=1)]
        mailing = start_mailing(tenant_a, servers, EMAILS)
        final = drive(mailing, servers, timezone.now())[-1]
    assert [(final.letters[e].status, final.letters[e].server_id) for e in [FAULTY, *AFTER]] == [
        (L.SENT, servers[1].pk)
    ] * 3
    out = final.servers[servers[0].pk]
    if "5.7.1" in name:
        assert (out.health, out.health_hint) == (Health.FAILING, presets.GENERIC_BLACKLIST_HINT)
    else:
        assert out.health != Health.FAILING and out.connection_failures >= 1


# The random mix

SEED = 20240508
MIX = 200
TEMPORARY = tuple(MATRIX[n] for n in RESTS_UNCOUNTED + RESTS + DEFERS if MATRIX[n].phase in ("rcpt", "data"))
COUNTED = tuple(MATRIX[n] for n in RESTS + DEFERS if MATRIX[n].phase in ("rcpt", "data"))
PER_LETTER = [f for f in MATRIX.values() if f.phase in ("rcpt", "data")]
RARE = {"stall past the timeout": 1, "550 5.7.1 after DATA": 2}  # a stall costs two seconds


def plan_mix(rng: random.Random, emails: list[str], plan: FaultPlan) -> dict[str, tuple[Fault, int]]:
    """About 30% of the letters get a fault; a temporary one lasts one or two
    attempts, or all of them."""
    weights = [RARE.get(f.name, 4) for f in PER_LETTER]
    planned = {}
    for email in emails:
        if rng.random() < 0.3:
            fault = rng.choices(PER_LETTER, weights)[0]
            times = rng.choice([1, 1, 2, MAX_ATTEMPTS]) if fault in TEMPORARY else 1
            plan.add(email, fault, times)
            planned[email] = (fault, times)
    return planned


def command_faults(rng: random.Random, handler: FaultHandler) -> None:
    """MAIL and AUTH faults by ordinal, for each server."""
    ordinals = rng.sample(range(1, 120), 10)
    handler.mail_faults = dict.fromkeys(ordinals[:8], MATRIX["421 at MAIL"])
    handler.mail_faults |= dict.fromkeys(ordinals[8:], MATRIX["550 5.7.1 at MAIL"])
    handler.auth_faults = {rng.randint(2, 12): MATRIX["535 at AUTH"]}


def test_a_seeded_random_mix_over_two_servers_loses_nothing_and_sends_nothing_twice(tenant_a, dispatching, settings):
    settings.DISPATCH_BATCH = 10
    rng = random.Random(SEED)
    emails = [f"m{i:03d}@x.test" for i in range(MIX)]
    plan = FaultPlan()
    planned = plan_mix(rng, emails, plan)
    handlers = [FaultHandler(plan=plan), FaultHandler(plan=plan, pipelining=True)]  # one offers PIPELINING
    for handler in handlers:
        command_faults(rng, handler)
    taken_out: Counter = Counter()  # by the dispatcher, not by a failed re-test
    probe_errors: dict[int, str | None] = {}

    with ExitStack() as stack:
        controllers = [stack.enter_context(fault_server(h)) for h in handlers]
        servers = [
            make_server(tenant_a, name=f"S{i}", port=c.port, priority=i, max_per_hour=1000)
            for i, c in enumerate(controllers)
        ]

        def retest_failing() -> bool:
            """The tenant reads the notice and tests the failing server again."""
            failing = SmtpServer.objects.filter(pk__in=[s.pk for s in servers], health=Health.FAILING)
            for server in failing:
                if server.health_error != probe_errors.get(server.pk):  # the dispatcher took it out
                    assert ("535" in server.health_error and server.health_hint == presets.GENERIC_AUTH_HINT) or (
                        "5.7.1" in server.health_error and server.health_hint == presets.GENERIC_BLACKLIST_HINT
                    ), server.health_error
                    taken_out[server.pk] += 1
                result = probes.smtp_probe(server)
                record_health(record=server, result=result)
                probe_errors[server.pk] = result.diagnosis.message if result.diagnosis else None
            return bool(failing)

        mailing = start_mailing(tenant_a, servers, emails)
        t0 = timezone.now()
        passes = drive(mailing, servers, t0, on_wait=retest_failing)

    final = passes[-1]
    mailing.refresh_from_db()
    assert mailing.status == Mailing.Status.COMPLETED
    statuses = check_invariants(mailing, servers, handlers, final.at)
    assert statuses[L.SENT] + statuses[L.FAILED] == MIX
    played = Counter(name for h in handlers for name, _ in h.played)
    assert len(played) >= 12, played  # most of the matrix was met
    for email, (fault, times) in planned.items():
        letter = final.letters[email]
        if fault.name in FAILS_LETTER:
            assert (letter.status, letter.last_reply) == (L.FAILED, fault.text(email))
        elif fault.name in RESTS and times >= 2:
            # Silent after its final dot twice: not sent a third time.
            assert (letter.status, letter.attempts) == (L.FAILED, 2) or letter.status == L.SENT
        elif fault in COUNTED and times >= MAX_ATTEMPTS:
            # Failed after its last attempt; or sent, when a refusal of it
            # fell in a row of refusals the server gave everyone (a storm:
            # that one was not the letter's, so it did not count).
            assert (letter.status, letter.attempts) == (L.FAILED, MAX_ATTEMPTS) or letter.status == L.SENT
    # A letter without a permanent fault fails only after its last attempt.
    for letter in final.letters.values():
        permanent = email_fault(planned, letter.email) in FAILS_LETTER
        if letter.status == L.FAILED and not permanent:
            last = 2 if letter.last_reply.startswith(NOT_AGAIN_NOTE) else MAX_ATTEMPTS
            assert letter.attempts == last, (letter.email, letter.attempts, letter.last_reply)
    # Each server's state agrees with what it did: taken out only with the
    # reason and hint of a 535 or 5.7.1 (checked at every re-test), never
    # more often than it answered one, and resting only with a count of
    # failures.
    for server, handler in zip(servers, handlers, strict=True):
        server.refresh_from_db()
        disabling = sum(1 for name, _ in handler.played if name in FAILS_SERVER)
        assert taken_out[server.pk] <= disabling
        if server.health == Health.FAILING:
            assert disabling and server.health_error and server.health_hint
        assert (server.connection_failures == 0) == (server.backoff_until is None)
    TOTALS["mixed"] += sum(played.values())
    TOTALS["mix letters"] += MIX


def email_fault(planned: dict[str, tuple[Fault, int]], email: str) -> str:
    return planned[email][0].name if email in planned else ""
