"""Tenant scope for views: the decorator that requires a current tenant, and
one access helper per tenant-owned model. Another tenant's object is a 404."""

from collections.abc import Callable
from functools import wraps

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from .models import MANAGER_ROLES, ApiKey, Invitation, Membership, Tenant, WebhookEndpoint

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def tenant_required(
    view: Callable[..., HttpResponse] | None = None, *, write_roles: frozenset[str] | None = None
) -> Callable[..., HttpResponse]:
    """Require a current, active tenant. With write_roles, members whose role
    is not listed may read (GET) but get 403 on any write."""

    def decorate(fn: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(fn)
        def wrapper(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
            membership = request.membership
            if membership is None:
                return redirect("accounts:tenant_new")
            if not membership.tenant.is_active:
                return render(request, "accounts/suspended.html", {"tenant": membership.tenant}, status=403)
            if write_roles and request.method not in SAFE_METHODS and membership.role not in write_roles:
                raise PermissionDenied("Your role does not allow this change.")
            return fn(request, *args, **kwargs)

        # Read by the isolation walk (tests/security), as Django marks
        # login_required views: which roles this view lets write.
        wrapper.write_roles = write_roles  # type: ignore[attr-defined]
        return wrapper

    return decorate(view) if view is not None else decorate


manager_required = tenant_required(write_roles=MANAGER_ROLES)


def get_membership(tenant: Tenant, public_id: object) -> Membership:
    return get_object_or_404(Membership.objects.select_related("user"), tenant=tenant, public_id=public_id)


def get_invitation(tenant: Tenant, public_id: object) -> Invitation:
    return get_object_or_404(Invitation, tenant=tenant, public_id=public_id)


def get_api_key(tenant: Tenant, public_id: object) -> ApiKey:
    return get_object_or_404(ApiKey, tenant=tenant, public_id=public_id)


def get_webhook_endpoint(tenant: Tenant, public_id: object) -> WebhookEndpoint:
    return get_object_or_404(WebhookEndpoint, tenant=tenant, public_id=public_id)
