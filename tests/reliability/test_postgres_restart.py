"""A PostgreSQL restart in the middle of a mailing loses no letter: the same
worker processes carry on once the database is back, the letters of the
batches the restart broke come back after their lease, and a letter is
received twice at most once per batch the restart broke. The same holds
while PostgreSQL turns new sessions away for a while (its connection limit),
and a batch whose results cannot be written stops at the next letter.

The restart is real (`pg_ctl restart -m fast`) on a private cluster that
this module creates, never on the shared server."""

import glob
import logging
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from django.db import connection

from mailing import dispatch
from mailing.models import Letter
from tests.helpers import ROOT, free_port
from tests.servers.factories import make_server
from tests.services import require
from tests.smtp_servers import smtp_server

from .workers import (
    SlowSink,
    after_the_lease,
    message_id,
    message_ids,
    redis_broker,
    start_mailing,
    start_workers,
    stop,
    wait_for,
    worker_env,
)

LETTERS = 2000
WORKERS = 2


class Cluster:
    """A throwaway PostgreSQL cluster owned by the postgres user (initdb and
    pg_ctl refuse to run as root), trust auth, on a free port."""

    def __init__(self) -> None:
        binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        require("initdb", bool(binaries), "apt-get install postgresql")
        self.bin = Path(binaries[-1]).parent
        self.base = Path(tempfile.mkdtemp(prefix="postroute-pg-"))
        shutil.chown(self.base, "postgres")
        self.data = self.base / "data"
        self.port = free_port()
        self.options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off"
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/postroute"

    def run(self, tool: str, *args: str) -> None:
        cmd = ["runuser", "-u", "postgres", "--", str(self.bin / tool), *args]
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)

    def pg_ctl(self, action: str, *args: str) -> None:
        self.run("pg_ctl", action, "-D", str(self.data), "-l", str(self.base / "log"), "-w", *args)

    def start(self) -> None:
        self.run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
        self.pg_ctl("start", "-o", self.options)
        with psycopg.connect(self.url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE postroute")

    def restart(self) -> None:
        self.pg_ctl("restart", "-m", "fast", "-o", self.options)

    def remove(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self.pg_ctl("stop", "-m", "immediate")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """A fresh cluster for each test, stopped and deleted whatever happens."""
    cluster = Cluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


def product(env: dict[str, str], code: str) -> str:
    """Run product code in a process of its own on the private database;
    returns what it prints."""
    script = "import django\ndjango.setup()\n" + textwrap.dedent(code)
    cmd = [sys.executable, "-c", script]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


SETUP = """
    from accounts.models import Tenant
    from mailing import mailings
    from mailing.models import Mailing
    from tests.mailing.builders import make_template
    from tests.reliability.workers import bulk_list
    from tests.servers.factories import make_server

    tenant = Tenant.objects.create(name="Acme", slug="acme")
    server = make_server(tenant, port={port})
    contacts = bulk_list(tenant, "L", [f"r{{i:04d}}@x.test" for i in range({letters})])
    mailing = Mailing(tenant=tenant, name="m", template=make_template(tenant))
    mailings.mailing_save(mailing=mailing, lists=[contacts], servers=[server])
    mailings.mailing_start(mailing=mailing)  # the product's kick: chains through the broker
    print(mailing.pk)
"""

# The beat's tick, as it runs once the leases of the broken batches and
# chains have run out (dispatch_tick itself always uses the real clock).
TICK_AFTER_THE_LEASE = """
    from datetime import timedelta
    from django.conf import settings
    from django.utils import timezone
    from mailing import dispatch, tasks

    later = timezone.now() + dispatch.LEASE + timedelta(minutes=1)
    print(dispatch.requeue_expired_leases(now=later))
    for mailing_id in dispatch.active_mailing_ids(now=later):
        for _ in range(settings.DISPATCH_CHAINS):
            slot = dispatch.take_chain(mailing_id, now=later)
            if slot is None:
                break
            tasks.send_mailing.delay(mailing_id, slot)
"""


def letters(db_url: str, mailing_id: int) -> dict[str, str]:
    """Message-ID -> status, read straight from the private database."""
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT public_id, status FROM mailing_letter WHERE mailing_id = %s", [mailing_id])
        return {message_id(public_id): status for public_id, status in rows}


def quiet(broker_url: str, handler: SlowSink) -> bool:
    """No send_mailing task is queued or running (acks_late: a running task
    stays in the unacked hash until it ends), and the sink is quiet: twice,
    a second apart, as a message moves from the queue to the unacked hash
    in two steps."""
    r = redis.Redis.from_url(broker_url)
    seen = []
    for pause in (1, 0):
        seen.append((r.llen("celery"), r.hlen("unacked"), len(handler.received)))
        time.sleep(pause)
    return seen[0] == seen[1] and seen[0][:2] == (0, 0)


@pytest.mark.django_db(transaction=True)
def test_a_batch_whose_results_cannot_be_written_stops_at_the_next_letter(tenant_a, settings, caplog):
    """The result writer's own session cannot be opened (the database turns
    it away) while the sender's session works: the first letter goes, its
    result is not recorded, and the batch stops before the server accepts a
    second one: it neither hangs nor sends letters nobody will know as
    sent. The letter the server has keeps its claim and comes back after the
    lease; the others, which never reached the server, go back at once."""
    settings.DISPATCH_RECORD_THREAD, settings.DISPATCH_BATCH = True, 5
    caplog.set_level(logging.CRITICAL, logger="mailing.dispatch.recorder")  # the expected "could not record" traceback
    ready, go, outcome = threading.Event(), threading.Event(), []

    def worker() -> None:
        connection.ensure_connection()  # the sender's session opens while the database lets it in
        ready.set()
        go.wait()
        try:
            outcome.append(dispatch.run_mailing(mailing_id=mailing.pk))
        except Exception as exc:
            outcome.append(exc)
        connection.close()

    with smtp_server() as (controller, handler):
        mailing = start_mailing(tenant_a, [make_server(tenant_a, port=controller.port)], 5)
        sender = threading.Thread(target=worker, daemon=True)
        sender.start()
        ready.wait(10)
        name = connection.settings_dict["NAME"]
        # Every new session from here on is turned away (on SQLite: a file
        # that cannot be created, so nothing is left in the checkout).
        turned_away = "postroute_turned_away" if connection.vendor == "postgresql" else "/nonexistent/turned-away.db"
        connection.settings_dict["NAME"] = turned_away
        try:
            go.set()
            sender.join(15)
        finally:
            connection.settings_dict["NAME"] = name
    assert not sender.is_alive(), "the batch hangs waiting for a result that will never be written"
    assert len(handler.received) == 1
    assert outcome and isinstance(outcome[0], Exception), outcome
    assert not Letter.objects.filter(mailing=mailing, status=Letter.Status.SENT).exists()
    assert Letter.objects.filter(mailing=mailing, status=Letter.Status.QUEUED).count() == 4
    assert dispatch.requeue_expired_leases(now=after_the_lease()) == 1


@pytest.fixture(scope="module")
def summary() -> Iterator[dict[str, str]]:
    figures: dict[str, str] = {}
    yield figures
    print(
        f"postgres restart: {LETTERS} letters, 1 restart, {figures.get('restart', '?')};"
        f" new connections refused for {REFUSAL}s: {figures.get('refusal', '?')}"
    )


def refuse_connections(cluster: Cluster) -> None:
    """PostgreSQL turns every new session away (as when max_connections is
    reached); the sessions already open go on."""
    admin = cluster.url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("ALTER DATABASE postroute WITH ALLOW_CONNECTIONS false")
    time.sleep(REFUSAL)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("ALTER DATABASE postroute WITH ALLOW_CONNECTIONS true")


REFUSAL = 2


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["restart", "refusal"])
def test_a_database_fault_in_the_middle_of_a_mailing_loses_no_letter(fault, cluster, summary, tmp_path, caplog):
    """restart: `pg_ctl restart -m fast` breaks every session at once.
    refusal: for a while no new session is let in; each batch's result
    writer opens one, the batch's sender keeps its own."""
    caplog.set_level(logging.ERROR, logger="mail.log")  # aiosmtpd's deprecation notice, once a connection
    broker = redis_broker(11)
    env = worker_env(broker, db_url=cluster.url, batch=50)
    migrated = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert migrated.returncode == 0, migrated.stderr
    handler = SlowSink(delay=0.002)
    ticks = requeued = 0
    with smtp_server(handler=handler) as (controller, _), (tmp_path / "workers.log").open("w+") as log:
        workers = start_workers(WORKERS, broker, db_url=cluster.url, batch=50, output=log)
        try:
            mailing_id = int(product(env, SETUP.format(port=controller.port, letters=LETTERS)))

            def all_sent() -> bool:
                return all(s == "sent" for s in letters(cluster.url, mailing_id).values())

            wait_for(lambda: len(handler.received) >= LETTERS // 3, 60, every=0.001, what="letters flowing")
            if fault == "restart":
                cluster.restart()
            else:
                refuse_connections(cluster)
            at_fault = len(handler.received)
            while not all_sent():
                wait_for(
                    lambda: all_sent() or quiet(broker, handler),
                    60,
                    every=0.2,
                    what="the chains to settle (a task that runs on while the sink is quiet: a worker hangs)",
                )
                if not all_sent():
                    # The chains the fault broke have ended: the beat starts
                    # them again once the leases have run out.
                    requeued += int(product(env, TICK_AFTER_THE_LEASE))
                    ticks += 1
                    assert ticks <= 5
            alive = [w.poll() is None for w in workers]
        finally:
            stop(workers)
        log.seek(0)
        unrecorded = log.read().count("could not record a letter's result")

    assert alive == [True] * WORKERS  # the same processes carried on
    assert len(handler.received) > at_fault
    statuses = letters(cluster.url, mailing_id)
    received = Counter(message_ids(handler))
    sent = {mid for mid, status in statuses.items() if status == "sent"}
    assert len(sent) == LETTERS
    lost = len(sent - set(received))
    assert lost == 0
    assert set(received) == sent
    duplicates = sum(n - 1 for n in received.values())
    # One batch at most per worker was on the wire when the database went;
    # its chain ends there, until the beat starts it again.
    assert duplicates <= WORKERS, f"{duplicates} duplicates; {unrecorded} results not recorded"
    summary[fault] = (
        f"{duplicates} duplicates (bound {WORKERS}), {lost} lost ({unrecorded} results not recorded,"
        f" {requeued} letters back after the lease, {WORKERS} workers carried on)"
    )
