"""Workers killed with SIGKILL in the middle of a 5,000-letter mailing, each
while it holds several SMTP conversations (threads of one process), lose
no letter: after each kill a new worker takes over once the lease has run
out, every letter ends sent and received, and a letter is received twice at
most once per killed connection (its result is committed before the next
letter's DATA)."""

import logging
import random
from collections import Counter

import pytest
from django.db import connection

from mailing import dispatch
from mailing.models import Letter
from tests.servers.factories import make_server
from tests.services import require_postgresql
from tests.smtp_servers import smtp_server

from .workers import (
    SlowSink,
    after_the_lease,
    chains,
    kill,
    message_id,
    message_ids,
    redis_broker,
    start_mailing,
    start_workers,
    stop,
    wait_for,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
L = Letter.Status
LETTERS = 5000
KILLS = 5
CONVERSATIONS = 3  # one worker process holds this many SMTP connections at once


@pytest.fixture
def broker() -> str:
    require_postgresql()
    return redis_broker(12)


def advisory_locks() -> int:
    """Connection slots held in this database: a dead worker's slot is gone
    once PostgreSQL has noticed its session is closed."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        return cursor.fetchone()[0]


def test_killed_workers_lose_no_letter_and_duplicate_at_most_one_per_kill(tenant_a, broker, tmp_path, caplog):
    caplog.set_level(logging.ERROR, logger="mail.log")  # aiosmtpd's deprecation notice, once a connection
    rng = random.Random(8)
    # Kill points spread over the mailing, as counts of received letters.
    points = sorted(rng.sample(range(200, LETTERS - 300), KILLS))
    handler = SlowSink(delay=0.002)  # a real server's pace: kills land mid-batch
    mid_batch = 0
    with smtp_server(handler=handler) as (controller, _), (tmp_path / "workers.log").open("w") as log:
        server = make_server(tenant_a, port=controller.port, max_connections=CONVERSATIONS)
        mailing = start_mailing(tenant_a, [server], LETTERS)
        started = start_workers(1, broker, batch=50, output=log)
        try:
            chains(broker, mailing, CONVERSATIONS)
            for point in points:
                wait_for(lambda p=point: len(handler.received) >= p, 60, every=0.001, what=f"letter {point}")
                kill(started[-1])  # the sink has just accepted a letter from it
                mid_batch += Letter.objects.filter(mailing=mailing, status=L.SENDING).exists()
                wait_for(lambda: advisory_locks() == 0, 30, what="the dead worker's connection slot")
                # The scheduler, once the lease has run out: the letters go
                # back to the queue and a chain starts on a new worker.
                dispatch.requeue_expired_leases(now=after_the_lease())
                started += start_workers(1, broker, batch=50, output=log)
                chains(broker, mailing, CONVERSATIONS)
            unsent = Letter.objects.filter(mailing=mailing).exclude(status=L.SENT)
            wait_for(lambda: not unsent.exists(), 120, every=0.5, what="every letter sent")
        finally:
            stop(started)

    received = Counter(message_ids(handler))
    sent = {
        message_id(p) for p in Letter.objects.filter(mailing=mailing, status=L.SENT).values_list("public_id", flat=True)
    }
    assert len(sent) == LETTERS
    lost = len(sent - set(received))  # recorded sent, never received
    assert lost == 0
    assert set(received) == sent  # and nothing received that is not a letter of the mailing
    duplicates = sum(n - 1 for n in received.values())
    twice = [mid for mid, n in received.items() if n > 1]
    assert all(received[mid] == 2 for mid in twice), twice
    assert mid_batch > 0  # at least one kill left letters half-sent
    # Each kill ends the worker's CONVERSATIONS connections at once.
    assert duplicates <= KILLS * CONVERSATIONS, twice
    print(
        f"killed workers: {LETTERS} letters, {KILLS} kills of {CONVERSATIONS} conversations each, {duplicates}"
        f" duplicates (bound {KILLS * CONVERSATIONS}), {lost} lost"
        f" ({mid_batch} kills mid-batch)"
    )
