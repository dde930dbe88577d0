from django.conf import settings
from django.db.models import QuerySet

from accounts.models import Tenant

from .models import PlatformQuota, SmtpServer


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
