"""One access helper per tenant-owned model of this app: the request's
tenant and the public id give the object, or 404."""

from django.shortcuts import get_object_or_404

from accounts.models import Tenant

from .models import BounceMailbox, ConnectionTest, SmtpServer


def get_server(tenant: Tenant, public_id: object) -> SmtpServer:
    return get_object_or_404(SmtpServer, tenant=tenant, public_id=public_id)


def get_mailbox(tenant: Tenant) -> BounceMailbox | None:
    """The tenant's bounce mailbox (not a server's own)."""
    return BounceMailbox.objects.filter(tenant=tenant, server=None).first()


def get_connection_test(tenant: Tenant, public_id: object) -> ConnectionTest:
    return get_object_or_404(
        ConnectionTest.objects.select_related("server", "mailbox"), tenant=tenant, public_id=public_id
    )
