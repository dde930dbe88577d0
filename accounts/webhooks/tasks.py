"""The webhooks' tasks, on their own `webhooks` queue (config/settings.py):
a slow receiver never delays a connection test, a platform email or the
sending. An attempt takes at most WEBHOOK_TIMEOUT; the limits are a backstop."""

from datetime import datetime

from celery import shared_task
from django.utils import timezone

from . import delivery


@shared_task(soft_time_limit=60, time_limit=90)
def deliver_webhook(delivery_id: int, due: str | None = None) -> None:
    now = max(timezone.now(), datetime.fromisoformat(due)) if due else None
    delivery.deliver(delivery_id=delivery_id, now=now)


@shared_task(soft_time_limit=60, time_limit=90)
def deliver_due_webhooks() -> None:
    """Beat, every minute: the retries that are due, and lost tasks."""
    delivery.deliver_due()
