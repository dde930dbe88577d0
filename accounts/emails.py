"""The platform's own emails, each a subject, a text and an HTML template
under templates/emails/<name>/. Their links start with `base_url`, which is
SITE_URL: never the Host header of the request that asked for the letter,
which its sender chooses (a reset link to the sender's host would hand over
the token).

Names that users type (an organisation's, a person's) reach other people's
inboxes in these letters, from the platform's own address: they go through
`neutralised` first, so that an organisation called "PayPal Security:
verify your account at http://evil.example" cannot put a working link, or a
subject of its choosing, into a letter Postroute sends."""

import re
import unicodedata

from django.conf import settings
from django.contrib.auth.tokens import default_token_generator
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import translation
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from django.utils.translation import gettext, ngettext

from servers.wire import ascii_domain

from . import languages
from .models import Invitation, User, normalize_email_address
from .tokens import make_invitation_token, make_verification_token


def send(name: str, *, to: str, context: dict, language: str) -> None:
    with translation.override(language):
        subject = render_to_string(f"emails/{name}/subject.txt", context).strip().splitlines()[0]
        text = render_to_string(f"emails/{name}/body.txt", context)
        html = render_to_string(f"emails/{name}/body.html", context)
    # The domain as IDNA 2008 spells it, as the dispatcher sends: Django's
    # own encoding is IDNA 2003's, which maps straße.de to strasse.de,
    # another domain.
    message = EmailMultiAlternatives(subject, text, settings.DEFAULT_FROM_EMAIL, [ascii_domain(to)])
    message.attach_alternative(html, "text/html")
    message.send()


# A name shows at most this many characters.
NAME_LIMIT = 40
SCHEME = re.compile(r"\b[a-z][a-z0-9+.-]*:/+", re.IGNORECASE)
# A dot between two letters or digits, in any of the spellings IDNA treats
# as a dot, is what makes "evil.example" a host a mail client links.
DOT = re.compile(r"(?<=\w)[.\u3002\uff0e\uff61](?=\w)")


def neutralised(text: str, limit: int = NAME_LIMIT) -> str:
    """`text` without what could make it a link or change how it reads: no
    control, format or bidi characters, no URL scheme, every dot inside a
    word a space (so no host name survives: "evil.example" becomes
    "evil example"), whitespace collapsed, cut to `limit` characters."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(_visible(char) for char in text)
    text = DOT.sub(" ", SCHEME.sub("", text))
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _visible(char: str) -> str:
    category = unicodedata.category(char)
    if category == "Cf":
        return ""  # zero-width and bidi controls
    return " " if category in ("Cc", "Zl", "Zp") else char


def valid_for(seconds: int) -> str:
    """'3 days', '12 hours': how long a link works, for the text around it
    (in the active language)."""
    if seconds % 86400 == 0:
        days = seconds // 86400
        return ngettext("%(count)d day", "%(count)d days", days) % {"count": days}
    hours = max(1, seconds // 3600)
    return ngettext("%(count)d hour", "%(count)d hours", hours) % {"count": hours}


def verification(*, user: User, base_url: str) -> None:
    path = reverse("accounts:verify_email", args=[make_verification_token(user)])
    context = {
        "user": user,
        # Whoever signed up typed it, and it may not be the address's owner.
        "name": neutralised(user.full_name),
        "url": base_url + path,
    }
    language = languages.for_user(user)
    with translation.override(language):
        context["valid_for"] = valid_for(settings.EMAIL_VERIFICATION_MAX_AGE)
    send("verify", to=user.email, context=context, language=language)


def signup_attempt(*, user: User, base_url: str) -> None:
    """To the owner of an address someone tried to sign up with: who it
    was is not said (the page answered them as it answers a new sign-up)."""
    context = {
        "email": user.email,
        "login_url": base_url + reverse("accounts:login"),
        "reset_url": base_url + reverse("accounts:password_reset"),
    }
    send("signup_attempt", to=user.email, context=context, language=languages.for_user(user))


def invitation(*, invitation: Invitation, base_url: str) -> None:
    path = reverse("accounts:invitation", args=[make_invitation_token(invitation)])
    inviter = invitation.invited_by
    context = {
        "invitation": invitation,
        "inviter_name": neutralised(inviter.full_name) if inviter else "",
        "inviter_email": inviter.email if inviter else "",
        "url": base_url + path,
    }
    # An invitee with an account reads it in the language they chose; one
    # without, in the inviting organisation's.
    invitee = User.objects.filter(email=normalize_email_address(invitation.email)).first()
    language = languages.for_user(invitee, invitation.tenant)
    with translation.override(language):
        context["organisation"] = neutralised(invitation.tenant.name) or gettext("an organisation")
        context["valid_for"] = valid_for(settings.INVITATION_MAX_AGE)
    send("invitation", to=invitation.email, context=context, language=language)


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
    send("password_reset", to=user.email, context=context, language=languages.for_user(user))
