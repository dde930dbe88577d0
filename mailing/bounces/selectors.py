"""Reads of bounce reports for the pages: one report, a mailing's bounces
and their summary, the tenant's unmatched and unconfirmed reports."""

from dataclasses import dataclass

from django.db.models import Count, Q, QuerySet
from django.shortcuts import get_object_or_404

from accounts.models import Tenant

from ..models import BounceReport, Letter, Mailing

K = BounceReport.Kind


def get_report(tenant: Tenant, public_id: object) -> BounceReport:
    return get_object_or_404(BounceReport.objects.select_related("letter__mailing"), tenant=tenant, public_id=public_id)


BOUNCES = (K.HARD, K.SOFT, K.REFUSED)
# What a mailing's page lists: its bounces and the complaints about its letters.
LISTED = (*BOUNCES, K.COMPLAINT)
CONFIRMED = Q(matched_by__in=BounceReport.CONFIRMING)


def mailing_bounces(mailing: Mailing) -> QuerySet[BounceReport]:
    """Its delivery reports and complaints, confirmed or not (the page
    marks which)."""
    return (
        BounceReport.objects.filter(tenant_id=mailing.tenant_id, letter__mailing=mailing, kind__in=LISTED)
        .select_related("letter")
        .order_by("-received_at", "-pk")
    )


@dataclass
class BounceSummary:
    hard: int
    soft: int
    refused: int = 0
    unconfirmed: int = 0  # reports tied only by recipient and time: not counted above

    @property
    def total(self) -> int:
        return self.hard + self.soft + self.refused


def mailing_bounce_summary(mailing: Mailing) -> BounceSummary:
    """Bounced letters, each counted once (a bounce wins over a soft one),
    from confirmed reports; unconfirmed ones apart."""
    counts = mailing_bounces(mailing).aggregate(
        hard=Count("letter", filter=CONFIRMED & Q(kind=K.HARD), distinct=True),
        refused=Count("letter", filter=CONFIRMED & Q(kind=K.REFUSED), distinct=True),
        soft=Count(
            "letter", filter=CONFIRMED & Q(kind=K.SOFT) & ~Q(letter__status=Letter.Status.BOUNCED), distinct=True
        ),
        unconfirmed=Count("letter", filter=~CONFIRMED, distinct=True),
    )
    return BounceSummary(**counts)


def unmatched_reports(tenant: Tenant) -> QuerySet[BounceReport]:
    return BounceReport.objects.filter(tenant=tenant, letter__isnull=True).exclude(kind=K.AUTO_REPLY)


def unconfirmed_reports(tenant: Tenant) -> QuerySet[BounceReport]:
    """Reports naming a recipient the tenant mailed, but nothing Postroute
    put on the letter: shown, never acted on."""
    return (
        BounceReport.objects.filter(tenant=tenant, letter__isnull=False, kind__in=LISTED)
        .exclude(CONFIRMED)
        .select_related("letter__mailing")
    )
