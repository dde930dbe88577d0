from dataclasses import dataclass

from django.conf import settings
from django.db.models import QuerySet

from accounts.models import Tenant

from .models import BounceMailbox, PlatformQuota, SmtpServer


def has_own_server(tenant: Tenant) -> bool:
    return SmtpServer.objects.filter(tenant=tenant).exists()


def tenant_servers(tenant: Tenant) -> QuerySet[SmtpServer]:
    return SmtpServer.objects.filter(tenant=tenant).order_by("priority", "pk")


def platform_servers() -> QuerySet[SmtpServer]:
    """The platform's default servers every SaaS tenant may use."""
    if settings.DEPLOYMENT_MODE != "saas":
        return SmtpServer.objects.none()
    return SmtpServer.objects.filter(tenant=None, enabled=True).order_by("priority", "pk")


def platform_quotas(servers: list[SmtpServer], tenant: Tenant) -> dict[int, int | None]:
    """The tenant's daily quota on each platform server, in one query: its
    own PlatformQuota, else the server's default (None: no quota)."""
    if not servers:
        return {}
    own = dict(PlatformQuota.objects.filter(server__in=servers, tenant=tenant).values_list("server_id", "daily_quota"))
    return {s.pk: own.get(s.pk, s.tenant_daily_quota) for s in servers}


def platform_quota(server: SmtpServer, tenant: Tenant) -> int | None:
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


def report_routes(tenant_id: int, servers: list[SmtpServer]) -> dict[int, ReportRoute]:
    """For each server, in one query: a server that allows sender
    substitution sends with the tenant's bounce mailbox as envelope sender
    (tagged per letter when that mailbox takes plus-addresses); any other
    server sends from its own mailbox, where its reports land, read when the
    server's mailbox is read for bounces (or is the bounce mailbox itself)."""
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
