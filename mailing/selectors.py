"""Reads for the mailing pages and the tenant's checklist."""

from collections import defaultdict
from dataclasses import dataclass, field
from typing import NamedTuple

from django.db.models import Count, Exists, OuterRef

from accounts.models import Tenant

from .models import Contact, Letter, Mailing, MailTemplate

L = Letter.Status


class FirstSteps(NamedTuple):
    template: bool
    contacts: bool
    mailing: bool  # a mailing was started


def first_steps(tenant: Tenant) -> FirstSteps:
    """The getting-started steps that are mailing's, in one query (the
    dashboard's every changed poll reads them)."""
    done = (
        Tenant.objects.filter(pk=tenant.pk)
        .annotate(
            has_template=Exists(MailTemplate.objects.filter(tenant=OuterRef("pk"))),
            has_contacts=Exists(Contact.objects.filter(tenant=OuterRef("pk"))),
            has_started=Exists(Mailing.objects.filter(tenant=OuterRef("pk"), started_at__isnull=False)),
        )
        .values_list("has_template", "has_contacts", "has_started")
        .get()
    )
    return FirstSteps(*done)


@dataclass
class Progress:
    total: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, status: str) -> int:
        return self.counts.get(status, 0)

    @property
    def waiting(self) -> int:
        return self.count(L.QUEUED) + self.count(L.DEFERRED) + self.count(L.SENDING)

    @property
    def done(self) -> int:
        return self.count(L.SENT) + self.count(L.FAILED) + self.count(L.BOUNCED)


def progress_for(mailings: list[Mailing]) -> dict[int, Progress]:
    """Letter counts by status for several mailings in one query."""
    result: dict[int, Progress] = defaultdict(Progress)
    rows = (
        Letter.objects.filter(mailing__in=[m.pk for m in mailings])
        .values_list("mailing_id", "status")
        .annotate(n=Count("id"))
        .order_by()
    )
    for mailing_id, status, n in rows:
        result[mailing_id].counts[status] = n
        result[mailing_id].total += n
    return result


def letters_page(mailing: Mailing, *, status: str | None, after: int | None, size: int = 100) -> list[Letter]:
    """Keyset pagination: fast on page 1 and on page 1,000 alike."""
    letters = Letter.objects.filter(mailing=mailing).select_related("server")
    if status:
        letters = letters.filter(status=status)
    if after:
        letters = letters.filter(pk__gt=after)
    return list(letters.order_by("pk")[: size + 1])
