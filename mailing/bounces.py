"""Bounce reports: tie a parsed report to the tenant's letter and apply it
(hard bounce: the letter is bounced and the address suppressed; soft: kept,
and the address is suppressed after BOUNCE_SOFT_LIMIT soft bounces within
BOUNCE_SOFT_WINDOW_DAYS), plus the reads the pages need. Reading the
mailbox is mailing.bounce_reader; understanding a message is
mailing.bounce_parser.

Every lookup is scoped by the mailbox's tenant: a report in tenant A's
mailbox never touches tenant B's letters, even when it names their ids."""

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Count, Q, QuerySet
from django.shortcuts import get_object_or_404
from django.utils import timezone

from accounts.models import Tenant
from servers.models import BounceMailbox

from . import bounce_parser
from .contacts import suppression_add
from .models import BounceReport, Letter, Mailing, Suppression

log = logging.getLogger(__name__)

K = BounceReport.Kind
M = BounceReport.MatchedBy
# A report about a letter sent long ago is not tied to it by address alone.
MATCH_WINDOW = timedelta(days=7)
CLOCK_SKEW = timedelta(hours=1)


def soft_limit() -> int:
    return getattr(settings, "BOUNCE_SOFT_LIMIT", 3)


def soft_window() -> timedelta:
    return timedelta(days=getattr(settings, "BOUNCE_SOFT_WINDOW_DAYS", 30))


# ---------- recording ----------


def report_exists(*, mailbox: BounceMailbox, source_key: str, message_id: str = "") -> bool:
    """Seen before: the same place in the mailbox, or the same report
    (its Message-ID) read through another path (a new UIDVALIDITY, POP3)."""
    same_place = BounceReport.objects.filter(mailbox=mailbox, source_key=source_key)
    if same_place.exists():
        return True
    return bool(message_id) and BounceReport.objects.filter(tenant_id=mailbox.tenant_id, message_id=message_id).exists()


def report_record(
    *, mailbox: BounceMailbox, source_key: str, parsed: bounce_parser.ParsedReport
) -> BounceReport | None:
    """Store the report and apply it, once: None when it was already
    recorded (so a reader that died after this call counts nothing twice)."""
    if parsed.kind is None or report_exists(mailbox=mailbox, source_key=source_key, message_id=parsed.message_id):
        return None
    try:
        with transaction.atomic():
            report = _create(mailbox, source_key, parsed)
            _apply(report)
    except IntegrityError:  # recorded by a reader that overlapped ours
        return None
    return report


def _create(mailbox: BounceMailbox, source_key: str, parsed: bounce_parser.ParsedReport) -> BounceReport:
    received_at = min(parsed.received_at or timezone.now(), timezone.now())
    letter, matched_by, recipient = _match(mailbox.tenant_id, parsed, received_at)
    return BounceReport.objects.create(
        tenant_id=mailbox.tenant_id,
        mailbox=mailbox,
        source_key=source_key,
        letter=letter,
        kind=parsed.kind,
        matched_by=matched_by,
        recipient=recipient[:254],
        status=parsed.status,
        diagnostic=parsed.diagnostic,
        message_id=parsed.message_id,
        sender=parsed.sender,
        subject=parsed.subject,
        headers_excerpt=parsed.headers_excerpt,
        received_at=received_at,
    )


# ---------- matching ----------


def _match(tenant_id: int, parsed: bounce_parser.ParsedReport, received_at: datetime) -> tuple[Letter | None, str, str]:
    """The letter the report is about: by the header the letter carried,
    else its Message-ID, else a recipient the tenant sent to shortly before."""
    fallback = parsed.recipients[0] if parsed.recipients else ""
    for ids, how in ((parsed.letter_ids, M.HEADER), (parsed.message_letter_ids, M.MESSAGE_ID)):
        if letter := _letter_by_ids(tenant_id, ids, parsed.recipients):
            return letter, how, letter.email
    if parsed.kind != K.AUTO_REPLY:
        for recipient in parsed.recipients:
            if letter := _letter_by_recipient(tenant_id, recipient, received_at):
                return letter, M.RECIPIENT, letter.email
    return None, M.NONE, fallback


def _letter_by_ids(tenant_id: int, ids: list[str], recipients: list[str]) -> Letter | None:
    valid = [i for i in ids if _is_uuid(i)]
    if not valid:
        return None
    letters = list(Letter.objects.filter(tenant_id=tenant_id, public_id__in=valid).select_related("mailing"))
    # Several originals quoted: prefer the one whose address failed.
    wanted = {r.lower() for r in recipients}
    return next((x for x in letters if x.email.lower() in wanted), letters[0] if letters else None)


def _letter_by_recipient(tenant_id: int, recipient: str, received_at: datetime) -> Letter | None:
    return (
        Letter.objects.filter(
            tenant_id=tenant_id,
            email__iexact=recipient,
            sent_at__gte=received_at - MATCH_WINDOW,
            sent_at__lte=received_at + CLOCK_SKEW,
        )
        .select_related("mailing")
        .order_by("-sent_at", "-pk")
        .first()
    )


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


# ---------- applying ----------


def _apply(report: BounceReport) -> None:
    letter = report.letter
    if letter is None or not report.is_bounce:
        return  # unmatched reports and auto-replies change nothing
    if report.kind == K.HARD:
        _hard(report, letter)
    else:
        _soft(report, letter)


def _hard(report: BounceReport, letter: Letter) -> None:
    letter.status = Letter.Status.BOUNCED
    letter.last_reply = _reason(report)
    letter.save(update_fields=["status", "last_reply"])
    _suppress(letter, Suppression.Reason.HARD_BOUNCE, f"Hard bounce: {_reason(report)}")


def _soft(report: BounceReport, letter: Letter) -> None:
    if letter.status != Letter.Status.BOUNCED:  # a hard bounce says more
        letter.last_reply = f"Soft bounce: {_reason(report)}"
        letter.save(update_fields=["last_reply"])
    if soft_bounced_letters(tenant_id=letter.tenant_id, email=letter.email, until=report.received_at) >= soft_limit():
        _suppress(letter, Suppression.Reason.SOFT_BOUNCES, f"{soft_limit()} soft bounces: {_reason(report)}")


def soft_bounced_letters(*, tenant_id: int, email: str, until: datetime) -> int:
    """Distinct letters to `email` that soft-bounced within the window: a
    server repeating its "still trying" warning for one letter is one."""
    return (
        BounceReport.objects.filter(
            tenant_id=tenant_id,
            kind=K.SOFT,
            letter__isnull=False,
            letter__email__iexact=email,
            received_at__gt=until - soft_window(),
            received_at__lte=until,
        )
        .values("letter")
        .distinct()
        .count()
    )


def _suppress(letter: Letter, reason: str, note: str) -> None:
    try:
        suppression_add(tenant=letter.tenant, email=letter.email, reason=reason, note=note)
    except ValidationError:  # an address we sent to, but no longer valid syntax
        log.warning("bounced address %r could not be suppressed", letter.email)


def _reason(report: BounceReport) -> str:
    return (report.reason or "no reason given")[:500]


# ---------- reads for the pages ----------


def get_report(tenant: Tenant, public_id: object) -> BounceReport:
    return get_object_or_404(BounceReport.objects.select_related("letter__mailing"), tenant=tenant, public_id=public_id)


def mailing_bounces(mailing: Mailing) -> QuerySet[BounceReport]:
    return (
        BounceReport.objects.filter(tenant_id=mailing.tenant_id, letter__mailing=mailing, kind__in=[K.HARD, K.SOFT])
        .select_related("letter")
        .order_by("-received_at", "-pk")
    )


@dataclass
class BounceSummary:
    hard: int
    soft: int

    @property
    def total(self) -> int:
        return self.hard + self.soft


def mailing_bounce_summary(mailing: Mailing) -> BounceSummary:
    """Bounced letters, each counted once (hard wins over soft)."""
    counts = mailing_bounces(mailing).aggregate(
        hard=Count("letter", filter=Q(kind=K.HARD), distinct=True),
        soft=Count("letter", filter=Q(kind=K.SOFT) & ~Q(letter__status=Letter.Status.BOUNCED), distinct=True),
    )
    return BounceSummary(hard=counts["hard"], soft=counts["soft"])


def unmatched_reports(tenant: Tenant) -> QuerySet[BounceReport]:
    return BounceReport.objects.filter(tenant=tenant, letter__isnull=True).exclude(kind=K.AUTO_REPLY)
