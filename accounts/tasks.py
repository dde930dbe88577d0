from celery import shared_task

from . import emails
from .models import Invitation, User


@shared_task(autoretry_for=(OSError,), retry_backoff=30, max_retries=5)
def send_verification_email(user_id: int, base_url: str) -> None:
    user = User.objects.filter(pk=user_id, email_verified_at=None).first()
    if user is not None:
        emails.verification(user=user, base_url=base_url)


@shared_task(autoretry_for=(OSError,), retry_backoff=30, max_retries=5)
def send_invitation_email(invitation_id: int, base_url: str) -> None:
    invitation = Invitation.objects.select_related("tenant", "invited_by").filter(pk=invitation_id).first()
    if invitation is not None and invitation.is_pending:
        emails.invitation(invitation=invitation, base_url=base_url)
