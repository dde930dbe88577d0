"""Which letter a report is about, within the report's tenant (a report in
tenant A's mailbox never touches tenant B's letters, even when it names
their ids), and how sure that is.

Firm: what Postroute itself put on the letter and the report carries back,
the X-Postroute-Letter header or the Message-ID of the returned original,
or the envelope token in the address the report was sent to. Loose: the
failed recipient and the time (anyone who knows an address we mailed can
write such a report); a loose match is shown as unconfirmed and never acted
on."""

import uuid
from datetime import datetime, timedelta

from django.db.models import Q

from ..addresses import address_forms
from ..models import BounceReport, Letter
from . import parser, tokens

K = BounceReport.Kind
M = BounceReport.MatchedBy
# A report about a letter sent long ago is not tied to it by address alone.
MATCH_WINDOW = timedelta(days=7)
CLOCK_SKEW = timedelta(hours=1)


def match(tenant_id: int, parsed: parser.ParsedReport, received_at: datetime) -> tuple[Letter | None, str, str]:
    """The letter the report is about: by the header the letter carried,
    else its Message-ID, else the envelope token, else (unconfirmed) a
    recipient the tenant sent to shortly before."""
    fallback = parsed.recipients[0] if parsed.recipients else ""
    by_token = [str(i) for t in parsed.envelope_tokens if (i := tokens.read(t))]
    for ids, how in ((parsed.letter_ids, M.HEADER), (parsed.message_letter_ids, M.MESSAGE_ID), (by_token, M.TOKEN)):
        if letter := _letter_by_ids(tenant_id, ids, parsed.recipients):
            return letter, how, letter.email
    if parsed.kind != K.AUTO_REPLY:
        for recipient in parsed.recipients:
            if letter := _letter_by_recipient(tenant_id, recipient, received_at):
                return letter, M.RECIPIENT, letter.email
    return None, M.NONE, fallback


def another_tenants(tenant_id: int, parsed: parser.ParsedReport) -> bool:
    """Tied firmly to another tenant's letter and to none of this one's: a
    mailbox two tenants read (one company's organisations) holds the
    reports of both, and each reader must leave the other's where it reads.
    Asks only whether such a letter exists, nothing of it."""
    by_token = [str(i) for t in parsed.envelope_tokens if (i := tokens.read(t))]
    ids = [i for i in (*parsed.letter_ids, *parsed.message_letter_ids, *by_token) if _is_uuid(i)]
    if not ids:
        return False
    tenants = set(Letter.objects.filter(public_id__in=ids).values_list("tenant_id", flat=True))
    return bool(tenants) and tenant_id not in tenants


def _letter_by_ids(tenant_id: int, ids: list[str], recipients: list[str]) -> Letter | None:
    valid = [i for i in ids if _is_uuid(i)]
    if not valid:
        return None
    letters = list(Letter.objects.filter(tenant_id=tenant_id, public_id__in=valid).select_related("mailing"))
    # Several originals quoted: prefer the one whose address failed, in whichever form the report names it.
    wanted = {form.lower() for r in recipients for form in address_forms(r)}
    return next((x for x in letters if x.email.lower() in wanted), letters[0] if letters else None)


def _letter_by_recipient(tenant_id: int, recipient: str, received_at: datetime) -> Letter | None:
    return (
        Letter.objects.filter(
            _any_form(recipient),
            tenant_id=tenant_id,
            sent_at__gte=received_at - MATCH_WINDOW,
            sent_at__lte=received_at + CLOCK_SKEW,
        )
        .select_related("mailing")
        .order_by("-sent_at", "-pk")
        .first()
    )


def _any_form(recipient: str) -> Q:
    """The recipient in any case, its domain in IDNA or in Unicode: the
    letter keeps the address as imported, the report names it as it went
    out (jane@xn--e1afmkfd.xn--p1ai for jane@пример.рф) or the reverse."""
    query = Q()
    for form in address_forms(recipient):
        query |= Q(email__iexact=form)
    return query


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
