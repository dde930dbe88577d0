"""Celery tasks of the servers app. Thin: take ids, call a service.

A connection test ends by itself within SERVER_PROBE_TIMEOUT; its time
limits are a backstop. Queues: config/settings.py, CELERY_TASK_ROUTES."""

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from . import services


@shared_task(soft_time_limit=settings.SERVER_PROBE_TIMEOUT + 15, time_limit=settings.SERVER_PROBE_TIMEOUT + 30)
def run_connection_test(test_id: int) -> None:
    try:
        services.connection_test_run(test_id=test_id)
    except SoftTimeLimitExceeded:
        services.connection_test_stopped(test_id=test_id)


@shared_task(soft_time_limit=60, time_limit=90)
def fail_stale_connection_tests() -> None:
    """Beat, every minute: a test whose worker was killed ends failed."""
    services.connection_tests_fail_stale()
