"""Recording a bounce report and applying it, once. A hard bounce marks
the letter bounced and suppresses the address; a complaint (a feedback
loop's "marked as spam") suppresses the address and leaves the letter sent; a refusal (policy, spam,
content) marks it bounced and keeps the address; a soft one marks it
bounced only when it came back (not a delay warning), keeps the address,
and the address is suppressed after BOUNCE_SOFT_LIMIT soft bounces within
BOUNCE_SOFT_WINDOW_DAYS. Only a report tied to its letter by what Postroute
put on it is applied: an unconfirmed or unmatched one changes nothing.
An applied report is told to the tenant's webhooks when it is news for its
letter (_told): a second report of the same failure is not.
Which letter a report is about is matching's question; what a message says
is the parser's."""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from config import metrics
from servers.models import BounceMailbox

from .. import events
from ..contacts import suppression_add
from ..models import BounceReport, Letter, Suppression
from . import matching, parser

log = logging.getLogger(__name__)

K = BounceReport.Kind


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


def report_record(*, mailbox: BounceMailbox, source_key: str, parsed: parser.ParsedReport) -> BounceReport | None:
    """Store the report and apply it, once: None when it was already
    recorded (so a reader that died after this call counts nothing twice),
    or when the mailbox is a sending server's own (whose owner's mail is
    none of Postroute's business) and the report is not surely about a
    letter of ours: an address alone may be one the owner wrote to too."""
    if parsed.kind is None or report_exists(mailbox=mailbox, source_key=source_key, message_id=parsed.message_id):
        return None
    received_at = min(parsed.received_at or timezone.now(), timezone.now())
    letter, matched_by, recipient = matching.match(mailbox.tenant_id, parsed, received_at)
    if mailbox.server_id is not None and matched_by not in BounceReport.CONFIRMING:
        return None
    parsed = parsed.about(recipient)  # a report about several recipients says something of each
    if parsed.kind is None:
        return None  # this recipient's block says it was delivered: nothing to record of the letter
    try:
        with transaction.atomic():
            report = _create(mailbox, source_key, parsed, received_at, (letter, matched_by, recipient))
            _apply(report)
    except IntegrityError:  # recorded by a reader that overlapped ours
        return None
    return report


def is_ours(*, mailbox: BounceMailbox, source_key: str, parsed: parser.ParsedReport) -> bool:
    """Whether Postroute takes the message out of the inbox (IMAP) or may
    delete it (POP3): everything in the bounce mailbox but another tenant's
    reports (a mailbox two tenants read); in a sending server's own mailbox
    only reports recorded as about our letters."""
    if mailbox.server_id is None:
        return not matching.another_tenants(mailbox.tenant_id, parsed)
    return report_exists(mailbox=mailbox, source_key=source_key, message_id=parsed.message_id)


def _create(
    mailbox: BounceMailbox,
    source_key: str,
    parsed: parser.ParsedReport,
    received_at: datetime,
    matched: tuple[Letter | None, str, str],
) -> BounceReport:
    letter, matched_by, recipient = matched
    return BounceReport.objects.create(
        tenant_id=mailbox.tenant_id,
        mailbox=mailbox,
        source_key=source_key,
        letter=letter,
        kind=parsed.kind,
        returned=parsed.returned,
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


# ---------- applying ----------


def _apply(report: BounceReport) -> None:
    letter = report.letter
    if letter is None or not report.is_confirmed or not (report.is_bounce or report.kind == K.COMPLAINT):
        return  # unmatched or unconfirmed reports and auto-replies change nothing
    told = _told(report)
    if report.kind == K.COMPLAINT:
        # Delivered, then marked as spam: the letter stays sent; mailing the address again invites a block.
        _suppress(letter, Suppression.Reason.COMPLAINT, _("Complaint: %(reason)s") % {"reason": _reason(report)})
        if COMPLAINED not in told:
            events.letter_complained(report, letter)
        return
    if report.kind == K.HARD:
        _bounced(letter, _reason(report))
        _suppress(letter, Suppression.Reason.HARD_BOUNCE, _("Hard bounce: %(reason)s") % {"reason": _reason(report)})
    elif report.kind == K.REFUSED:
        _bounced(letter, _("Refused: %(reason)s") % {"reason": _reason(report)})  # the address is not to blame
    else:
        _soft(report, letter)
    if _news(report.kind, report.returned) > max(told, default=0):
        events.letter_bounced(report, letter)


# What a letter's reports have told its webhooks, from least to most: a
# delay warning (it may still arrive), the letter came back (bounced), its
# address is gone (hard); and apart, a complaint.
WARNED, CAME_BACK, GONE, COMPLAINED = 1, 2, 3, -1


def _news(kind: str, returned: bool) -> int:
    if kind == K.COMPLAINT:
        return COMPLAINED
    if kind == K.HARD:
        return GONE
    return CAME_BACK if returned or kind == K.REFUSED else WARNED


def _told(report: BounceReport) -> set[int]:
    """What the letter's earlier applied reports told: a report that says
    nothing more of the letter (a second DSN of other wording, a second
    feedback loop's complaint, a warning after the letter came back) is
    recorded and listed, but is no news for a webhook. The letter's row is
    locked first, so two readers recording reports of one letter at once
    (its bounce and its complaint arrive in different mailboxes) take
    turns and never both tell the same news."""
    Letter.objects.select_for_update().filter(pk=report.letter_id).values_list("pk").first()
    earlier = (
        BounceReport.objects.filter(letter_id=report.letter_id, matched_by__in=BounceReport.CONFIRMING)
        .filter(kind__in=(K.HARD, K.SOFT, K.REFUSED, K.COMPLAINT))
        .exclude(pk=report.pk)
        .values_list("kind", "returned")
    )
    return {_news(kind, returned) for kind, returned in earlier}


def _bounced(letter: Letter, reply: str) -> None:
    letter.status = Letter.Status.BOUNCED
    letter.last_reply = reply
    letter.save(update_fields=["status", "last_reply"])
    metrics.letter_result("bounced", server_id=letter.server_id)


def _soft(report: BounceReport, letter: Letter) -> None:
    """A delay warning leaves the letter sent (it may still arrive); a
    letter that came back (a full mailbox, a server that gave up retrying)
    is bounced. Either way the address stays, until the soft limit."""
    if letter.status != Letter.Status.BOUNCED:  # a hard bounce says more
        reply = _("Soft bounce: %(reason)s") % {"reason": _reason(report)}
        if report.returned:
            _bounced(letter, reply)
        else:
            letter.last_reply = reply
            letter.save(update_fields=["last_reply"])
    if soft_bounced_letters(tenant_id=letter.tenant_id, email=letter.email, until=report.received_at) >= soft_limit():
        _suppress(
            letter,
            Suppression.Reason.SOFT_BOUNCES,
            _("%(soft_limit)s soft bounces: %(reason)s") % {"soft_limit": soft_limit(), "reason": _reason(report)},
        )


def soft_bounced_letters(*, tenant_id: int, email: str, until: datetime) -> int:
    """Distinct letters to `email` that soft-bounced within the window: a
    server repeating its "still trying" warning for one letter is one."""
    return (
        BounceReport.objects.filter(
            tenant_id=tenant_id,
            kind=K.SOFT,
            letter__isnull=False,
            matched_by__in=BounceReport.CONFIRMING,
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
    return (report.reason or _("no reason given"))[:500]
