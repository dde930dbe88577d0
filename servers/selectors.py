from dataclasses import dataclass

from django.conf import settings
from django.db.models import FilteredRelation, Q, QuerySet

from accounts.models import Tenant
from accounts.selectors import quota_group

from .models import SmtpServer


def has_own_server(tenant: Tenant) -> bool:
    return SmtpServer.objects.filter(tenant=tenant).exists()


def tenant_servers(tenant: Tenant) -> QuerySet[SmtpServer]:
    return SmtpServer.objects.filter(tenant=tenant).order_by("priority", "pk")


def platform_servers() -> QuerySet[SmtpServer]:
    """The platform's default servers every SaaS tenant may use."""
    if settings.DEPLOYMENT_MODE != "saas":
        return SmtpServer.objects.none()
    return SmtpServer.objects.filter(tenant=None, enabled=True).order_by("priority", "pk")


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
