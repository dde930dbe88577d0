"""Every task of ours has a soft and a hard time limit and goes to the queue
of its kind of work, and the Procfile's workers consume every queue (the
dispatch queue with a worker of its own)."""

import re

from django.conf import settings

from config.celery import app
from tests.helpers import ROOT

QUEUES = {
    "mailing.tasks.send_mailing": "dispatch",
    "mailing.tasks.start_mailing": "dispatch",
    "servers.tasks.run_connection_test": "probes",
    "mailing.tasks.run_contact_import": "imports",
    "mailing.tasks.read_bounce_mailbox": "bounces",
    "accounts.tasks.send_verification_email": "mail",
    "accounts.tasks.send_invitation_email": "mail",
    "accounts.tasks.send_signup_attempt_email": "mail",
    "accounts.tasks.send_password_reset_email": "mail",
    "mailing.tasks.dispatch_tick": "default",
    "mailing.tasks.discard_stale_imports": "default",
    "mailing.tasks.purge_usage_buckets": "default",
    "mailing.tasks.read_bounce_mailboxes": "default",
    "servers.tasks.fail_stale_connection_tests": "default",
    "accounts.tasks.purge_rate_counters": "default",
    "accounts.webhooks.tasks.deliver_webhook": "webhooks",
    "accounts.webhooks.tasks.deliver_due_webhooks": "webhooks",
}
VISIBILITY_TIMEOUT = 3600  # Redis's default: a task running longer is given to a second worker


def our_tasks() -> dict:
    app.autodiscover_tasks(force=True)  # as a worker does, without its start-up checks
    return {name: task for name, task in app.tasks.items() if name.startswith(("accounts.", "servers.", "mailing."))}


def test_every_task_has_a_soft_and_a_hard_time_limit():
    tasks = our_tasks()
    assert set(tasks) == set(QUEUES)  # a new task is given a queue here
    for name, task in tasks.items():
        assert task.soft_time_limit and task.time_limit, name
        assert task.soft_time_limit < task.time_limit < VISIBILITY_TIMEOUT, name
    assert settings.CELERY_TASK_SOFT_TIME_LIMIT < settings.CELERY_TASK_TIME_LIMIT  # the backstop


def test_a_connection_test_is_stopped_soon_after_its_own_deadline():
    task = our_tasks()["servers.tasks.run_connection_test"]
    assert settings.SERVER_PROBE_TIMEOUT < task.soft_time_limit <= settings.SERVER_PROBE_TIMEOUT + 30


def test_each_task_goes_to_the_queue_of_its_kind_of_work():
    routed = {name: app.amqp.router.route({}, name)["queue"].name for name in our_tasks()}
    assert routed == QUEUES


def procfile_queues() -> list[set[str]]:
    """The queues each Procfile worker consumes (without -Q: the default one)."""
    workers = [line for line in (ROOT / "Procfile").read_text().splitlines() if " worker " in line]
    found = [re.search(r" -Q (\S+)", line) for line in workers]
    return [set(m.group(1).split(",")) if m else {settings.CELERY_TASK_DEFAULT_QUEUE} for m in found]


def test_the_procfile_workers_consume_every_queue_and_dispatch_has_its_own():
    consumed = procfile_queues()
    assert set().union(*consumed) == set(QUEUES.values())
    assert {"dispatch"} in consumed
