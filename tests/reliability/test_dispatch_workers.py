"""The dispatcher in real Celery worker processes on PostgreSQL and Redis:
limits hold across workers, no letter goes out twice, and a killed worker's
letters are delivered after the lease (at most one duplicate per killed
connection); pausing, resuming and cancelling while it sends never resend."""

import os
import signal
import time
from collections import Counter
from contextlib import ExitStack
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from mailing import dispatch
from mailing import mailings as services
from mailing.models import Letter, Mailing
from tests.servers.factories import make_server
from tests.services import hold_slots, require_postgresql
from tests.smtp_servers import smtp_server

from .workers import (
    SlowSink,
    chains,
    message_id,
    message_ids,
    redis_broker,
    start_mailing,
    start_workers,
    stop,
    wait_for,
)

pytestmark = pytest.mark.django_db(transaction=True)
L = Letter.Status


@pytest.fixture
def broker():
    require_postgresql()
    return redis_broker(13)


@pytest.mark.parametrize(("processes", "conversations"), [(4, 4), (1, 8)], ids=["4 processes", "1 process, 8 threads"])
def test_workers_never_overshoot_a_limit_nor_send_twice(tenant_a, broker, processes, conversations):
    """Whether the conversations are threads of one process or spread over
    processes, each server gets exactly its limit, and no letter twice."""
    with ExitStack() as stack:
        sinks = [stack.enter_context(smtp_server()) for _ in range(3)]
        servers = [
            make_server(tenant_a, name=f"S{i}", port=c.port, max_per_hour=limit, priority=i, max_connections=2)
            for i, ((c, _), limit) in enumerate(zip(sinks, [10, 15, 5], strict=True))
        ]
        mailing = start_mailing(tenant_a, servers, 60)
        workers = start_workers(processes, broker)
        try:
            chains(broker, mailing, conversations)
            wait_for(lambda: Mailing.objects.get(pk=mailing.pk).status == Mailing.Status.WAITING)
        finally:
            stop(workers)
        handlers = [h for _, h in sinks]
        assert [len(h.received) for h in handlers] == [10, 15, 5]
    ids = message_ids(*handlers)
    assert len(ids) == len(set(ids)) == 30
    sent = Letter.objects.filter(mailing=mailing, status=L.SENT)
    assert sent.count() == 30
    assert {f"<{pk}@mail.test>" for pk in sent.values_list("public_id", flat=True)} == set(ids)
    assert Letter.objects.filter(mailing=mailing, status=L.QUEUED).count() == 30
    mailing.refresh_from_db()
    assert mailing.resume_at > timezone.now() + timedelta(minutes=55)


def test_a_killed_workers_letters_are_delivered_after_the_lease(tenant_a, broker):
    handler = SlowSink()
    with smtp_server(handler=handler) as (controller, _):
        server = make_server(tenant_a, port=controller.port)
        mailing = start_mailing(tenant_a, [server], 12)
        (worker,) = started = start_workers(1, broker)
        try:
            chains(broker, mailing, 1)
            wait_for(lambda: len(handler.received) >= 2)
            os.killpg(worker.pid, signal.SIGKILL)  # in the middle of a batch
            worker.wait(10)
            assert Letter.objects.filter(mailing=mailing, status=L.SENDING).exists()
            # After the lease the scheduler gives the letters back.
            assert dispatch.requeue_expired_leases(now=timezone.now() + timedelta(minutes=11)) > 0
            started += start_workers(1, broker)
            chains(broker, mailing, 1)
            wait_for(lambda: not Letter.objects.filter(mailing=mailing).exclude(status=L.SENT).exists())
        finally:
            stop(started)
    ids = Counter(message_ids(handler))
    letters = Letter.objects.filter(mailing=mailing).values_list("public_id", flat=True)
    assert set(ids) == {f"<{pk}@mail.test>" for pk in letters}
    duplicates = sum(n - 1 for n in ids.values())
    assert duplicates <= 1, ids  # one connection was killed
    print(f"kill test: {len(ids)} letters delivered, {duplicates} duplicate(s) after one killed connection")


def test_pause_resume_and_cancel_while_a_worker_sends_never_resend(tenant_a, broker):
    """A real worker sends; the tenant pauses, resumes and cancels in the
    middle. Pausing stops the sending at the end of the batch, resuming goes
    on where it stopped, cancelling stops it for good; no letter recorded as
    sent goes out again, and every letter the sink got is recorded sent."""
    handler = SlowSink(delay=0.05)
    sent = Letter.objects.filter(status=L.SENT)
    with smtp_server(handler=handler) as (controller, _):
        server = make_server(tenant_a, port=controller.port)
        mailing = start_mailing(tenant_a, [server], 40)
        letters = Letter.objects.filter(mailing=mailing)
        (worker,) = workers = start_workers(1, broker)
        try:
            chains(broker, mailing, 1)
            wait_for(lambda: len(handler.received) >= 6, what="the first letters")
            services.transition(mailing=Mailing.objects.get(pk=mailing.pk), action="pause")
            wait_for(lambda: not letters.filter(status=L.SENDING).exists(), what="the batch to end")
            paused_at = len(handler.received)
            time.sleep(1)  # the worker is idle now: nothing more goes out
            assert len(handler.received) == paused_at == sent.count() < 40

            services.transition(mailing=Mailing.objects.get(pk=mailing.pk), action="resume")
            chains(broker, mailing, 1)  # the chain slots are held by the test (start_mailing)
            wait_for(lambda: len(handler.received) >= paused_at + 6, what="sending to go on")
            services.transition(mailing=Mailing.objects.get(pk=mailing.pk), action="cancel")
            wait_for(lambda: not letters.filter(status=L.SENDING).exists(), what="the batch to end")
            cancelled_at = len(handler.received)
            chains(broker, mailing, 1)  # a chain that still runs finds the mailing cancelled
            time.sleep(1)
            assert worker.poll() is None
        finally:
            stop(workers)
    ids = message_ids(handler)
    assert len(handler.received) == cancelled_at < 40
    assert len(ids) == len(set(ids))  # nothing twice
    assert set(ids) == {message_id(pk) for pk in sent.filter(mailing=mailing).values_list("public_id", flat=True)}
    assert letters.filter(status=L.QUEUED).count() == 40 - cancelled_at
    print(f"pause/resume/cancel: {paused_at} sent before the pause, {cancelled_at} before the cancel, 0 twice")


def test_a_busy_first_server_is_waited_for_by_a_real_worker_never_skipped(tenant_a, broker):
    """Both connection slots of the first server are taken (other mailings'
    chains): a real worker's chain comes back a second later, through
    Celery's countdown, without holding the worker, and sends everything
    through the first server once a slot frees; the second gets nothing."""
    with smtp_server() as (c1, first_sink), smtp_server() as (c2, second_sink):
        first = make_server(tenant_a, name="First", port=c1.port, max_per_hour=100, max_connections=2)
        second = make_server(tenant_a, name="Second", port=c2.port, priority=1)
        mailing = start_mailing(tenant_a, [first, second], 6)
        holder = hold_slots(first, 2)
        workers = start_workers(1, broker)
        try:
            chains(broker, mailing, 1)
            time.sleep(4)  # the chain retries every second meanwhile
            assert (first_sink.received, second_sink.received) == ([], [])
            assert Mailing.objects.get(pk=mailing.pk).status == Mailing.Status.ACTIVE
            holder.close()  # the other chains are done: the slots are free
            wait_for(lambda: Mailing.objects.get(pk=mailing.pk).status == Mailing.Status.COMPLETED)
        finally:
            stop(workers)
    assert (len(first_sink.received), len(second_sink.received)) == (6, 0)


def test_a_worker_of_many_conversations_holds_a_few_database_sessions(tenant_a, broker):
    """Eight conversations in one worker process share its pool of two
    sessions (plus the one holding the connection slots, and the two lanes'
    that record the letters sent): a thread gives its session back while
    it waits on the network."""
    with smtp_server(handler=SlowSink(delay=0.05)) as (controller, handler):
        server = make_server(tenant_a, port=controller.port, max_connections=8)
        mailing = start_mailing(tenant_a, [server], 80)
        others = database_sessions()
        workers = start_workers(1, broker, batch=5, DISPATCH_DB_SESSIONS="2")
        most = 0
        try:
            chains(broker, mailing, 8)
            sent, deadline = Letter.objects.filter(mailing=mailing, status=L.SENT), time.monotonic() + 60
            while sent.count() < 80:
                assert time.monotonic() < deadline, "conversations waiting for a session hold up sending"
                most = max(most, database_sessions() - others)
                time.sleep(0.02)
        finally:
            stop(workers)
    assert len(set(message_ids(handler))) == 80
    assert 0 < most <= 5


def test_a_dispatch_worker_opens_its_database_pool_when_it_starts(broker):
    """Before any task: the first letters do not wait for the pool, its
    imports and its first session (config.celery.open_database_pool)."""
    others = database_sessions()
    workers = start_workers(1, broker)
    try:
        deadline = time.monotonic() + 30
        while database_sessions() == others:
            assert workers[0].poll() is None, "the worker stopped"
            assert time.monotonic() < deadline, "no session opened before the first task"
            time.sleep(0.05)
        time.sleep(1)
        assert 1 <= database_sessions() - others <= 2  # the pool's, no task given: min_size, grown once at the start
    finally:
        stop(workers)


def database_sessions() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        return cursor.fetchone()[0]
