from django.db import models
from django.utils.translation import gettext_lazy as _

from accounts.models import Tenant
from servers.models import SmtpServer


class UsageBucket(models.Model):
    """How many letters a tenant handed to a server during one minute (UTC).

    The hourly and daily windows are sums over these rows (mailing.limits),
    so counting never scans the letters table and a window costs at most
    1,441 small rows per server. On a platform server each tenant has its own
    rows: the server's limits sum all of them, a tenant's quota only its own."""

    server = models.ForeignKey(
        SmtpServer,
        on_delete=models.CASCADE,
        related_name="usage_buckets",
        verbose_name=_("sending server"),
        db_index=False,
    )
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+", verbose_name=_("organisation"))
    minute = models.DateTimeField(_("minute"))  # aware, truncated to the minute, UTC
    count = models.PositiveIntegerField(_("letters"), default=0)

    class Meta:
        verbose_name = _("usage per minute")
        verbose_name_plural = _("usage per minute")
        constraints = [
            models.UniqueConstraint(fields=["server", "tenant", "minute"], name="usage_bucket_unique"),
        ]
        # The windows of a server across all its tenants; the tenant's own
        # sums use the unique constraint's index.
        indexes = [models.Index(fields=["server", "minute"], name="usage_bucket_server_minute")]

    def __str__(self) -> str:
        return f"{self.count} on server {self.server_id} at {self.minute:%Y-%m-%d %H:%M}"


class SlotWait(models.Model):
    """A tenant's chain waiting for a connection slot of a platform server.
    While it waits, the chains of other tenants that finish a batch leave the
    slot to it (mailing.dispatch.batch), so that one tenant's big mailing
    cannot hold a shared server batch after batch while another tenant's
    chain polls in vain. A waiter that stopped asking is forgotten."""

    server = models.ForeignKey(
        SmtpServer, on_delete=models.CASCADE, related_name="+", verbose_name=_("sending server"), db_index=False
    )
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+", verbose_name=_("organisation"))
    since = models.DateTimeField(_("waiting since"))
    seen = models.DateTimeField(_("last seen"))

    class Meta:
        verbose_name = _("wait for a connection slot")
        verbose_name_plural = _("waits for a connection slot")
        constraints = [models.UniqueConstraint(fields=["server", "tenant"], name="slot_wait_unique")]

    def __str__(self) -> str:
        return f"tenant {self.tenant_id} waits for server {self.server_id} since {self.since}"
