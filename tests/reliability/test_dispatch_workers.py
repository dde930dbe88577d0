"""The dispatcher in real Celery worker processes on PostgreSQL and Redis:
limits hold across workers, no letter goes out twice, and a killed worker's
letters are delivered after the lease (at most one duplicate per killed
connection)."""

import os
import signal
from collections import Counter
from contextlib import ExitStack
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from mailing import dispatch
from mailing.models import Letter, Mailing
from tests.servers.factories import make_server
from tests.services import require
from tests.smtp_servers import smtp_server

from .workers import SlowSink, chains, message_ids, redis_broker, start_mailing, start_workers, stop, wait_for

pytestmark = pytest.mark.django_db(transaction=True)
L = Letter.Status


@pytest.fixture
def broker():
    require("PostgreSQL", connection.vendor == "postgresql", "set DATABASE_URL=postgres://...")
    return redis_broker(13)


def test_four_workers_never_overshoot_a_limit_nor_send_twice(tenant_a, broker):
    with ExitStack() as stack:
        sinks = [stack.enter_context(smtp_server()) for _ in range(3)]
        servers = [
            make_server(tenant_a, name=f"S{i}", port=c.port, max_per_hour=limit, priority=i, max_connections=2)
            for i, ((c, _), limit) in enumerate(zip(sinks, [10, 15, 5], strict=True))
        ]
        mailing = start_mailing(tenant_a, servers, 60)
        workers = start_workers(4, broker)
        try:
            chains(broker, mailing, 4)
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
