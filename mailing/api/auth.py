"""Who calls: `Authorization: Bearer <key>` names one API key, which acts
for exactly one tenant. A revoked key, an unknown one and a suspended
organisation's are refused; a key may do only what its scopes allow."""

from datetime import timedelta

from django.conf import settings
from django.utils.translation import gettext as _
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import BasePermission
from rest_framework.throttling import BaseThrottle

from accounts import api_keys, ratelimits
from accounts.models import ApiKey

from .problems import Problem


class ApiKeyAuthentication(BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].decode("latin-1").lower() != self.keyword.lower():
            return None  # no key: NotAuthenticated (401) once a view asks
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed(_("Send the key as “Authorization: Bearer <key>”."))
        key = api_keys.api_key_for_secret(parts[1].decode("latin-1"))
        if key is None or not key.is_active:
            raise exceptions.AuthenticationFailed(_("This API key is not valid, or it was revoked."))
        if not key.tenant.is_active:
            raise Problem(
                403, "suspended", _("Organisation suspended"), _("The organisation of this key is suspended.")
            )
        api_keys.api_key_touch(api_key=key)
        return (key.created_by, key)

    def authenticate_header(self, request) -> str:
        return f'{self.keyword} realm="api"'


class HasScope(BasePermission):
    """The view names the scope each method needs (`scopes`); a method it
    does not name needs a key all the same, and ends in 405."""

    def has_permission(self, request, view) -> bool:
        key = request.auth
        if not isinstance(key, ApiKey):
            raise exceptions.NotAuthenticated(_("Send an API key: “Authorization: Bearer <key>”."))
        method = "GET" if request.method == "HEAD" else request.method
        needed = view.scopes.get(method)
        if needed is not None and needed not in key.scopes:
            raise Problem(
                403,
                "scope",
                _("Missing scope"),
                _("This key lacks the “%(scope)s” scope that this request needs.") % {"scope": needed},
            )
        return True


class KeyRateThrottle(BaseThrottle):
    """API_RATE_LIMIT requests a minute per key, and API_TENANT_RATE_LIMIT
    for all the keys of an organisation together (else one with many keys
    had as many times the capacity, and its flood was everyone's), counted
    in the database (accounts.ratelimits) like the platform's other limits:
    every web process sees the same count whatever cache is configured, and
    a refused request counts against neither."""

    def allow_request(self, request, view) -> bool:
        self.retry_at = None
        key = request.auth
        if not isinstance(key, ApiKey):
            return True
        minute = timedelta(minutes=1)
        limits = [
            ratelimits.Limit(f"api:key:{key.pk}", settings.API_RATE_LIMIT, minute),
            ratelimits.Limit(f"api:tenant:{key.tenant_id}", settings.API_TENANT_RATE_LIMIT, minute),
        ]
        try:
            ratelimits.hit(limits)
        except ratelimits.RateLimited as exc:
            self.retry_at = exc.retry_at
            return False
        return True

    def wait(self) -> float | None:
        from django.utils import timezone

        if self.retry_at is None:
            return None
        return max(1.0, (self.retry_at - timezone.now()).total_seconds())
