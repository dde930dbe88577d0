from dataclasses import dataclass

from django.conf import settings
from django.db.models import Case, FilteredRelation, Q, QuerySet, Value, When

from accounts.models import Tenant
from accounts.selectors import quota_group

from .models import BounceMailbox, SmtpServer


def has_own_server(tenant: Tenant) -> bool:
    return SmtpServer.objects.filter(tenant=tenant).exists()


def tenant_servers(tenant: Tenant) -> QuerySet[SmtpServer]:
    return SmtpServer.objects.filter(tenant=tenant).order_by("priority", "pk")


def platform_servers() -> QuerySet[SmtpServer]:
    """The platform's default servers every SaaS tenant may use."""
    if settings.DEPLOYMENT_MODE != "saas":
        return SmtpServer.objects.none()
    return SmtpServer.objects.filter(tenant=None, enabled=True).order_by("priority", "pk")


def tenant_and_platform_servers(tenant: Tenant) -> list[SmtpServer]:
    """tenant_servers() then platform_servers(), in one query."""
    shown = Q(tenant=tenant)
    if settings.DEPLOYMENT_MODE == "saas":
        shown |= Q(tenant=None, enabled=True)
    platform_last = Case(When(tenant=None, then=Value(1)), default=Value(0))
    return list(SmtpServer.objects.filter(shown).order_by(platform_last, "priority", "pk"))


@dataclass(frozen=True)
class Quotas:
    """A tenant's daily quotas on one platform server (None: no quota).

    Every organisation one account created shares one daily quota on each
    platform server, the largest of their own quotas, so that creating
    organisations multiplies nothing; each also keeps its own quota."""

    own: int | None
    shared: int | None
    organisations: int = 1  # how many share it, this one included


def platform_quotas(servers: list[SmtpServer], tenant: Tenant) -> dict[int, Quotas]:
    """The tenant's quotas on each platform server, in one query: each
    organisation of its quota group with its PlatformQuota rows on these
    servers (a quota is the row's, else the server's default)."""
    if not servers:
        return {}
    on_these = Q(platform_quotas__server__in=[s.pk for s in servers])
    rows = (
        quota_group(tenant)
        .annotate(quota=FilteredRelation("platform_quotas", condition=on_these))
        .values_list("pk", "quota__server_id", "quota__daily_quota")
        .order_by()
    )
    members, own = {tenant.pk}, {}
    for tenant_id, server_id, quota in rows:
        members.add(tenant_id)
        if server_id is not None:
            own[server_id, tenant_id] = quota
    return {s.pk: _quotas(s, tenant, members, own) for s in servers}


def _quotas(server: SmtpServer, tenant: Tenant, members: set[int], own: dict[tuple[int, int], int]) -> Quotas:
    each = [own.get((server.pk, member), server.tenant_daily_quota) for member in members]
    shared = None if None in each else max(each)
    return Quotas(own.get((server.pk, tenant.pk), server.tenant_daily_quota), shared, len(members))


def platform_quota(server: SmtpServer, tenant: Tenant) -> Quotas:
    return platform_quotas([server], tenant)[server.pk]


@dataclass(frozen=True)
class ReportRoute:
    """Where a server's delivery reports go (the envelope sender of its
    letters), and the mailbox Postroute reads there, if any."""

    address: str
    mailbox: BounceMailbox | None
    # Each letter's return address carries its token (address+token@domain).
    tagged: bool = False

    @property
    def read(self) -> bool:
        return self.mailbox is not None and self.mailbox.enabled

    @property
    def to_bounce_mailbox(self) -> bool:
        return self.mailbox is not None and self.mailbox.server_id is None


def tenant_mailbox(mailboxes: list[BounceMailbox]) -> BounceMailbox | None:
    """The tenant's bounce mailbox among its mailboxes, when it can take
    reports: enabled, with an address."""
    return next((m for m in mailboxes if m.server_id is None and m.enabled and m.address), None)


def report_routes(
    tenant_id: int, servers: list[SmtpServer], mailboxes: list[BounceMailbox] | None = None
) -> dict[int, ReportRoute]:
    """For each server, in one query: a server that allows sender
    substitution sends with the tenant's bounce mailbox as envelope sender
    (tagged per letter when that mailbox takes plus-addresses); any other
    server sends from its own mailbox, where its reports land, read when the
    server's mailbox is read for bounces (or is the bounce mailbox itself).
    `mailboxes`: the tenant's, when the caller has them already."""
    if mailboxes is None:
        mailboxes = list(BounceMailbox.objects.filter(tenant_id=tenant_id))
    own = tenant_mailbox(mailboxes)
    by_server = {m.server_id: m for m in mailboxes if m.server_id is not None}
    by_address = {m.address.lower(): m for m in mailboxes if m.address}
    routes = {}
    for server in servers:
        if server.allow_sender_substitution and own is not None:
            routes[server.pk] = ReportRoute(own.address, own, tagged=own.plus_addressing)
            continue
        mailbox = by_server.get(server.pk) or by_address.get(server.sender_email.lower())
        tagged = server.allow_sender_substitution and mailbox is not None and mailbox.plus_addressing
        routes[server.pk] = ReportRoute(server.sender_email, mailbox, tagged=tagged)
    return routes
