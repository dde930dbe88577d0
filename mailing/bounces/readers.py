"""Which bounce mailboxes to read, and one reading's course: take the
lease, read over IMAP (mailing.bounces.imap) or POP3 (.pop3), then record
success, or the failure and the back-off.

A report is recorded (once: services keys it by its place in the mailbox)
before it is moved away, and the reading position advances only after
that, so a reader killed at any point loses nothing and counts nothing
twice. Each phase of a read (connecting and logging in, opening the
folder, the search or the listing, each message) has BOUNCE_READER_TIMEOUT
seconds in all, however slowly the server talks (servers.deadlines)."""

import logging
from datetime import timedelta

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from accounts import languages
from accounts.models import Tenant
from servers.errors import diagnose
from servers.models import BounceMailbox, Health

from ..models import BounceReport
from .imap import ImapReader
from .pop3 import Pop3Reader
from .reading import Lease, LeaseLost, ReadResult, phase_timeout

log = logging.getLogger(__name__)

MAX_FAILURES = 32767  # the column's limit; the delay stopped growing long before


def readable() -> QuerySet[BounceMailbox]:
    """Mailboxes that may be read: enabled, of a tenant that is not
    suspended (nothing connects for a suspended tenant; a task queued just
    before the suspension finds nothing to read either)."""
    return BounceMailbox.objects.filter(enabled=True, tenant__status=Tenant.Status.ACTIVE)


def mailboxes_to_read() -> list[int]:
    now = timezone.now()
    due = readable().exclude(reader_lock_until__gt=now)
    due = due.exclude(next_check_at__gt=now + _half_interval())  # backing off
    return list(due.values_list("pk", flat=True))


def read_mailbox(*, mailbox_id: int) -> ReadResult:
    mailbox = readable().select_related("tenant").filter(pk=mailbox_id).first()
    if mailbox is None:
        return ReadResult("disabled")
    lease = Lease.claim(mailbox.pk)
    if lease is None:
        return ReadResult("busy")
    with languages.of_organisation(mailbox.tenant.default_language if mailbox.tenant else None):
        return _read_under(mailbox, lease)


def _read_under(mailbox: BounceMailbox, lease: Lease) -> ReadResult:
    try:
        result = _read(mailbox, lease)
    except LeaseLost:
        return ReadResult("busy")
    except Exception as exc:
        log.warning("reading bounce mailbox %s failed", mailbox.pk, exc_info=True)
        result = _failed(mailbox, exc)
    else:
        _succeeded(mailbox)
    finally:
        _count_reports(mailbox)
        lease.release()
    return result


def _read(mailbox: BounceMailbox, lease: Lease) -> ReadResult:
    if mailbox.protocol == BounceMailbox.Protocol.POP3:
        return Pop3Reader(mailbox, lease).run()
    return ImapReader(mailbox, lease).run()


def _succeeded(mailbox: BounceMailbox) -> None:
    now = timezone.now()
    BounceMailbox.objects.filter(pk=mailbox.pk).update(
        last_checked_at=now,
        last_error="",
        health=Health.OK,
        health_error="",
        health_hint="",
        health_words={},
        health_checked_at=now,
        failures=0,
        next_check_at=None,
    )


def _failed(mailbox: BounceMailbox, exc: Exception) -> ReadResult:
    diagnosis = diagnose(exc, host=mailbox.host, port=mailbox.port, timeout=phase_timeout())
    BounceMailbox.objects.filter(pk=mailbox.pk).update(
        last_error=diagnosis.message,
        health=Health.FAILING,
        health_error=diagnosis.message,
        health_hint=diagnosis.hint,
        health_words=diagnosis.words_json(),
        health_checked_at=timezone.now(),
    )
    _back_off(mailbox)
    return ReadResult("failed", error=diagnosis.message)


def _back_off(mailbox: BounceMailbox) -> None:
    """One more failure in a row puts the next reading off. Settings saved
    while this reader ran (updated_at moved) are the tenant's fix, whose
    first try this failure must not delay."""
    failures = min(mailbox.failures + 1, MAX_FAILURES)
    BounceMailbox.objects.filter(pk=mailbox.pk, updated_at=mailbox.updated_at).update(
        failures=failures, next_check_at=timezone.now() + retry_delay(failures)
    )


def retry_delay(failures: int) -> timedelta:
    """One interval after the first failure, doubling with each one after
    it, up to BOUNCE_BACKOFF_MAX."""
    interval = settings.BOUNCE_CHECK_INTERVAL
    longest = max(settings.BOUNCE_BACKOFF_MAX, interval)
    return timedelta(seconds=min(interval * 2 ** min(failures - 1, 30), longest))


def _half_interval() -> timedelta:
    # Beat runs every interval; a reading due before half-way to the next
    # beat is taken on this one. Otherwise the time a failed reading took
    # would push each retry one whole interval later than its delay says.
    return timedelta(seconds=settings.BOUNCE_CHECK_INTERVAL / 2)


def _count_reports(mailbox: BounceMailbox) -> None:
    found = BounceReport.objects.filter(mailbox=mailbox).exclude(kind=BounceReport.Kind.AUTO_REPLY).count()
    BounceMailbox.objects.filter(pk=mailbox.pk).update(reports_found=found)
