"""Writes for webhook endpoints. The secret is made here, returned once to
be shown once, and stored encrypted; every change drops the tenant's cached
subscriptions (events.subscribed_types) once it commits."""

from collections.abc import Iterable

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from ..models import Tenant
from . import events, signing
from .models import WebhookEndpoint

MAX_ENDPOINTS = 10  # per organisation
SETTINGS = ["url", "description", "events", "updated_at"]


def _forget(tenant_id: int) -> None:
    transaction.on_commit(lambda: events.forget_subscriptions(tenant_id))


def _ordered(chosen: Iterable[str]) -> list[str]:
    wanted = set(chosen)
    return [name for name in events.TYPES if name in wanted] + sorted(wanted - set(events.TYPES))


@transaction.atomic
def endpoint_create(*, tenant: Tenant, url: str, events: Iterable[str], description: str = "") -> tuple[
    WebhookEndpoint, str
]:  # fmt: skip
    """The new endpoint and its secret (to show once)."""
    Tenant.objects.select_for_update().only("pk").get(pk=tenant.pk)  # the count below stays exact
    if WebhookEndpoint.objects.filter(tenant=tenant).count() >= MAX_ENDPOINTS:
        raise ValidationError(_("An organisation may have at most %(count)s endpoints.") % {"count": MAX_ENDPOINTS})
    secret = signing.new_secret()
    endpoint = WebhookEndpoint(tenant=tenant, url=url.strip(), description=description, events=_ordered(events))
    endpoint.set_secret(secret)
    endpoint.full_clean()
    endpoint.save()
    _forget(tenant.pk)
    return endpoint, secret


@transaction.atomic
def endpoint_update(*, endpoint: WebhookEndpoint, url: str, events: Iterable[str], description: str = "") -> None:
    endpoint.url, endpoint.description, endpoint.events = url.strip(), description, _ordered(events)
    endpoint.updated_at = timezone.now()
    endpoint.full_clean()
    endpoint.save(update_fields=SETTINGS)
    _forget(endpoint.tenant_id)


@transaction.atomic
def endpoint_set_enabled(*, endpoint: WebhookEndpoint, enabled: bool) -> None:
    endpoint.enabled, endpoint.updated_at = enabled, timezone.now()
    endpoint.save(update_fields=["enabled", "updated_at"])
    _forget(endpoint.tenant_id)


@transaction.atomic
def endpoint_rotate_secret(*, endpoint: WebhookEndpoint) -> str:
    """A new secret, used from the next attempt on; the old one stops."""
    secret = signing.new_secret()
    endpoint.set_secret(secret)
    endpoint.updated_at = timezone.now()
    endpoint.save(update_fields=["secret_encrypted", "updated_at"])
    return secret


@transaction.atomic
def endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    """With its deliveries and their log."""
    tenant_id = endpoint.tenant_id
    endpoint.delete()
    _forget(tenant_id)
