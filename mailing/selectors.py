"""Reads for the mailing pages and the tenant's checklist."""

from collections import defaultdict
from dataclasses import dataclass, field

from django.db.models import Count

from accounts.models import Tenant

from .models import Contact, Letter, Mailing, MailTemplate

L = Letter.Status


def has_template(tenant: Tenant) -> bool:
    return MailTemplate.objects.filter(tenant=tenant).exists()


def has_contacts(tenant: Tenant) -> bool:
    return Contact.objects.filter(tenant=tenant).exists()


def has_started_mailing(tenant: Tenant) -> bool:
    return Mailing.objects.filter(tenant=tenant, started_at__isnull=False).exists()


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
