"""Verification and invitation links: signed, expiring, single use."""

import pytest
from django.core import mail
from django.test import Client, override_settings
from django.urls import reverse

from accounts import services
from accounts.models import Invitation, Membership, Role, User
from accounts.tokens import make_verification_token
from tests.conftest import PASSWORD

from .helpers import another_request_makes_the_account_meanwhile, last_link

pytestmark = pytest.mark.django_db


@pytest.fixture
def newcomer(db) -> User:
    return User.objects.create_user("erin@example.test", PASSWORD)


def test_a_verification_link_works_once(newcomer):
    path = reverse("accounts:verify_email", args=[make_verification_token(newcomer)])
    assert Client().get(path).status_code == 302
    newcomer.refresh_from_db()
    assert newcomer.is_email_verified
    response = Client().get(path)
    assert response.status_code == 400 and b"already used" in response.content


def test_an_expired_verification_link_is_refused(newcomer):
    path = reverse("accounts:verify_email", args=[make_verification_token(newcomer)])
    with override_settings(EMAIL_VERIFICATION_MAX_AGE=-1):
        response = Client().get(path)
    assert response.status_code == 400 and b"expired" in response.content
    newcomer.refresh_from_db()
    assert not newcomer.is_email_verified


def test_a_tampered_link_is_refused(newcomer):
    token = make_verification_token(newcomer)
    response = Client().get(reverse("accounts:verify_email", args=[token[:-2] + "xx"]))
    assert response.status_code == 400 and b"not valid" in response.content


def invite(alice, email: str, capture, role: str = Role.MEMBER) -> str:
    with capture(execute=True):
        response = alice.client.post(reverse("accounts:team"), {"email": email, "role": role})
    assert response.status_code == 302
    return last_link(email)


def test_an_invited_newcomer_creates_an_account_and_joins(alice, django_capture_on_commit_callbacks):
    link = invite(alice, "frank@example.test", django_capture_on_commit_callbacks, Role.ADMIN)
    assert "invited" in mail.outbox[-1].subject.lower()
    client = Client()
    page = client.get(link)
    assert page.status_code == 200 and b"Acme" in page.content
    response = client.post(link, {"full_name": "Frank", "password": PASSWORD})
    assert response.status_code == 302
    frank = User.objects.get(email="frank@example.test")
    assert frank.is_email_verified  # the link proved the address
    assert Membership.objects.get(user=frank).role == Role.ADMIN
    assert client.get(reverse("home"))["Location"] == reverse("accounts:2fa_setup")
    # Used: the same link no longer works.
    assert Client().get(link).status_code == 400


def test_an_existing_user_accepts_with_one_click(alice, charlie, django_capture_on_commit_callbacks):
    link = invite(alice, charlie.user.email, django_capture_on_commit_callbacks)
    assert charlie.client.post(link).status_code == 302
    assert Membership.objects.filter(user=charlie.user, tenant__slug="acme", role=Role.MEMBER).exists()
    # The session now points at the tenant just joined.
    assert charlie.client.get(reverse("home")).context["current_tenant"].slug == "acme"


def test_an_invitation_for_someone_else_is_not_accepted(alice, charlie, django_capture_on_commit_callbacks):
    link = invite(alice, "someone@else.test", django_capture_on_commit_callbacks)
    charlie.client.post(link)
    assert not Membership.objects.filter(user=charlie.user, tenant__slug="acme").exists()


def test_an_expired_or_revoked_invitation_is_refused(alice, django_capture_on_commit_callbacks):
    link = invite(alice, "gina@example.test", django_capture_on_commit_callbacks)
    with override_settings(INVITATION_MAX_AGE=-1):
        assert b"expired" in Client().get(link).content
    invitation = Invitation.objects.get(email="gina@example.test")
    services.invitation_revoke(invitation=invitation, by=Membership.objects.get(user=alice.user))
    assert Client().get(link).status_code == 400


@pytest.mark.parametrize("letter", ["signup", "resend", "invitation", "password_reset"])
def test_every_link_in_platform_mail_starts_with_site_url_whatever_the_host_header(
    letter, alice, settings, django_capture_on_commit_callbacks
):
    settings.SITE_URL = "https://postroute.example"
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "evil.test"]
    evil = {"HTTP_HOST": "evil.test"}
    with django_capture_on_commit_callbacks(execute=True):
        if letter == "signup":
            form = {"email": "gina@example.test", "organisation": "Gina's", "password": PASSWORD}
            Client().post(reverse("accounts:signup"), form, **evil)
        elif letter == "resend":
            alice.user.email_verified_at = None
            alice.user.save(update_fields=["email_verified_at"])
            alice.client.post(reverse("accounts:verify_resend"), **evil)
        elif letter == "invitation":
            alice.client.post(reverse("accounts:team"), {"email": "gina@example.test", "role": Role.MEMBER}, **evil)
        else:
            Client().post(reverse("accounts:password_reset"), {"email": alice.user.email}, **evil)
    (message,) = mail.outbox
    for body in (message.body, message.alternatives[0][0]):
        assert "evil.test" not in body
        assert "https://postroute.example/accounts/" in body


def test_a_double_click_on_joining_makes_one_account_and_no_error(
    alice, monkeypatch, django_capture_on_commit_callbacks
):
    """The second of two POSTs of the invitation's sign-up, arriving while the
    first hashed its password, failed on the unique address: a 500. Now it
    is sent to the login (the first one made the account, with that password)."""
    link = invite(alice, "frank@example.test", django_capture_on_commit_callbacks)
    another_request_makes_the_account_meanwhile(monkeypatch)
    response = Client().post(link, {"full_name": "Frank", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == reverse("accounts:login")
    # (The stand-in for the first request wrote inside this one's transaction,
    # so it is rolled back with it here; the real first request has committed.)
