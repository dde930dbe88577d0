"""Signed, expiring, single-use links. Single use comes from the state the
token is bound to: once the state changes the same link no longer applies."""

from django.conf import settings
from django.core import signing
from django.utils.translation import gettext as _

from . import selectors
from .models import Invitation, User

VERIFY_SALT = "accounts.verify-email"
INVITE_SALT = "accounts.invitation"


class LinkError(Exception):
    """A link that is malformed, expired or already used; str() says which."""


def make_verification_token(user: User) -> str:
    return signing.dumps({"u": user.pk, "e": user.email}, salt=VERIFY_SALT, compress=True)


def read_verification_token(token: str) -> User:
    data = _load(token, salt=VERIFY_SALT, max_age=settings.EMAIL_VERIFICATION_MAX_AGE)
    user = User.objects.filter(pk=data.get("u"), email=data.get("e")).first()
    if user is None:
        raise LinkError(_("This verification link is not valid."))
    if user.is_email_verified:
        raise LinkError(_("This verification link was already used."))
    return user


def make_invitation_token(invitation: Invitation) -> str:
    return signing.dumps(str(invitation.public_id), salt=INVITE_SALT)


def read_invitation_token(token: str) -> Invitation:
    public_id = _load(token, salt=INVITE_SALT, max_age=settings.INVITATION_MAX_AGE)
    invitation = Invitation.objects.select_related("tenant").filter(public_id=public_id).first()
    if invitation is None or invitation.revoked_at is not None or not selectors.invitation_stands(invitation):
        raise LinkError(_("This invitation is no longer valid."))
    if invitation.accepted_at is not None:
        raise LinkError(_("This invitation was already used."))
    return invitation


def _load(token: str, *, salt: str, max_age: int):
    try:
        return signing.loads(token, salt=salt, max_age=max_age)
    except signing.SignatureExpired as exc:
        raise LinkError(_("This link has expired. Ask for a new one.")) from exc
    except signing.BadSignature as exc:
        raise LinkError(_("This link is not valid.")) from exc
