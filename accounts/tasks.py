"""Celery tasks of the accounts app: the platform's own mail, on the `mail`
queue (config/settings.py), and beat's purge of rate limit windows. Each
letter is one exchange with the platform's mail server, every socket
operation of which waits at most EMAIL_TIMEOUT; the time limits are a
backstop."""

from celery import shared_task

from . import emails, ratelimits
from .models import Invitation, User
from .webhooks import tasks as webhook_tasks  # noqa: F401 - registers them with the worker

PLATFORM_MAIL = {
    "autoretry_for": (OSError,),
    "retry_backoff": 30,
    "max_retries": 5,
    "soft_time_limit": 120,
    "time_limit": 150,
}


@shared_task(**PLATFORM_MAIL)
def send_verification_email(user_id: int, base_url: str) -> None:
    user = User.objects.filter(pk=user_id, email_verified_at=None).first()
    if user is not None:
        emails.verification(user=user, base_url=base_url)


@shared_task(**PLATFORM_MAIL)
def send_signup_attempt_email(user_id: int, base_url: str) -> None:
    user = User.objects.filter(pk=user_id, is_active=True).first()
    if user is not None:
        emails.signup_attempt(user=user, base_url=base_url)


@shared_task(**PLATFORM_MAIL)
def send_invitation_email(invitation_id: int, base_url: str) -> None:
    invitation = Invitation.objects.select_related("tenant", "invited_by").filter(pk=invitation_id).first()
    if invitation is not None and invitation.is_pending:
        emails.invitation(invitation=invitation, base_url=base_url)


@shared_task(**PLATFORM_MAIL)
def send_password_reset_email(user_id: int, base_url: str) -> None:
    # The same users Django's form would write to, as they are now.
    user = User.objects.filter(pk=user_id, is_active=True).first()
    if user is not None and user.has_usable_password():
        emails.password_reset(user=user, base_url=base_url)


@shared_task(soft_time_limit=240, time_limit=300)
def purge_rate_counters() -> None:
    """Beat, hourly (on the `default` queue): closed rate limit windows."""
    ratelimits.purge()
