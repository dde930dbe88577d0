"""The dispatcher against real SMTP servers (aiosmtpd sinks): order, limits,
waiting and resuming with a controlled clock, failures, and the From of the
server that actually sends."""

import asyncio
import re
from contextlib import ExitStack, contextmanager
from datetime import timedelta
from itertools import pairwise

import pytest
from django.db import connection
from django.utils import timezone, translation

from mailing import dispatch
from mailing import mailings as services
from mailing.dispatch.claims import share
from mailing.models import DispatchChain, Letter, Mailing
from mailing.sink import SinkHandler
from servers.models import Health
from tests.servers.factories import make_server
from tests.smtp_servers import BlacklistingHandler, PipeliningSink, smtp_server

from .builders import from_the_reply, make_list, make_template, run_until_settled

pytestmark = pytest.mark.django_db
L = Letter.Status


def start_mailing(tenant, servers, count: int, **template) -> Mailing:
    contact_list = make_list(tenant, "L", [f"r{i:03d}@x.test" for i in range(count)])
    mailing = Mailing(tenant=tenant, name="m", template=make_template(tenant, **template))
    services.mailing_save(mailing=mailing, lists=[contact_list], servers=servers)
    services.mailing_start(mailing=mailing)
    return mailing


def test_first_server_until_its_limit_then_the_next_without_pause(tenant_a, settings):
    settings.DISPATCH_BATCH = 7
    now = timezone.now()
    with ExitStack() as stack:
        sinks = [stack.enter_context(smtp_server()) for _ in range(3)]
        servers = [
            make_server(tenant_a, name=f"S{i}", port=c.port, max_per_hour=limit, priority=i)
            for i, ((c, _), limit) in enumerate(zip(sinks, [10, 15, 100], strict=True))
        ]
        mailing = start_mailing(tenant_a, servers, 40)
        assert run_until_settled(mailing, now) == "done"
    received = [len(handler.received) for _, handler in sinks]
    assert received == [10, 15, 15]
    # No pause between servers: the first letter through the next server
    # follows the last one through the spent server at once (a dispatcher
    # that waited for the window would take an hour).
    for (_, spent), (_, following) in pairwise(sinks):
        assert following.received[0].at - spent.received[-1].at < 1.0
    mailing.refresh_from_db()
    assert mailing.status == Mailing.Status.COMPLETED
    assert Letter.objects.filter(mailing=mailing, status=L.SENT).count() == 40
    # Every letter once: the Message-IDs the sinks saw are the letters'.
    ids = [r.message["Message-ID"] for _, h in sinks for r in h.received]
    assert len(ids) == len(set(ids)) == 40


def test_it_waits_for_limits_and_resumes_after_the_hourly_window(tenant_a):
    now = timezone.now().replace(second=30, microsecond=0)
    with smtp_server() as (controller, handler):
        server = make_server(tenant_a, port=controller.port, max_per_hour=5)
        mailing = start_mailing(tenant_a, [server], 8)
        assert run_until_settled(mailing, now) == "waiting"
        mailing.refresh_from_db()
        assert mailing.status == Mailing.Status.WAITING
        minute = now.replace(second=0)
        assert mailing.resume_at == minute + timedelta(minutes=61)
        assert Letter.objects.filter(mailing=mailing, status=L.QUEUED).count() == 3
        # Before the resume time nothing moves; at it, sending resumes by itself.
        assert dispatch.run_mailing(mailing_id=mailing.pk, now=mailing.resume_at - timedelta(seconds=1)) == "waiting"
        assert mailing.pk in dispatch.active_mailing_ids(now=mailing.resume_at)
        assert run_until_settled(mailing, mailing.resume_at) == "done"
    assert len(handler.received) == 8


def test_a_daily_limit_stricter_than_the_hourly_one_rules(tenant_a):
    now = timezone.now()
    with smtp_server() as (controller, handler):
        server = make_server(tenant_a, port=controller.port, max_per_hour=10, max_per_day=4)
        mailing = start_mailing(tenant_a, [server], 6)
        assert run_until_settled(mailing, now) == "waiting"
    mailing.refresh_from_db()
    assert len(handler.received) == 4
    assert mailing.resume_at >= now + timedelta(hours=24)


def test_each_server_sends_with_its_own_from(tenant_a, settings):
    settings.DISPATCH_BATCH = 2
    with smtp_server() as (c1, h1), smtp_server() as (c2, h2):
        plain = make_server(tenant_a, name="Yandex", port=c1.port, sender_email="box@yandex.test", max_per_hour=2)
        own = make_server(
            tenant_a, name="Own", port=c2.port, sender_email="mx@acme.test", allow_sender_substitution=True, priority=1
        )
        mailing = start_mailing(tenant_a, [plain, own], 4, sender_email="ceo@acme.test", sender_name="Acme")
        run_until_settled(mailing, timezone.now())
    assert {r.message["From"] for r in h1.received} == {"Acme <box@yandex.test>"}
    assert {r.message["From"] for r in h2.received} == {"Acme <ceo@acme.test>"}
    assert {r.mail_from for r in h1.received} == {"box@yandex.test"}


def test_a_wrong_password_fails_the_server_and_the_next_one_takes_over(tenant_a):
    with smtp_server() as (c1, h1), smtp_server() as (c2, h2):
        broken = make_server(tenant_a, name="Broken", port=c1.port, password="wrong")
        good = make_server(tenant_a, name="Good", port=c2.port, priority=1)
        mailing = start_mailing(tenant_a, [broken, good], 5)
        assert run_until_settled(mailing, timezone.now()) == "done"
    broken.refresh_from_db()
    assert broken.health == Health.FAILING and "535" in broken.health_error and broken.health_hint
    assert (len(h1.received), len(h2.received)) == (0, 5)


def test_blacklisting_fails_the_server_and_keeps_the_letters(tenant_a):
    with smtp_server(handler=BlacklistingHandler()) as (c1, _):
        listed = make_server(tenant_a, name="Listed", port=c1.port)
        mailing = start_mailing(tenant_a, [listed], 3)
        assert run_until_settled(mailing, timezone.now()) == "blocked"  # no time to wait for
        listed.refresh_from_db()
        assert listed.health == Health.FAILING and "5.7.1" in listed.health_error
        assert Letter.objects.filter(mailing=mailing, status=L.QUEUED).count() == 3


class RefusingRecipient(BlacklistingHandler):
    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("r000"):
            return "550 5.1.1 user unknown"
        if address.startswith("r001"):
            return "451 4.7.1 greylisted, try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"


def test_a_bad_recipient_fails_one_letter_and_a_temporary_refusal_defers_it(tenant_a):
    now = timezone.now()
    with smtp_server(handler=RefusingRecipient()) as (controller, handler):
        server = make_server(tenant_a, port=controller.port)
        mailing = start_mailing(tenant_a, [server], 4)
        assert run_until_settled(mailing, now) == "waiting"  # the deferred letter waits for its retry
    letters = {le.email: le for le in Letter.objects.filter(mailing=mailing)}
    assert letters["r000@x.test"].status == L.FAILED and "5.1.1" in letters["r000@x.test"].last_reply
    deferred = letters["r001@x.test"]
    assert deferred.status == L.DEFERRED and from_the_reply(deferred.next_attempt_at, now + timedelta(seconds=60))
    assert len(handler.received) == 2
    server.refresh_from_db()
    assert server.health != Health.FAILING
    mailing.refresh_from_db()
    assert mailing.resume_at == deferred.next_attempt_at


def test_a_dead_server_rests_and_letters_stay_queued(tenant_a):
    from tests.helpers import free_port

    now = timezone.now()
    server = make_server(tenant_a, port=free_port())
    mailing = start_mailing(tenant_a, [server], 2)
    assert run_until_settled(mailing, now) == "waiting"
    server.refresh_from_db()
    assert from_the_reply(server.backoff_until, now + timedelta(seconds=60)) and server.connection_failures == 1
    assert Letter.objects.filter(mailing=mailing, status=L.QUEUED).count() == 2


def test_a_paused_mailing_or_a_suspended_tenant_sends_nothing(tenant_a):
    from accounts.services import tenant_suspend

    with smtp_server() as (controller, handler):
        server = make_server(tenant_a, port=controller.port)
        mailing = start_mailing(tenant_a, [server], 3)
        services.transition(mailing=mailing, action="pause")
        assert dispatch.run_mailing(mailing_id=mailing.pk) == "idle"
        services.transition(mailing=mailing, action="resume")
        tenant_suspend(tenant=tenant_a)
        assert dispatch.run_mailing(mailing_id=mailing.pk) == "idle"
        assert mailing.pk not in dispatch.active_mailing_ids()
    assert handler.received == []


def test_an_expired_lease_returns_a_dead_workers_letters(tenant_a):
    server = make_server(tenant_a)
    mailing = start_mailing(tenant_a, [server], 3)
    now = timezone.now()
    claimed = dispatch.claim(mailing, server, 2, now=now)
    assert len(claimed) == 2
    assert dispatch.claim(mailing, server, 5, now=now)[0].email == "r002@x.test"  # never the same letter twice
    assert dispatch.requeue_expired_leases(now=now + timedelta(minutes=11)) == 3
    # The first letter of each claim is the one its worker was on: it counts
    # an attempt; the others go back untried.
    letters = Letter.objects.filter(mailing=mailing).order_by("pk")
    assert [(le.status, le.attempts) for le in letters] == [(L.DEFERRED, 1), (L.QUEUED, 0), (L.DEFERRED, 1)]


def test_a_disabled_server_is_skipped_for_the_next(tenant_a):
    with smtp_server() as (c1, h1), smtp_server() as (c2, h2):
        first = make_server(tenant_a, name="First", port=c1.port, enabled=False)
        second = make_server(tenant_a, name="Second", port=c2.port, priority=1)
        mailing = start_mailing(tenant_a, [first, second], 3)
        assert run_until_settled(mailing, timezone.now()) == "done"
    assert (len(h1.received), len(h2.received)) == (0, 3)


def test_a_server_edited_to_break_a_saas_rule_is_refused_before_connecting(tenant_a, settings):
    settings.DEPLOYMENT_MODE, settings.SERVERS_ALLOW_PRIVATE_HOSTS = "saas", False
    with smtp_server() as (controller, handler):
        server = make_server(tenant_a, host="8.8.8.8", port=465)
        mailing = start_mailing(tenant_a, [server], 2)
        # Edited behind the forms' back: now it points at the platform's own network.
        type(server).objects.filter(pk=server.pk).update(host="127.0.0.1", port=controller.port)
        assert run_until_settled(mailing, timezone.now()) == "blocked"
    server.refresh_from_db()
    assert server.health == Health.FAILING and "loopback" in server.health_error
    assert handler.received == []
    assert Letter.objects.filter(mailing=mailing, status=L.QUEUED).count() == 2


@contextmanager
def all_slots_taken(server):
    yield False


def test_a_busy_server_is_no_reason_to_wait(tenant_a, monkeypatch):
    server = make_server(tenant_a, max_per_hour=100)
    mailing = start_mailing(tenant_a, [server], 2)
    monkeypatch.setattr(dispatch.batch, "connection_slot", all_slots_taken)
    assert dispatch.run_mailing(mailing_id=mailing.pk) == "busy"
    mailing.refresh_from_db()
    assert mailing.status == Mailing.Status.ACTIVE  # not "waiting for limits"


def test_a_busy_server_without_room_does_not_keep_the_mailing_from_waiting(tenant_a, monkeypatch):
    from mailing import limits

    server = make_server(tenant_a, max_per_hour=1)
    mailing = start_mailing(tenant_a, [server], 2)
    limits.reserve(server=server, tenant=tenant_a, wanted=1)  # another worker spent it
    monkeypatch.setattr(dispatch.batch, "connection_slot", all_slots_taken)
    assert dispatch.run_mailing(mailing_id=mailing.pk) == "waiting"


def test_chains_let_as_many_workers_as_configured_send_one_mailing(tenant_a, settings):
    settings.DISPATCH_CHAINS = 2
    mailing = start_mailing(tenant_a, [make_server(tenant_a)], 1)
    now = timezone.now()
    assert [dispatch.take_chain(mailing.pk, now=now) for _ in range(3)] == [0, 1, None]
    dispatch.renew_chain(mailing.pk, 1, more=False)  # that chain stopped
    assert dispatch.take_chain(mailing.pk, now=now) == 1
    # A chain whose worker died stops renewing; its slot frees after the lease.
    later = now + dispatch.CHAIN_LEASE + timedelta(seconds=1)
    assert dispatch.take_chain(mailing.pk, now=later) == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "stop",
    ["pause", "cancel", "suspend tenant", "disable server", "server failing", "server resting",
     "tenant held back", "tenant blocked", "break a SaaS rule"],
)  # fmt: skip
def test_a_batch_stops_in_the_middle_when_the_mailing_or_its_server_is_stopped(tenant_a, settings, stop):
    """A long batch (a slow server) checks again every half tick: here
    before every letter, and the stop comes while letter 2 is accepted."""
    from accounts.services import tenant_suspend
    from servers.models import RestReason, SmtpServer, TenantRest

    settings.DISPATCH_TICK = 0

    def act(mailing_pk: int, server_pk: int) -> None:
        later = timezone.now() + timedelta(hours=1)
        if stop in ("pause", "cancel"):
            services.transition(mailing=Mailing.objects.get(pk=mailing_pk), action=stop)
        elif stop == "suspend tenant":
            tenant_suspend(tenant=tenant_a)
        elif stop == "disable server":
            SmtpServer.objects.filter(pk=server_pk).update(enabled=False)
        elif stop == "server failing":
            SmtpServer.objects.filter(pk=server_pk).update(health=Health.FAILING)
        elif stop == "server resting":
            SmtpServer.objects.filter(pk=server_pk).update(backoff_until=later)
        elif stop.startswith("tenant"):
            blocked = stop == "tenant blocked"
            until = None if blocked else later
            TenantRest.objects.create(
                server_id=server_pk, tenant=tenant_a, until=until, blocked=blocked, reason=RestReason.REFUSALS
            )
        else:
            SmtpServer.objects.filter(pk=server_pk).update(port=25)  # behind the forms' back
        connection.close()  # this thread's own connection

    class StoppingSink(SinkHandler):
        async def handle_DATA(self, server, session, envelope):
            reply = await super().handle_DATA(server, session, envelope)
            if len(self.received) == 2:
                await asyncio.to_thread(act, mailing.pk, smtp.pk)
            return reply

    handler = StoppingSink()
    with smtp_server(handler=handler) as (controller, _):
        smtp = make_server(tenant_a, port=controller.port)
        contact_list = make_list(tenant_a, "L", [f"r{i:03d}@x.test" for i in range(6)])
        mailing = Mailing(tenant=tenant_a, name="m", template=make_template(tenant_a))
        services.mailing_save(mailing=mailing, lists=[contact_list], servers=[smtp])
        dispatch.hold_chains(mailing.pk, until=timezone.now() + timedelta(hours=1))  # this test sends, not a kick
        services.mailing_start(mailing=mailing)
        dispatch.run_mailing(mailing_id=mailing.pk)
        dispatch.run_mailing(mailing_id=mailing.pk)
    assert len(handler.received) == 2
    statuses = sorted(Letter.objects.filter(mailing=mailing).values_list("status", flat=True))
    assert statuses == [L.QUEUED] * 4 + [L.SENT] * 2


@pytest.mark.parametrize("pipelining", [False, True])
def test_a_server_that_offers_pipelining_gets_mail_rcpt_and_data_in_one_write_the_next_with_the_final_dot(
    tenant_a, monkeypatch, pipelining
):
    from servers.netguard import PinnedSMTP

    writes: list[bytes] = []
    send = PinnedSMTP.send  # every write goes through it, under the deadline

    def recording(self, s):
        writes.append(s.encode() if isinstance(s, str) else s)
        return send(self, s)

    monkeypatch.setattr(PinnedSMTP, "send", recording)
    handler = PipeliningSink() if pipelining else SinkHandler()
    with smtp_server(handler=handler) as (controller, _):
        mailing = start_mailing(tenant_a, [make_server(tenant_a, port=controller.port)], 3)
        assert run_until_settled(mailing, timezone.now()) == "done"
    assert len(handler.received) == 3
    carriers = [w for w in writes if b"MAIL FROM:" in w]
    if not pipelining:  # one command a write, each waiting for its reply
        assert carriers == [w for w in writes if w.startswith(b"MAIL FROM:") and w.count(b"\r\n") == 1]
        assert len(carriers) == 3
        return
    # MAIL, RCPT and DATA in one write; the second and third letters' with
    # the final dot of the letter before (RFC 2920 §3.1): one round trip a
    # letter. The last dot carries nothing.
    assert len(carriers) == 3
    assert carriers[0].startswith(b"MAIL FROM:")
    for write in [carriers[0], *carriers[1:]]:
        assert write.endswith(b"\r\nDATA\r\n") and write.count(b"MAIL FROM:") == write.count(b"RCPT TO:") == 1
    assert all(b"\r\n.\r\nMAIL FROM:" in w for w in carriers[1:])
    dots = [w for w in writes if w.endswith(b"\r\n.\r\n")]
    assert len(dots) == 1 and b"MAIL FROM:" not in dots[0]


class RefusesBsContent(PipeliningSink):
    """Refuses b's final dot; counts RSETs and connections."""

    rsets = 0
    ehlos = 0

    async def handle_DATA(self, server, session, envelope):
        if envelope.rcpt_tos[0].startswith("b@"):
            return "554 5.7.1 Message content rejected"
        return await super().handle_DATA(server, session, envelope)

    async def handle_RSET(self, server, session, envelope):
        self.rsets += 1
        return "250 OK"

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        self.ehlos += 1
        return await super().handle_EHLO(server, session, envelope, hostname, responses)


def test_a_refused_final_dot_with_the_next_envelope_behind_it_needs_no_rset(tenant_a):
    """The next letter's envelope went with b's final dot: b's refusal ended
    its transaction (RFC 5321 §4.1.1.4), so no RSET follows (after the next
    letter's DATA it would be a line of that letter), and c goes on the
    same connection, its envelope's replies read in its turn."""
    handler = RefusesBsContent()
    with smtp_server(handler=handler) as (controller, _):
        server = make_server(tenant_a, port=controller.port)
        contact_list = make_list(tenant_a, "L", ["a@x.test", "b@x.test", "c@x.test"])
        mailing = Mailing(tenant=tenant_a, name="m", template=make_template(tenant_a))
        services.mailing_save(mailing=mailing, lists=[contact_list], servers=[server])
        services.mailing_start(mailing=mailing)
        assert run_until_settled(mailing, timezone.now()) == "done"
    letters = dict(Letter.objects.filter(mailing=mailing).values_list("email", "last_reply"))
    assert letters["b@x.test"] == "554 5.7.1 Message content rejected"
    assert [r.rcpt_tos for r in handler.received] == [["a@x.test"], ["c@x.test"]]
    assert (handler.rsets, handler.ehlos) == (0, 1)


@pytest.mark.parametrize(
    ("max_connections", "chains", "letters", "claimed"),
    [
        (2, 2, 60, [30, 30, 0]),
        (2, 2, 120, [50, 50, 20]),
        (1, 2, 60, [50, 10]),
        (4, 3, 90, [30, 30, 30, 0]),
        (4, 3, 60, [30, 30, 0]),
        (2, 2, 49, [49, 0]),
        (2, 2, 20, [20, 0]),
    ],
)
def test_the_last_letters_are_shared_between_the_conversations_a_server_allows(
    tenant_a, settings, max_connections, chains, letters, claimed
):
    """With fewer letters left than the chains could take at once, a claim
    takes its share, so the last 60 go 30 and 30 over two connections
    rather than 50 over one and 10 over another (at 100 ms a letter, half
    the time), and the last chain to start takes all that is left (the
    claims before it are still being sent). A conversation gets at least
    SMALLEST_SHARE (25) letters, or it costs more than it saves: the last
    49 or 20 go over one connection."""
    assert dispatch.claims.SMALLEST_SHARE == 25
    settings.DISPATCH_CHAINS = chains
    server = make_server(tenant_a, max_connections=max_connections)
    mailing = start_mailing(tenant_a, [server], letters)
    now = timezone.now()
    got = [len(dispatch.claim(mailing, server, share(mailing, server, 50, now=now), now=now)) for _ in claimed]
    assert got == claimed


@pytest.mark.parametrize(
    ("chains", "letters", "running", "queued"),
    [(2, 20, [], [0]), (2, 49, [], [0]), (2, 50, [], [0, 1]), (3, 1000, [], [0, 1, 2]), (2, 60, [0], [1]),
     (2, 20, [0], []), (1, 500, [], [0]), (2, 0, [], [0])],
)  # fmt: skip
def test_a_start_and_a_tick_queue_as_many_chains_as_the_letters_due_fill(
    tenant_a, settings, chains, letters, running, queued
):
    """A chain a conversation's worth of letters (SMALLEST_SHARE): a
    20-letter mailing gets one task and one connection, not a second pair
    that would carry nothing; a chain already running counts; a mailing with
    nothing due still gets one, which settles it."""
    settings.DISPATCH_CHAINS = chains
    mailing = start_mailing(tenant_a, [make_server(tenant_a, max_connections=3)], letters or 3)
    if not letters:
        Letter.objects.filter(mailing=mailing).update(status=Letter.Status.SENT)
    now = timezone.now()
    for slot in running:
        DispatchChain.objects.create(mailing=mailing, slot=slot, until=now + timedelta(minutes=1))
    assert dispatch.needed_chain_slots(mailing.pk, now=now) == queued
    assert dispatch.needed_chain_slots(mailing.pk, now=now) == []  # now taken


CYRILLIC = re.compile("[А-Яа-яЁё]")


def test_a_failing_servers_diagnosis_is_written_in_its_organisations_language(tenant_a):
    """The dispatcher runs in a worker with no language: a Russian
    organisation read why its server fails, and how to fix it, in English."""
    tenant_a.default_language = "ru"
    tenant_a.save(update_fields=["default_language"])
    with smtp_server() as (c1, _), smtp_server() as (c2, _):
        broken = make_server(tenant_a, name="Broken", port=c1.port, password="wrong")
        good = make_server(tenant_a, name="Good", port=c2.port, priority=1)
        mailing = start_mailing(tenant_a, [broken, good], 2)
        with translation.override("en"):
            assert run_until_settled(mailing, timezone.now()) == "done"
    broken.refresh_from_db()
    assert broken.health == Health.FAILING and "535" in broken.health_error
    assert CYRILLIC.search(broken.health_error) and CYRILLIC.search(broken.health_hint), broken.health_error


@pytest.mark.django_db(transaction=True)
def test_a_pause_seen_with_the_next_envelope_on_the_wire_abandons_it_counted_once(tenant_a, settings):
    """The half-tick check stops the batch after letter 2, whose final dot
    carried letter 3's MAIL, RCPT and DATA: letter 3 goes back untried and
    undelivered, and the limits count it (its DATA was answered 354)."""
    from mailing import limits

    settings.DISPATCH_TICK = 0

    def pause(mailing_pk: int) -> None:
        services.transition(mailing=Mailing.objects.get(pk=mailing_pk), action="pause")
        connection.close()

    class PausingSink(PipeliningSink):
        async def handle_DATA(self, server, session, envelope):
            reply = await super().handle_DATA(server, session, envelope)
            if len(self.received) == 2:
                await asyncio.to_thread(pause, mailing.pk)
            return reply

    handler = PausingSink()
    now = timezone.now()
    with smtp_server(handler=handler) as (controller, _):
        smtp = make_server(tenant_a, port=controller.port, max_per_day=100)
        contact_list = make_list(tenant_a, "L", [f"r{i:03d}@x.test" for i in range(5)])
        mailing = Mailing(tenant=tenant_a, name="m", template=make_template(tenant_a))
        services.mailing_save(mailing=mailing, lists=[contact_list], servers=[smtp])
        dispatch.hold_chains(mailing.pk, until=now + timedelta(hours=1))  # this test sends, not a kick
        services.mailing_start(mailing=mailing)
        dispatch.run_mailing(mailing_id=mailing.pk, now=now)
    assert len(handler.received) == 2
    letters = Letter.objects.filter(mailing=mailing).order_by("email")
    assert [(le.status, le.attempts) for le in letters] == [(L.SENT, 1)] * 2 + [(L.QUEUED, 0)] * 3
    assert limits.window_usage([smtp], tenant_a, now)[smtp.pk].day_used == 3
