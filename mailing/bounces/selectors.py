"""Reads of bounce reports for the pages: one report, a mailing's bounces
and their summary, the tenant's unmatched reports."""

from dataclasses import dataclass

from django.db.models import Count, Q, QuerySet
from django.shortcuts import get_object_or_404

from accounts.models import Tenant

from ..models import BounceReport, Letter, Mailing

K = BounceReport.Kind


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
