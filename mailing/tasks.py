"""Celery tasks of the mailing app. Thin: take ids, call a service.

Each task has a soft and a hard time limit (seconds), sized for its work:
the soft one raises SoftTimeLimitExceeded inside the task, which its work
ends as a failure it can explain; the hard one kills the worker process.
Queues: config/settings.py, CELERY_TASK_ROUTES."""

import random
import time

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext_lazy

from config import metrics

from . import dispatch, limits, mailings
from .imports import runner as import_runner
from .imports import services as import_services

HOUSEKEEPING = {"soft_time_limit": 240, "time_limit": 300}


@shared_task(soft_time_limit=3300, time_limit=3480)  # an import may take up to an hour
def run_contact_import(import_id: int) -> None:
    with metrics.Timer() as timer:
        import_runner.import_run(import_id=import_id)
    metrics.observe_import(timer.seconds)


@shared_task(**HOUSEKEEPING)
def discard_stale_imports() -> None:
    import_services.imports_discard_stale()
    import_runner.imports_fail_dead()


@shared_task(soft_time_limit=120, time_limit=150)
def dispatch_tick() -> None:
    """Beat, every DISPATCH_TICK seconds: return dead workers' letters,
    start scheduled mailings (and starts whose task was lost), and make
    sure every running mailing (or a waiting one whose time has come) has a
    chain of batches going."""
    dispatch.requeue_expired_leases()
    mailings.start_due_mailings()
    mailings.restart_stalled_starts()
    for mailing_id in dispatch.active_mailing_ids():
        for slot in dispatch.needed_chain_slots(mailing_id):
            send_mailing.delay(mailing_id, slot)


# A batch ends well before its letters' lease (10 minutes) runs out, after
# which they would go back to the queue and could be sent twice.
@shared_task(acks_late=True, soft_time_limit=480, time_limit=540)
def send_mailing(mailing_id: int, slot: int | None = None) -> None:
    """Batches while there is more, for up to DISPATCH_SLICE seconds; then
    the next task of the chain is queued, behind the other chains waiting
    for a worker, so sending goes on without pauses and a chain holds its
    worker thread a few seconds at a time. Queuing a task per batch instead
    cost a fifth of the worker's time on a fast server. When the server to
    use is busy with other mailings, the chain tries again in a moment
    without holding a worker meanwhile."""
    started = renewed = time.monotonic()
    while True:
        result = dispatch.run_mailing(mailing_id=mailing_id)
        # Run in-process (tests), a countdown would be ignored and a busy
        # chain would spin: there the next tick picks the mailing up.
        retry = result in ("busy", "paced", "crowded") and not send_mailing.app.conf.task_always_eager
        last = result != "more" or time.monotonic() >= started + settings.DISPATCH_SLICE
        # The chain's lease is renewed when the task ends (for the next task
        # of the chain, or freed) and when half of it is gone, not after
        # every batch: one query a slice rather than one a batch.
        if last or time.monotonic() - renewed >= dispatch.CHAIN_LEASE.total_seconds() / 2:
            dispatch.renew_chain(mailing_id, slot, more=result == "more" or retry)
            renewed = time.monotonic()
        if last:
            break
    if result == "more":
        send_mailing.delay(mailing_id, slot)
    elif retry:
        countdown = {"busy": BUSY_RETRY_SECONDS, "crowded": random.uniform(*CROWDED_RETRY_SECONDS)}
        send_mailing.apply_async((mailing_id, slot), countdown=countdown.get(result, 60.5 - timezone.now().second))


BUSY_RETRY_SECONDS = 1
# A chain whose connection the server refused beside others (too many
# connections) knocks again after this long, not every second; at a random
# moment in it, so that two chains refused together (each counting the
# other's slot: a server refusing everyone) do not knock together again,
# and the one that knocks alone rests the server.
CROWDED_RETRY_SECONDS = (10.0, 20.0)


# Making a million letters takes about a minute on PostgreSQL; the hard
# limit is mailings.START_TASK_LIMIT, after which beat asks again.
@shared_task(soft_time_limit=1500, time_limit=1800)
def start_mailing(mailing_id: int, by_id: int | None = None) -> None:
    try:
        mailings.mailing_start_prepared(mailing_id=mailing_id, by_id=by_id)
    except SoftTimeLimitExceeded:
        # Lazy: worded in the organisation's language by mailing_start_failed.
        reason = gettext_lazy("Preparing the letters took too long. Try again, or split the lists.")
        mailings.mailing_start_failed(mailing_id=mailing_id, reason=reason)


@shared_task(**HOUSEKEEPING)
def purge_usage_buckets() -> None:
    """Beat, every quarter of an hour: drop the buckets out of every window,
    and roll the older minutes up into quarters (mailing.limits.roll_up)."""
    limits.purge_expired()
    limits.roll_up()


@shared_task(soft_time_limit=60, time_limit=90)
def read_bounce_mailboxes() -> None:
    """Beat, every BOUNCE_CHECK_INTERVAL seconds: one reading task per
    enabled bounce mailbox that no reader holds right now."""
    from .bounces import readers

    for mailbox_id in readers.mailboxes_to_read():
        read_bounce_mailbox.delay(mailbox_id)


# A reader stops by itself after half its lease (10 minutes) and one more
# phase; it is killed before the lease runs out and a second reader starts.
@shared_task(soft_time_limit=480, time_limit=540)
def read_bounce_mailbox(mailbox_id: int) -> None:
    from .bounces import readers

    readers.read_mailbox(mailbox_id=mailbox_id)
