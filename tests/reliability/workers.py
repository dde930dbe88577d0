"""Real Celery worker processes for the reliability tests: started as
production runs them (the Procfile's dispatch command, broker Redis, the given database, consuming
the dispatch queue and beat's default queue), fed with
send_mailing chains or a dispatch tick, killed or stopped; plus the data
builders and sinks those tests share."""

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import IO

import redis
from celery import Celery
from django.conf import settings
from django.utils import timezone

from accounts.models import Tenant
from config.processes import procfile_command, with_option
from mailing import dispatch
from mailing import mailings as services
from mailing.models import Contact, ContactList, Letter, Mailing
from mailing.sink import SinkHandler
from servers.models import SmtpServer
from tests.helpers import ROOT, database_url, production_env
from tests.mailing.builders import make_template
from tests.services import require_redis

L = Letter.Status


def redis_broker(number: int) -> str:
    """The URL of Redis database `number`, flushed: the test's own broker."""
    url = require_redis().rsplit("/", 1)[0] + f"/{number}"
    redis.Redis.from_url(url).flushdb()
    return url


def worker_env(broker_url: str, *, db_url: str | None = None, batch: int = 4) -> dict[str, str]:
    """The environment of a worker, or of any product process beside it."""
    return production_env(
        DEBUG="1",
        SECRET_KEY=settings.SECRET_KEY,  # the same key decrypts the servers' passwords
        DATABASE_URL=db_url or database_url(),
        CELERY_BROKER_URL=broker_url,
        SERVERS_ALLOW_PRIVATE_HOSTS="1",
        DISPATCH_BATCH=str(batch),
    )


def start_workers(
    count: int,
    broker_url: str,
    *,
    db_url: str | None = None,
    batch: int = 4,
    output: IO | None = None,
    **variables: str,
) -> list[subprocess.Popen]:
    """`count` dispatch workers started as the Procfile starts them (a pool
    of threads, one a conversation, sharing a few database sessions), also
    consuming beat's default queue, each in its own process group so that a
    test can kill one with everything it started."""
    env = worker_env(broker_url, db_url=db_url, batch=batch) | variables
    argv, procfile_variables = procfile_command("dispatch", env)
    env.update(procfile_variables)
    argv = with_option(with_option(argv, "-Q", "dispatch,default"), "--loglevel", "warning")
    argv += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    return [
        subprocess.Popen(
            with_option(argv, "-n", f"w{i}-{os.getpid()}-{time.monotonic_ns()}@%h"),
            cwd=ROOT,
            env=env,
            start_new_session=True,
            stdout=output,
            stderr=output,
        )
        for i in range(count)
    ]


def stop(workers: list[subprocess.Popen]) -> None:
    for w in workers:
        if w.poll() is None:
            w.terminate()
    for w in workers:
        try:
            w.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(w.pid, signal.SIGKILL)
            w.wait(10)


def kill(worker: subprocess.Popen) -> None:
    """SIGKILL to the worker's whole process group: no cleanup of any kind."""
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(10)


def producer(broker_url: str) -> Celery:
    """A client of the broker that routes tasks to queues as the product does."""
    client = Celery(broker=broker_url, set_as_current=False)
    client.conf.task_routes = settings.CELERY_TASK_ROUTES
    client.conf.task_default_queue = settings.CELERY_TASK_DEFAULT_QUEUE
    return client


def chains(broker_url: str, mailing: Mailing | int, count: int) -> None:
    """`count` chains of send_mailing started by hand (they hold no slot)."""
    mailing_id = mailing if isinstance(mailing, int) else mailing.pk
    with producer(broker_url) as client:
        for _ in range(count):
            client.send_task("mailing.tasks.send_mailing", args=[mailing_id])


def tick(broker_url: str) -> None:
    """What the beat sends every DISPATCH_TICK seconds."""
    with producer(broker_url) as client:
        client.send_task("mailing.tasks.dispatch_tick")


def wait_for(predicate: Callable[[], bool], seconds: float = 60, *, every: float = 0.1, what: str = "") -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what or predicate}")


def bulk_list(tenant: Tenant, name: str, emails: Iterable[str]) -> ContactList:
    """A contact list of thousands in a few queries (make_list takes one
    round trip per contact)."""
    contact_list = ContactList.objects.create(tenant=tenant, name=name)
    contacts = Contact.objects.bulk_create(
        Contact(tenant=tenant, email=email, first_name=email[:3]) for email in emails
    )
    Contact.lists.through.objects.bulk_create(
        Contact.lists.through(contact_id=c.pk, contactlist_id=contact_list.pk) for c in contacts
    )
    return contact_list


def start_mailing(tenant: Tenant, servers: list[SmtpServer], count: int) -> Mailing:
    contact_list = bulk_list(tenant, "L", [f"r{i:04d}@{tenant.slug}.x.test" for i in range(count)])
    mailing = Mailing(tenant=tenant, name="m", template=make_template(tenant))
    services.mailing_save(mailing=mailing, lists=[contact_list], servers=servers)
    # The workers send, not this process: the start's kick finds every
    # chain slot taken (this test process runs Celery tasks eagerly).
    dispatch.hold_chains(mailing.pk, until=timezone.now() + timedelta(hours=1))
    services.mailing_start(mailing=mailing)
    assert not Letter.objects.filter(mailing=mailing, status=L.SENT).exists()
    return mailing


def after_the_lease() -> datetime:
    """A moment at which every lease taken now has run out."""
    return timezone.now() + dispatch.LEASE + timedelta(minutes=1)


HEADERS = BytesHeaderParser(policy=compat32)


def message_ids(*handlers: SinkHandler) -> list[str]:
    return [HEADERS.parsebytes(r.data)["Message-ID"] for h in handlers for r in h.received]


def message_id(public_id: object, domain: str = "mail.test") -> str:
    """The Message-ID the dispatcher gives a letter (its public id)."""
    return f"<{public_id}@{domain}>"


@dataclass
class SlowSink(SinkHandler):
    """A sink that takes `delay` seconds to accept each letter's DATA."""

    delay: float = 0.3

    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(self.delay)
        return await super().handle_DATA(server, session, envelope)
