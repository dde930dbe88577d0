"""Data over time: what the platform keeps, and for how long (RETENTION_*
settings, in days; 0 keeps for ever). Beat runs it hourly. Everything goes
in batches of RETENTION_BATCH rows, each its own short transaction, so no
table, the letters least of all, is locked for long; a run stops after
RETENTION_RUN_SECONDS and the next one goes on where it stopped."""

import time
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Model, Q, QuerySet
from django.utils import timezone

from accounts.models import ApiIdempotency, AuthThrottle, UserSession, WebhookDelivery, WebhookOnce
from mailing.models import BounceReport, ContactImport, ImportRejection, Letter, Mailing
from servers.models import ConnectionTest

# A finished mailing's letters are looked at during this long after their
# copies of the contact data fell due, then no more (each run would
# otherwise scan all old letters again).
LETTER_WINDOW = timedelta(days=30)


@dataclass
class Report:
    counts: dict[str, int] = field(default_factory=dict)
    finished: bool = True


def _cutoff(days: int) -> timezone.datetime | None:
    return timezone.now() - timedelta(days=days) if days > 0 else None


def _in_batches(name: str, queryset: QuerySet, apply, report: Report, deadline: float) -> None:
    done = 0
    while True:
        if time.monotonic() > deadline:
            report.finished = False
            break
        with transaction.atomic():
            ids = list(queryset.order_by("pk").values_list("pk", flat=True)[: settings.RETENTION_BATCH])
            if ids:
                done += apply(queryset.model.objects.filter(pk__in=ids))
        if len(ids) < settings.RETENTION_BATCH:
            break
    report.counts[name] = done


def _delete(batch: QuerySet[Model]) -> int:
    return batch.delete()[0]


def _delete_deliveries(batch: QuerySet[WebhookDelivery]) -> int:
    """Counted as deliveries, not with their attempts."""
    return batch.delete()[1].get(WebhookDelivery._meta.label, 0)


def _clear_context(batch: QuerySet[Letter]) -> int:
    return batch.update(context={})


def apply_retention(*, run_seconds: float | None = None) -> Report:
    report = Report()
    deadline = time.monotonic() + (settings.RETENTION_RUN_SECONDS if run_seconds is None else run_seconds)
    r = settings.RETENTION_DAYS
    if cutoff := _cutoff(r["letter_contact_data"]):
        window = {"lt": cutoff, "gte": cutoff - LETTER_WINDOW}
        completed = Q(**{f"finished_at__{k}": v for k, v in window.items()})
        cancelled = Q(events__to_status=Mailing.Status.CANCELLED, **{f"events__at__{k}": v for k, v in window.items()})
        finished = Mailing.objects.filter(completed | cancelled).values("pk")
        letters = Letter.objects.filter(mailing__in=finished).exclude(context={})
        _in_batches("letter_contact_data", letters, _clear_context, report, deadline)
    if cutoff := _cutoff(r["connection_tests"]):
        tests = ConnectionTest.objects.filter(created_at__lt=cutoff).exclude(status__in=("pending", "running"))
        _in_batches("connection_tests", tests, _delete, report, deadline)
    if cutoff := _cutoff(r["throttles"]):
        stale = AuthThrottle.objects.filter(first_failure_at__lt=cutoff).filter(
            Q(locked_until__isnull=True) | Q(locked_until__lt=timezone.now())
        )
        _in_batches("throttles", stale, _delete, report, deadline)
    if cutoff := _cutoff(r["import_rejections"]):
        old = ImportRejection.objects.filter(contact_import__in=ContactImport.objects.filter(finished_at__lt=cutoff))
        _in_batches("import_rejections", old, _delete, report, deadline)
    if cutoff := _cutoff(r["bounce_reports"]):
        _in_batches("bounce_reports", BounceReport.objects.filter(received_at__lt=cutoff), _delete, report, deadline)
    # Idempotency keys' answers, once past their day (mailing.api.idempotency).
    used = ApiIdempotency.objects.filter(expires_at__lt=timezone.now())
    _in_batches("api_idempotency_keys", used, _delete, report, deadline)
    if cutoff := _cutoff(r["webhook_deliveries"]):
        # Finished ones only: a delivery still being retried keeps its log.
        old = WebhookDelivery.objects.filter(created__lt=cutoff).exclude(status=WebhookDelivery.Status.PENDING)
        _in_batches("webhook_deliveries", old, _delete_deliveries, report, deadline)
    _in_batches("webhook_once", WebhookOnce.objects.filter(until__lt=timezone.now()), _delete, report, deadline)
    sessions = UserSession.objects.filter(expire_date__lt=timezone.now())
    _in_batches("expired_sessions", sessions, _delete, report, deadline)
    return report
