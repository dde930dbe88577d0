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


def platform_quota(server: SmtpServer, tenant: Tenant) -> int | None:
    """The tenant's daily quota on a platform server (None: no quota)."""
    own = PlatformQuota.objects.filter(server=server, tenant=tenant).values_list("daily_quota", flat=True).first()
    return own if own is not None else server.tenant_daily_quota
