"""A page that shows a secret once is never kept by the browser nor by a
proxy (Cache-Control: no-store): the enrolment page's authenticator key and
QR code, the recovery codes, a new API key, a webhook's new signing
secret. Kept on disk, the page would come back by the browser's history
on a shared computer, after the user signed out."""

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from tests.accounts.helpers import code_for, shown_secret
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def stored(response) -> bool:
    """Whether a browser or a proxy may keep the answer."""
    return "no-store" not in response.get("Cache-Control", "")


def test_the_enrolment_key_and_the_recovery_codes_are_not_stored():
    user = User.objects.create_user("dana@initech.test", PASSWORD, email_verified_at=timezone.now())
    client = Client()
    client.force_login(user)
    page = client.get(reverse("accounts:2fa_setup"))
    secret = shown_secret(page)
    assert secret and not stored(page)
    wrong = client.post(reverse("accounts:2fa_setup"), {"token": "000000" if code_for(secret) != "000000" else "1"})
    assert shown_secret(wrong) == secret and not stored(wrong)
    assert client.post(reverse("accounts:2fa_setup"), {"token": code_for(secret)})["Location"] == reverse(
        "accounts:recovery_codes"
    )
    codes = client.get(reverse("accounts:recovery_codes"))
    assert b"<code>" in codes.content and not stored(codes)


def test_new_recovery_codes_are_not_stored(alice):
    response = alice.client.post(reverse("accounts:recovery_codes_new"), {"password": PASSWORD}, follow=True)
    assert b"<code>" in response.content and not stored(response)


def test_a_new_api_key_is_not_stored(alice):
    response = alice.client.post(reverse("accounts:api_keys"), {"name": "CRM", "scopes": ["read"]})
    assert response.context["secret"] and not stored(response)
