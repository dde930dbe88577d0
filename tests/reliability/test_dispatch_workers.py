"""The dispatcher in real Celery worker processes on PostgreSQL and Redis:
limits hold across workers, no letter goes out twice, and a killed worker's
letters are delivered after the lease (at most one duplicate per killed
connection)."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from contextlib import ExitStack
from datetime import timedelta

import pytest
from celery import Celery
from django.conf import settings
from django.db import connection
from django.utils import timezone

from mailing import dispatch
from mailing import mailings as services
from mailing.models import Letter, Mailing
from mailing.sink import SinkHandler
from tests.helpers import ROOT, database_url, production_env
from tests.mailing.builders import make_list, make_template
from tests.servers.factories import make_server
from tests.services import require, require_redis
from tests.smtp_servers import smtp_server

pytestmark = pytest.mark.django_db(transaction=True)
L = Letter.Status


@pytest.fixture
def broker():
    require("PostgreSQL", connection.vendor == "postgresql", "set DATABASE_URL=postgres://...")
    url = require_redis().rsplit("/", 1)[0] + "/13"
    import redis

    redis.Redis.from_url(url).flushdb()
    return url


def start_workers(count: int, broker_url: str) -> list[subprocess.Popen]:
    env = production_env(
        DEBUG="1",
        SECRET_KEY=settings.SECRET_KEY,  # the same key decrypts the servers' passwords
        DATABASE_URL=database_url(),
        CELERY_BROKER_URL=broker_url,
        SERVERS_ALLOW_PRIVATE_HOSTS="1",
        DISPATCH_BATCH="4",
    )
    cmd = [sys.executable, "-m", "celery", "-A", "config", "worker", "-P", "solo", "-l", "warning",
           "--without-gossip", "--without-mingle", "--without-heartbeat"]  # fmt: skip
    return [
        subprocess.Popen([*cmd, "-n", f"w{i}-{os.getpid()}@%h"], cwd=ROOT, env=env, start_new_session=True)
        for i in range(count)
    ]


def stop(workers: list[subprocess.Popen]) -> None:
    for w in workers:
        if w.poll() is None:
            w.terminate()
    for w in workers:
        w.wait(30)


def chains(broker_url: str, mailing: Mailing, count: int) -> None:
    producer = Celery(broker=broker_url)
    for _ in range(count):
        producer.send_task("mailing.tasks.send_mailing", args=[mailing.pk])


def wait_for(predicate, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


def start_mailing(tenant, servers, count: int) -> Mailing:
    contact_list = make_list(tenant, "L", [f"r{i:03d}@x.test" for i in range(count)])
    mailing = Mailing(tenant=tenant, name="m", template=make_template(tenant))
    services.mailing_save(mailing=mailing, lists=[contact_list], servers=servers)
    # The workers send, not this process: the start's kick finds every
    # chain slot taken (this test process runs Celery tasks eagerly).
    dispatch.hold_chains(mailing.pk, until=timezone.now() + timedelta(hours=1))
    services.mailing_start(mailing=mailing)
    assert not Letter.objects.filter(mailing=mailing, status=L.SENT).exists()
    return mailing


def message_ids(*handlers: SinkHandler) -> list[str]:
    return [r.message["Message-ID"] for h in handlers for r in h.received]


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


class SlowSink(SinkHandler):
    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(0.3)
        return await super().handle_DATA(server, session, envelope)


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
