"""API keys: made by owners and admins, shown once, kept as a SHA-256 of
the secret. The API (mailing.api.auth) finds a key by that hash and refuses
a revoked key and a suspended organisation's."""

import hashlib
import secrets
from collections.abc import Iterable
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from .models import ApiKey, ApiScope, Tenant, User

PREFIX = "pr_"
VISIBLE = len(PREFIX) + 8  # the secret's start shown on the page
MAX_ACTIVE_KEYS = 50
# last_used_at is written at most this often per key: a key that calls
# the API a thousand times a minute costs one UPDATE a minute, not a thousand.
TOUCH_EVERY = timedelta(minutes=1)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


@transaction.atomic
def api_key_create(*, tenant: Tenant, by: User, name: str, scopes: Iterable[str]) -> tuple[ApiKey, str]:
    """A new key and its secret, which is never stored nor shown again."""
    Tenant.objects.select_for_update().filter(pk=tenant.pk).first()  # the cap below is exact
    if ApiKey.objects.filter(tenant=tenant, revoked_at=None).count() >= MAX_ACTIVE_KEYS:
        raise ValidationError(
            _("An organisation may have %(count)s active keys. Revoke one first.") % {"count": MAX_ACTIVE_KEYS}
        )
    chosen = [s for s in ApiScope.values if s in set(scopes)]
    if not chosen:
        raise ValidationError({"scopes": _("Choose at least one scope.")})
    secret = PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        tenant=tenant,
        name=" ".join(name.split()),
        scopes=chosen,
        prefix=secret[:VISIBLE],
        secret_hash=hash_secret(secret),
        created_by=by,
    )
    key.full_clean()
    key.save()
    return key, secret


def api_key_revoke(*, api_key: ApiKey) -> None:
    """Revoked at once for every request that starts after this."""
    ApiKey.objects.filter(pk=api_key.pk, revoked_at=None).update(revoked_at=timezone.now())


def api_key_for_secret(secret: str) -> ApiKey | None:
    """The key a secret stands for, with its tenant, revoked or not."""
    if not secret.startswith(PREFIX) or len(secret) > 100:
        return None
    return ApiKey.objects.select_related("tenant").filter(secret_hash=hash_secret(secret)).first()


def api_key_touch(*, api_key: ApiKey) -> None:
    """Note the key's use, unless it was noted less than TOUCH_EVERY ago:
    a conditional UPDATE, so racing requests write once between them."""
    now = timezone.now()
    if api_key.last_used_at is not None and now - api_key.last_used_at < TOUCH_EVERY:
        return
    stale = Q(last_used_at=None) | Q(last_used_at__lt=now - TOUCH_EVERY)
    ApiKey.objects.filter(stale, pk=api_key.pk).update(last_used_at=now)
    api_key.last_used_at = now
