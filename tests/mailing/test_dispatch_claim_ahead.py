"""A batch goes on over a new connection with its next letters, claimed
while its last ones go (mailing.dispatch.ahead): only where the chain's
next batch would send them the same way (the mailing running, the server
first with room in its order, not a tenant's turn on the platform server,
not a minute's room), with their room reserved and given back exactly as a
batch's own, and on PostgreSQL on a thread of its own."""

import threading
import time
from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone

from mailing import dispatch, limits
from mailing.dispatch import ahead
from mailing.dispatch import batch as batch_module
from mailing.dispatch.claims import claim
from mailing.models import Letter, Mailing
from mailing.sink import SinkHandler
from servers.models import RestReason, SmtpServer
from tests.servers.factories import make_server
from tests.services import require_postgresql
from tests.smtp_servers import smtp_server

from .test_dispatch_real_world import start

L = Letter.Status


def used(server, tenant) -> int:
    return limits.window_usage([server], tenant)[server.pk].day_used


class Connections(SinkHandler):
    """A sink that knows which connection brought each letter."""

    def __init__(self) -> None:
        super().__init__()
        self.by_connection: Counter = Counter()

    async def handle_DATA(self, server, session, envelope):
        # A number of its own for each connection's session (an id() is
        # used again once the session before it is gone).
        if not hasattr(session, "number"):
            session.number = len(self.by_connection)
        self.by_connection[session.number] += 1
        return await super().handle_DATA(server, session, envelope)


def claiming_threads(monkeypatch) -> list[str]:
    """The name of the thread of every claim from here on."""
    threads, real = [], ahead.claim

    def spy(*args, **kwargs):
        threads.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(ahead, "claim", spy)
    return threads


def emails(count: int) -> list[str]:
    return [f"r{i:02d}@x.test" for i in range(count)]


def test_a_batch_goes_on_with_its_next_letters_one_claim_a_connection(tenant_a, settings):
    settings.DISPATCH_BATCH, settings.DISPATCH_CHAINS = 5, 1
    handler = Connections()
    with smtp_server(handler=handler) as (controller, _):
        server = make_server(tenant_a, port=controller.port, max_per_hour=100)
        mailing = start(tenant_a, [server], emails(12))
        assert dispatch.run_mailing(mailing_id=mailing.pk) == "done"  # one batch, 12 letters
    assert Letter.objects.filter(mailing=mailing, status=L.SENT).count() == 12
    # Each connection carries one claim's letters, as a batch's did.
    assert sorted(handler.by_connection.values()) == [2, 5, 5]
    assert used(server, tenant_a) == 12  # every claim's room, exactly


def test_a_claim_of_fewer_letters_than_a_batch_asks_for_no_more(tenant_a, settings, monkeypatch):
    """A small mailing's batch took all there was: no checks, reservation
    or claim for next letters there cannot be (with 200 mailings of 20
    letters, three statements a batch for nothing)."""
    settings.DISPATCH_BATCH, settings.DISPATCH_CHAINS = 10, 1
    asked = []
    monkeypatch.setattr(batch_module.Batch, "_claim_more", lambda batch, into: asked.append(batch))
    with smtp_server() as (controller, sink):
        server = make_server(tenant_a, port=controller.port, max_per_hour=100)
        mailing = start(tenant_a, [server], emails(8))
        assert dispatch.run_mailing(mailing_id=mailing.pk) == "done"
    assert len(sink.received) == 8
    assert asked == []


def test_a_batch_stops_going_on_when_its_chains_slice_is_spent(tenant_a, settings):
    settings.DISPATCH_BATCH, settings.DISPATCH_CHAINS, settings.DISPATCH_SLICE = 5, 1, 0
    with smtp_server() as (controller, sink):
        server = make_server(tenant_a, port=controller.port, max_per_hour=100)
        mailing = start(tenant_a, [server], emails(12))
        assert dispatch.run_mailing(mailing_id=mailing.pk) == "more"
    assert len(sink.received) == 5
    assert Letter.objects.filter(mailing=mailing, status=L.QUEUED).count() == 7
    assert used(server, tenant_a) == 5


@pytest.mark.parametrize("kind", ["platform", "max per minute"])
def test_a_turn_or_a_minutes_room_does_not_go_on(tenant_a, settings, kind):
    settings.DISPATCH_BATCH, settings.DISPATCH_CHAINS = 5, 1
    with smtp_server() as (controller, sink):
        if kind == "platform":
            server = make_server(None, name="Platform", port=controller.port, tenant_daily_quota=1000)
        else:
            server = make_server(tenant_a, port=controller.port, max_per_minute=100)
        mailing = start(tenant_a, [server], emails(12))
        assert dispatch.run_mailing(mailing_id=mailing.pk) == "more"
    assert len(sink.received) == 5


def test_the_next_letters_keep_the_mailings_order_of_servers(tenant_a, settings):
    """The first server's hour is spent after 5: its batch does not go on
    (no room), the chain's next batch takes the second server, and that
    one goes on, as nothing before it has room."""
    settings.DISPATCH_BATCH, settings.DISPATCH_CHAINS = 5, 1
    with smtp_server() as (controller, _):
        first = make_server(tenant_a, name="First", port=controller.port, max_per_hour=5)
        second = make_server(tenant_a, name="Second", port=controller.port, priority=1)
        mailing = start(tenant_a, [first, second], emails(12))
        assert dispatch.run_mailing(mailing_id=mailing.pk) == "more"
        assert dispatch.run_mailing(mailing_id=mailing.pk) == "done"
    by_server = Counter(Letter.objects.filter(mailing=mailing, status=L.SENT).values_list("server_id", flat=True))
    assert by_server == {first.pk: 5, second.pk: 7}
    assert (used(first, tenant_a), used(second, tenant_a)) == (5, 7)


def test_a_server_before_with_room_stops_the_next_letters(tenant_a):
    """first_with_room, which the claim ahead asks: a server before this
    one in the mailing's order with room now takes the next batch; one
    resting, spent or disabled does not."""
    first = make_server(tenant_a, name="First", max_per_hour=5)
    second = make_server(tenant_a, name="Second", priority=1)
    mailing = start(tenant_a, [first, second], emails(3))
    now = timezone.now()
    assert ahead.first_with_room(mailing, first, now)
    assert not ahead.first_with_room(mailing, second, now)  # the first has room
    limits.reserve(server=first, tenant=tenant_a, wanted=5, now=now)
    assert ahead.first_with_room(mailing, second, now)  # spent
    first.backoff_until, first.rest_reason = now + timedelta(minutes=5), RestReason.CONNECTION
    first.save()
    assert ahead.first_with_room(mailing, second, now)  # resting
    second.enabled = False
    second.save()
    assert not ahead.first_with_room(mailing, second, now)  # not usable itself


@pytest.mark.parametrize("change", ["mailing paused", "max per minute given"])
def test_a_change_while_the_batch_runs_stops_its_next_letters(tenant_a, settings, monkeypatch, change):
    """The mailing paused while its batch runs, or its server given a max
    per minute (the next letters would hold a minute's room in a batch
    that does not keep to the minute, having had none when it began): the
    batch ends with its own letters (its check comes every half tick), and
    nothing more is claimed."""
    settings.DISPATCH_BATCH, settings.DISPATCH_CHAINS = 5, 1
    real = batch_module.Builder.wire

    def wire(builder, letter):
        if letter.email == "r02@x.test" and change == "mailing paused":
            Mailing.objects.filter(pk=letter.mailing_id).update(status=Mailing.Status.PAUSED)
        elif letter.email == "r02@x.test":
            SmtpServer.objects.filter(pk=letter.server_id).update(max_per_minute=100)
        return real(builder, letter)

    monkeypatch.setattr(batch_module.Builder, "wire", wire)
    with smtp_server() as (controller, sink):
        server = make_server(tenant_a, port=controller.port, max_per_hour=100)
        mailing = start(tenant_a, [server], emails(12))
        dispatch.run_mailing(mailing_id=mailing.pk)
    assert len(sink.received) == 5
    assert Letter.objects.filter(mailing=mailing, status=L.QUEUED, claim_token=None).count() == 7
    assert used(server, tenant_a) == 5


def test_a_dead_workers_claim_counts_an_attempt_for_the_letter_it_was_on_not_for_its_next_letters(tenant_a):
    """The next letters share the batch's token: when the worker dies on its
    third letter, that one counts an attempt, not the first of the letters
    claimed ahead, which it never began."""
    server = make_server(tenant_a)
    mailing = start(tenant_a, [server], emails(10))
    now = timezone.now()
    own = claim(mailing, server, 5, now=now)
    more = claim(mailing, server, 5, now=now, token=own[0].claim_token)
    assert {letter.claim_token for letter in own + more} == {own[0].claim_token}
    Letter.objects.filter(pk__in=[own[0].pk, own[1].pk]).update(status=L.SENT, claim_token=None, lease_until=None)
    dispatch.requeue_expired_leases(now=now + dispatch.LEASE + timedelta(seconds=1))
    attempts = dict(Letter.objects.filter(mailing=mailing).values_list("email", "attempts"))
    assert attempts[own[2].email] == 1
    assert sum(attempts.values()) == 1


# On PostgreSQL, with the dispatch worker's threads.


@pytest.mark.django_db(transaction=True)
def test_the_next_letters_are_claimed_on_a_thread_while_the_last_ones_go(tenant_a, settings, monkeypatch):
    require_postgresql()
    settings.DISPATCH_RECORD_THREAD, settings.DISPATCH_BATCH, settings.DISPATCH_CHAINS = True, 10, 1
    threads = claiming_threads(monkeypatch)
    handler = Connections()
    with smtp_server(handler=handler) as (controller, _):
        server = make_server(tenant_a, port=controller.port, max_per_hour=100)
        mailing = start(tenant_a, [server], emails(25))  # its chain runs as the start commits (eager Celery)
        assert dispatch.run_mailing(mailing_id=mailing.pk) == "idle"  # nothing left
    # The batch's own claim, then two on the claimer's thread: after the
    # third (5 letters, not a full claim) nothing more is asked.
    assert threads == ["MainThread", "letter-claimer", "letter-claimer"]
    assert sorted(handler.by_connection.values()) == [5, 10, 10]
    assert Letter.objects.filter(mailing=mailing, status=L.SENT).count() == 25
    assert used(server, tenant_a) == 25


class HangsUpOnTheThird(SinkHandler):
    """Says goodbye at the third RCPT, once `ready` is set."""

    def __init__(self, ready: threading.Event) -> None:
        super().__init__()
        self.ready, self.rcpts = ready, 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        self.rcpts += 1
        if self.rcpts == 3:
            self.ready.wait(10)
            return "421 4.3.2 Service shutting down"
        envelope.rcpt_tos.append(address)
        return "250 OK"


@pytest.mark.parametrize("first", ["claimed ahead", "given back"])
@pytest.mark.django_db(transaction=True)
def test_next_letters_of_a_batch_that_stops_go_back_with_their_room(tenant_a, settings, monkeypatch, first):
    """The server hangs up on the third letter (which goes back) after the
    next letters are claimed, or before: then the claim ahead takes that
    letter again, and it must not stay claimed by a batch that is over."""
    require_postgresql()
    settings.DISPATCH_RECORD_THREAD, settings.DISPATCH_BATCH, settings.DISPATCH_CHAINS = True, 10, 1
    asked, claimed, given_back = threading.Event(), threading.Event(), []
    real = ahead.claim

    def claim_ahead(*args, **kwargs):
        if threading.current_thread().name != "letter-claimer":
            return real(*args, **kwargs)
        asked.set()
        if first == "given back":
            for _ in range(100):  # until the third letter is back in the queue
                if Letter.objects.filter(email="r02@x.test", status=L.QUEUED).exists():
                    given_back.append(True)
                    break
                time.sleep(0.1)
        try:
            return real(*args, **kwargs)
        finally:
            claimed.set()

    monkeypatch.setattr(ahead, "claim", claim_ahead)
    # The server hangs up once the next letters are claimed, or once the
    # claimer is past its checks and about to claim: a hang-up before it got
    # there would rest the server, and no claim would come at all.
    ready = claimed if first == "claimed ahead" else asked
    with smtp_server(handler=HangsUpOnTheThird(ready)) as (controller, sink):
        server = make_server(tenant_a, port=controller.port, max_per_hour=100)
        mailing = start(tenant_a, [server], emails(30))  # its chain runs as the start commits (eager Celery)
    assert claimed.is_set()
    assert given_back == ([True] if first == "given back" else [])
    assert len(sink.received) == 2
    letters = Letter.objects.filter(mailing=mailing)
    assert letters.filter(status=L.SENT).count() == 2
    # The batch's own 8 and the 10 claimed ahead are back, unmarked.
    assert letters.filter(status=L.QUEUED, claim_token=None, server=None).count() == 28
    assert used(server, tenant_a) == 2  # only what reached DATA stays counted
