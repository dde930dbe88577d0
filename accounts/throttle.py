"""Login throttling: after LOGIN_FAILURE_LIMIT failures for an account or a
client address, further attempts are refused for LOGIN_LOCKOUT_SECONDS.
Wrong passwords and wrong codes count apart per account, and each address
counts both; the staff login counts all three (accounts.staff)."""

import hashlib
import ipaddress
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import ngettext

from .models import AuthThrottle, normalize_email_address


def client_ip(request: HttpRequest) -> str:
    """The client's address as the limits count it. An IPv6 client counts
    by its /64, which one subscriber holds whole: an address of its own for
    each try gave a sprayer 2^64 fresh counters. An IPv4-mapped address
    counts as its IPv4."""
    address = request.META.get("REMOTE_ADDR", "")
    if settings.NUM_PROXIES:
        hops = [h.strip() for h in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if h.strip()]
        if len(hops) >= settings.NUM_PROXIES:
            address = hops[-settings.NUM_PROXIES]
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ip.ipv4_mapped or ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def _key(raw: str) -> str:
    """Keys are hashed so the table holds no addresses in clear."""
    return hashlib.sha256(raw.encode()).hexdigest()


def password_key(email: str) -> str:
    """Wrong passwords for an account, whichever spelling of its address
    was typed (an IDN domain in ASCII or in Unicode); a right password
    clears it."""
    return _key(f"account:{normalize_email_address(email)}")


def code_key(email: str) -> str:
    """Wrong second-factor codes for an account. Only a right code clears
    it: passing the password step again, from any address, does not."""
    return _key(f"code:{normalize_email_address(email)}")


def address_key(request: HttpRequest) -> str:
    return _key(f"ip:{client_ip(request)}")


def keys_for(request: HttpRequest, email: str) -> list[str]:
    """The password step's keys: the account's, then the address's."""
    return [password_key(email), address_key(request)]


def code_keys_for(request: HttpRequest, email: str) -> list[str]:
    """The code step's keys: the account's codes, then the address's."""
    return [code_key(email), address_key(request)]


def locked_until(keys: list[str]) -> datetime | None:
    now = timezone.now()
    until = (
        AuthThrottle.objects.filter(key__in=keys, locked_until__gt=now)
        .order_by("-locked_until")
        .values_list("locked_until", flat=True)
        .first()
    )
    return until


def record_failure(keys: list[str]) -> None:
    now = timezone.now()
    window = timedelta(seconds=settings.LOGIN_LOCKOUT_SECONDS)
    for key in keys:
        with transaction.atomic():
            row, _ = AuthThrottle.objects.select_for_update().get_or_create(key=key)
            if row.first_failure_at < now - window or (row.locked_until and row.locked_until <= now):
                row.failures, row.first_failure_at, row.locked_until = 0, now, None
            row.failures += 1
            if row.failures >= settings.LOGIN_FAILURE_LIMIT:
                row.locked_until = now + window
            row.save(update_fields=["failures", "first_failure_at", "locked_until"])


def reset(keys: list[str]) -> None:
    AuthThrottle.objects.filter(key__in=keys).delete()


def lockout_message(until: datetime) -> str:
    minutes = max(1, round((until - timezone.now()).total_seconds() / 60))
    return ngettext(
        "Too many failed attempts. For your security, sign-in is paused; try again in %(minutes)s minute.",
        "Too many failed attempts. For your security, sign-in is paused; try again in %(minutes)s minutes.",
        minutes,
    ) % {"minutes": minutes}
