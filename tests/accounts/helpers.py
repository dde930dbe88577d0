import base64
import re
import time

from django.conf import settings
from django.core import mail
from django.test import Client
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.oath import TOTP


def last_link(to: str) -> str:
    """The path of the link in the newest email sent to `to`; the link must
    start with SITE_URL."""
    message = next(m for m in reversed(mail.outbox) if to in m.to)
    return re.search(re.escape(settings.SITE_URL) + r"(/\S+)", message.body).group(1)


SECRET = re.compile(r'class="secret-key">([A-Z2-7 ]+)<')


def shown_secret(response) -> str | None:
    """The setup key an enrolment page shows, without its spaces."""
    found = SECRET.search(response.content.decode()) if response.status_code == 200 else None
    return found.group(1).replace(" ", "") if found else None


def code_for(secret: str, *, offset: int = 0) -> str:
    """The code an app that scanned `secret` shows `offset` seconds from now."""
    totp = TOTP(base64.b32decode(secret))
    totp.time = time.time() + offset
    return f"{totp.token():06d}"


def session_of(person, *, verified: bool = True) -> Client:
    """Another browser signed in as the person: past the code step, or with
    the password only."""
    client = Client()
    client.force_login(person.user)
    if verified:
        session = client.session
        session[DEVICE_ID_SESSION_KEY] = person.device.persistent_id
        session.save()
    return client


def signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def another_request_makes_the_account_meanwhile(monkeypatch) -> None:
    """A double click: the other request makes the account with the same
    address while this one hashes the password (after the checks)."""
    from accounts.models import User

    real = User.set_password

    def meanwhile(user, password):
        real(user, password)
        if user.pk is None and not User.objects.filter(email=user.email).exists():
            User.objects.bulk_create([User(email=user.email, password=user.password)])

    monkeypatch.setattr(User, "set_password", meanwhile)
