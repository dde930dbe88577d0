"""How much of the platform's own mail one person can cause: sign-ups,
verification resends, invitations and password resets, each counted per
target address, per signed-in user and per client address within
PLATFORM_MAIL_WINDOW seconds (accounts.ratelimits). Without them, revoking
and re-inviting sent thirty invitations to one address, and twenty password
resets went out in a row."""

from datetime import timedelta
from enum import StrEnum

from django.conf import settings
from django.utils.translation import ngettext_lazy

from . import ratelimits
from .models import User, normalize_email_address


class Kind(StrEnum):
    SIGNUP = "signup"
    VERIFICATION = "verification"
    INVITATION = "invitation"
    PASSWORD_RESET = "password_reset"


# What the person is told; the password reset's says nothing about whether
# the address has an account (it is counted alike either way).
REFUSALS = {
    Kind.SIGNUP: ngettext_lazy(
        "Too many sign-ups from here or for this address. Try again in %(minutes)s minute.",
        "Too many sign-ups from here or for this address. Try again in %(minutes)s minutes.",
        "minutes",
    ),
    Kind.VERIFICATION: ngettext_lazy(
        "Too many verification emails for this address. Try again in %(minutes)s minute.",
        "Too many verification emails for this address. Try again in %(minutes)s minutes.",
        "minutes",
    ),
    Kind.INVITATION: ngettext_lazy(
        "Too many invitations to this address or from you. Try again in %(minutes)s minute.",
        "Too many invitations to this address or from you. Try again in %(minutes)s minutes.",
        "minutes",
    ),
    Kind.PASSWORD_RESET: ngettext_lazy(
        "Too many password reset requests from here or for this address. Try again in %(minutes)s minute.",
        "Too many password reset requests from here or for this address. Try again in %(minutes)s minutes.",
        "minutes",
    ),
}


class MailLimited(Exception):
    def __init__(self, kind: Kind, exc: ratelimits.RateLimited) -> None:
        self.kind = kind
        self.retry_at = exc.retry_at
        self.message = REFUSALS[kind] % {"minutes": exc.minutes}
        super().__init__(self.message)


def limits_for(kind: Kind, *, to: str, user: User | None = None, client: str = "") -> list[ratelimits.Limit]:
    window = timedelta(seconds=settings.PLATFORM_MAIL_WINDOW)
    names = [(f"{kind}:to:{normalize_email_address(to)}", settings.PLATFORM_MAIL_PER_ADDRESS)]
    if user is not None:
        names.append((f"{kind}:user:{user.pk}", settings.PLATFORM_MAIL_PER_USER))
    if client:
        names.append((f"{kind}:client:{client}", settings.PLATFORM_MAIL_PER_CLIENT))
    return [ratelimits.Limit(name, limit, window) for name, limit in names]


def allow(kind: Kind, *, to: str, user: User | None = None, client: str = "") -> list[ratelimits.Limit]:
    """Count one letter of `kind`, or raise MailLimited; returns the limits
    counted, to give back if the letter does not go after all."""
    limits = limits_for(kind, to=to, user=user, client=client)
    try:
        ratelimits.hit(limits)
    except ratelimits.RateLimited as exc:
        raise MailLimited(kind, exc) from exc
    return limits
