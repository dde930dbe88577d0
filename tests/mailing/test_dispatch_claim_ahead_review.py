"""An outside review of the claim ahead (mailing.dispatch.ahead, 90c7705).

- A batch going on with its next letters must not be stopped at the chunk
  boundary by the room it counted for its first letters only (a limited
  server, checked every half tick), inline (SQLite) and on the claimer's
  thread (PostgreSQL); a limit lowered meanwhile still stops it.
- A dead worker's expired claim, shared by its chunks, counts one attempt
  and for the letter the worker was on, whatever the chunks' leases (the
  next ones end a moment later) and ids (due retries have lower ones).
- The next letters keep the mailing's order of servers where a server
  before only waits for its next minute (run waits for it, it does not
  pass it over). A max per minute given meanwhile: test_dispatch_claim_ahead.
- A claimer that raises gives its room back; the chain sends the rest."""

import asyncio
import threading
from datetime import timedelta

import pytest
from django.db import OperationalError
from django.utils import timezone

from mailing import dispatch, limits
from mailing.dispatch import ahead
from mailing.dispatch import batch as batch_module
from mailing.dispatch.claims import claim
from mailing.models import Letter
from tests.servers.factories import make_server
from tests.services import require_postgresql
from tests.smtp_servers import smtp_server

from .test_dispatch_claim_ahead import Connections, claiming_threads, emails, used
from .test_dispatch_real_world import start

L = Letter.Status


class Slow(Connections):
    """Takes its time over each letter, as a real server does."""

    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(0.1)
        return await super().handle_DATA(server, session, envelope)


def test_a_limited_servers_check_does_not_stop_the_batch_at_its_next_letters(tenant_a, settings):
    """On a server with a limit the batch checks its room every half tick.
    A check made before the next letters join counts only the first
    letters: it must not stop the batch at its next ones (which were
    claimed, given a new connection and then given back unsent)."""
    # Letters of 0.1 s, a check every 0.25 s: one at the fourth letter,
    # none as the next letters join at the sixth.
    settings.DISPATCH_BATCH, settings.DISPATCH_CHAINS, settings.DISPATCH_TICK = 5, 1, 0.5
    handler = Slow()
    with smtp_server(handler=handler) as (controller, _):
        server = make_server(tenant_a, port=controller.port, max_per_hour=100)
        mailing = start(tenant_a, [server], emails(12))
        assert dispatch.run_mailing(mailing_id=mailing.pk) == "done"
    assert Letter.objects.filter(mailing=mailing, status=L.SENT).count() == 12
    assert sorted(handler.by_connection.values()) == [2, 5, 5]
    assert used(server, tenant_a) == 12


def test_a_limit_lowered_once_the_next_letters_are_claimed_still_stops_them(tenant_a, settings, monkeypatch):
    """The check still stops the next letters within the room left: the
    hour's limit lowered to 7 once they are claimed (their room reserved
    under 100), the batch stops at 7."""
    settings.DISPATCH_BATCH, settings.DISPATCH_CHAINS, settings.DISPATCH_TICK = 5, 1, 0.5
    real = batch_module.reserve_and_claim

    def claim_then_lower(mailing, server, *args, **kwargs):
        chunk = real(mailing, server, *args, **kwargs)
        type(server).objects.filter(pk=server.pk).update(max_per_hour=7)
        return chunk

    monkeypatch.setattr(batch_module, "reserve_and_claim", claim_then_lower)
    with smtp_server(handler=Slow()) as (controller, _):
        server = make_server(tenant_a, port=controller.port, max_per_hour=100)
        mailing = start(tenant_a, [server], emails(12))
        dispatch.run_mailing(mailing_id=mailing.pk)
    assert Letter.objects.filter(mailing=mailing, status=L.SENT).count() == 7
    assert used(server, tenant_a) == 7
    assert Letter.objects.filter(mailing=mailing, status=L.QUEUED, claim_token=None).count() == 5


def _dead_batch(tenant_a, *, next_are_older: bool):
    """A batch claimed 5 letters, then its next 5 a second later with its
    token; it sent two and died on its third."""
    server = make_server(tenant_a)
    mailing = start(tenant_a, [server], emails(10))
    now = timezone.now()
    if next_are_older:
        # Retries come due: the claim takes the queued letters first, so the
        # next letters have lower ids than the batch's first ones.
        Letter.objects.filter(mailing=mailing, email__in=emails(5)).update(
            status=L.DEFERRED, attempts=1, next_attempt_at=now - timedelta(minutes=1)
        )
    own = claim(mailing, server, 5, now=now)
    more = claim(mailing, server, 5, now=now + timedelta(seconds=1), token=own[0].claim_token)
    assert {letter.claim_token for letter in own + more} == {own[0].claim_token}
    Letter.objects.filter(pk__in=[own[0].pk, own[1].pk]).update(status=L.SENT, claim_token=None, lease_until=None)
    return mailing, now, own, more


def attempts(mailing) -> dict[str, int]:
    return dict(Letter.objects.filter(mailing=mailing).values_list("email", "attempts"))


def test_a_dead_workers_next_letters_expiring_later_count_no_second_attempt(tenant_a):
    """The next letters' lease ends a moment after the first ones': a sweep
    between the two must not leave them to a second sweep that counts an
    attempt for the first of them, never begun."""
    mailing, now, own, more = _dead_batch(tenant_a, next_are_older=False)
    before = attempts(mailing)
    dispatch.requeue_expired_leases(now=now + dispatch.LEASE + timedelta(milliseconds=500))
    # The whole claim is back at the first sweep, the next letters uncounted.
    back = Letter.objects.filter(pk__in=[letter.pk for letter in more], status=L.QUEUED, claim_token=None)
    assert back.count() == len(more)
    dispatch.requeue_expired_leases(now=now + dispatch.LEASE + timedelta(seconds=2))
    after = attempts(mailing)
    assert after[own[2].email] == before[own[2].email] + 1
    assert sum(after.values()) == sum(before.values()) + 1
    assert not Letter.objects.filter(mailing=mailing, status=L.SENDING).exists()


def test_a_dead_workers_attempt_goes_to_the_letter_it_was_on_not_to_older_next_letters(tenant_a):
    """The next letters may have lower ids than the batch's first ones (due
    retries, letters another chain gave back): the attempt is still for the
    letter the worker was on, the first of its first letters still sending."""
    mailing, now, own, more = _dead_batch(tenant_a, next_are_older=True)
    assert max(letter.pk for letter in more) < own[0].pk
    before = attempts(mailing)
    dispatch.requeue_expired_leases(now=now + dispatch.LEASE + timedelta(seconds=2))
    after = attempts(mailing)
    assert after[own[2].email] == before[own[2].email] + 1
    assert sum(after.values()) == sum(before.values()) + 1


def test_a_server_before_that_only_waits_for_its_minute_stops_the_next_letters(tenant_a):
    """run waits for a server whose minute only is spent ("paced"), never
    passing it over for the next in the order: the claim ahead through the
    next server must not either."""
    first = make_server(tenant_a, name="First", max_per_minute=5)
    second = make_server(tenant_a, name="Second", priority=1)
    mailing = start(tenant_a, [first, second], emails(3))
    now = timezone.now()
    limits.reserve(server=first, tenant=tenant_a, wanted=5, now=now)
    assert dispatch.batch.only_paced(first, mailing, now)
    assert not ahead.first_with_room(mailing, second, now)


# On PostgreSQL, with the dispatch worker's threads.


@pytest.mark.django_db(transaction=True)
def test_on_a_thread_a_limited_servers_check_does_not_stop_the_batch_at_its_next_letters(
    tenant_a, settings, monkeypatch
):
    """The first test's case where the next letters are claimed on the
    claimer's thread (the production worker): one batch sends them all (the
    chain's next batches took over, each after a connection opened for
    nothing and letters given back)."""
    require_postgresql()
    settings.DISPATCH_RECORD_THREAD, settings.DISPATCH_BATCH, settings.DISPATCH_CHAINS = True, 5, 1
    settings.DISPATCH_TICK = 0.5
    threads = claiming_threads(monkeypatch)
    handler = Slow()
    with smtp_server(handler=handler) as (controller, _):
        server = make_server(tenant_a, port=controller.port, max_per_hour=100)
        mailing = start(tenant_a, [server], emails(12))  # its chain runs as the start commits (eager Celery)
        dispatch.run_mailing(mailing_id=mailing.pk)
    assert threads.count("MainThread") == 1  # one batch: the next letters were the claimer's
    assert Letter.objects.filter(mailing=mailing, status=L.SENT).count() == 12
    assert sorted(handler.by_connection.values()) == [2, 5, 5]
    assert used(server, tenant_a) == 12


@pytest.mark.django_db(transaction=True)
def test_a_claimer_that_fails_gives_its_room_back_and_the_batch_ends_with_its_own(tenant_a, settings, monkeypatch):
    """The claim ahead raising once its room is reserved (the database gone
    a moment): the batch sends its own letters, the room goes back, and
    the chain's next batch claims the rest."""
    require_postgresql()
    settings.DISPATCH_RECORD_THREAD, settings.DISPATCH_BATCH, settings.DISPATCH_CHAINS = True, 5, 1
    real, failed = ahead.claim, []

    def claim(*args, **kwargs):
        if threading.current_thread().name == "letter-claimer" and not failed:
            failed.append(True)
            raise OperationalError("server closed the connection unexpectedly")
        return real(*args, **kwargs)

    monkeypatch.setattr(ahead, "claim", claim)
    with smtp_server() as (controller, sink):
        server = make_server(tenant_a, port=controller.port, max_per_hour=100)
        mailing = start(tenant_a, [server], emails(12))  # its chain runs as the start commits (eager Celery)
        while dispatch.run_mailing(mailing_id=mailing.pk) == "more":
            pass
    assert failed
    assert len(sink.received) == 12
    assert Letter.objects.filter(mailing=mailing, status=L.SENT).count() == 12
    assert used(server, tenant_a) == 12
