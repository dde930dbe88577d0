"""Beat's operations tasks (on the `default` queue)."""

import logging

from celery import shared_task

from . import retention

log = logging.getLogger(__name__)


@shared_task(soft_time_limit=600, time_limit=660)
def apply_retention() -> None:
    """Hourly: delete or clear what is older than the RETENTION_* settings."""
    report = retention.apply_retention()
    log.info("retention: %s%s", report.counts, "" if report.finished else " (more next hour)")
