"""The platform's own emails, each a subject, a text and an HTML template
under templates/emails/<name>/. Their links start with `base_url`, which is
SITE_URL: never the Host header of the request that asked for the letter,
which its sender chooses (a reset link to the sender's host would hand over
the token)."""

from django.conf import settings
from django.contrib.auth.tokens import default_token_generator
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from .models import Invitation, User
from .tokens import make_invitation_token, make_verification_token


def send(name: str, *, to: str, context: dict) -> None:
    subject = render_to_string(f"emails/{name}/subject.txt", context).strip().splitlines()[0]
    text = render_to_string(f"emails/{name}/body.txt", context)
    html = render_to_string(f"emails/{name}/body.html", context)
    message = EmailMultiAlternatives(subject, text, settings.DEFAULT_FROM_EMAIL, [to])
    message.attach_alternative(html, "text/html")
    message.send()


def valid_for(seconds: int) -> str:
    """'3 days', '12 hours': how long a link works, for the text around it."""
    if seconds % 86400 == 0:
        return f"{seconds // 86400} day{'s' if seconds != 86400 else ''}"
    hours = max(1, seconds // 3600)
    return f"{hours} hour{'s' if hours != 1 else ''}"


def verification(*, user: User, base_url: str) -> None:
    path = reverse("accounts:verify_email", args=[make_verification_token(user)])
    context = {"user": user, "url": base_url + path, "valid_for": valid_for(settings.EMAIL_VERIFICATION_MAX_AGE)}
    send("verify", to=user.email, context=context)


def invitation(*, invitation: Invitation, base_url: str) -> None:
    path = reverse("accounts:invitation", args=[make_invitation_token(invitation)])
    context = {"invitation": invitation, "url": base_url + path, "valid_for": valid_for(settings.INVITATION_MAX_AGE)}
    send("invitation", to=invitation.email, context=context)


def password_reset(*, user: User, base_url: str) -> None:
    """Django's password reset letter, with the context its form gives the
    templates; the token is made here, when the letter goes."""
    protocol, _, domain = base_url.partition("://")
    context = {
        "email": user.email,
        "user": user,
        "protocol": protocol,
        "domain": domain,
        "uid": urlsafe_base64_encode(force_bytes(user.pk)),
        "token": default_token_generator.make_token(user),
    }
    send("password_reset", to=user.email, context=context)
