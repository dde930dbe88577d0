"""Replacing the authenticator app and making new recovery codes from the
Security page: the new secret belongs to the session that asked for it, a
session that only knows the password never sees nor confirms it, and every
other session of the user ends."""

import base64

import pytest
from django.test import Client
from django.urls import reverse
from django_otp.plugins.otp_totp.models import TOTPDevice

from tests.conftest import PASSWORD, next_code, totp_code

from .helpers import code_for, session_of, shown_secret, signed_in

pytestmark = pytest.mark.django_db

SETUP = reverse("accounts:2fa_setup")


def password_only(email: str) -> Client:
    client = Client()
    assert client.post(reverse("accounts:login"), {"email": email, "password": PASSWORD}).status_code == 302
    return client


def start_reset(person) -> str:
    """Resets two-factor login from the person's own session; returns the new
    secret their setup page shows."""
    response = person.client.post(reverse("accounts:2fa_reset"), {"password": PASSWORD})
    assert response["Location"] == SETUP
    secret = shown_secret(person.client.get(SETUP))
    assert secret
    return secret


def test_a_password_only_session_never_sees_nor_confirms_the_new_secret(alice):
    before = password_only(alice.user.email)  # stuck at the code step when the owner resets
    secret = start_reset(alice)
    after = password_only(alice.user.email)  # the password alone, once the reset began
    for client in (before, after):
        page = client.get(SETUP)
        assert shown_secret(page) is None and secret.encode() not in page.content
        response = client.post(SETUP, {"token": code_for(secret)})
        assert response.status_code == 302 and response["Location"] != reverse("accounts:recovery_codes")
        assert client.get(reverse("home")).status_code == 302  # still not in
    assert TOTPDevice.objects.get(user=alice.user, confirmed=True).pk == alice.device.pk
    # The owner confirms and gets the codes.
    response = alice.client.post(SETUP, {"token": code_for(secret)})
    assert response["Location"] == reverse("accounts:recovery_codes")
    assert len(alice.client.get(reverse("accounts:recovery_codes")).context["codes"]) == 10


def test_the_reset_ends_every_other_session_and_keeps_this_one(alice):
    others = [session_of(alice), session_of(alice, verified=False)]
    start_reset(alice)
    for client in others:
        assert not signed_in(client)
        assert client.get(reverse("home"))["Location"].startswith(reverse("accounts:login"))
    assert alice.client.get(reverse("home")).status_code == 200


def test_the_old_app_works_until_the_new_one_is_confirmed(alice):
    secret = start_reset(alice)
    elsewhere = password_only(alice.user.email)
    assert elsewhere.get(SETUP)["Location"] == reverse("accounts:login_otp")
    response = elsewhere.post(reverse("accounts:login_otp"), {"token": totp_code(alice.device)})
    assert response["Location"] == reverse("home")
    assert alice.client.post(SETUP, {"token": code_for(secret)})["Location"] == reverse("accounts:recovery_codes")
    assert not signed_in(elsewhere)  # confirming the new app ends the others again
    assert not TOTPDevice.objects.filter(pk=alice.device.pk).exists()
    assert TOTPDevice.objects.get(user=alice.user).bin_key == base64.b32decode(secret)
    # The old app's codes no longer open the account; the new app's do.
    client = password_only(alice.user.email)
    assert (
        client.post(
            reverse("accounts:login_otp"), {"token": next_code(TOTPDevice.objects.get(user=alice.user))}
        ).status_code
        == 302
    )
    assert client.get(reverse("home")).status_code == 200


def test_a_new_secret_each_time_and_no_device_before_its_code(alice):
    first, second = start_reset(alice), start_reset(alice)
    assert first != second
    assert list(TOTPDevice.objects.filter(user=alice.user)) == [alice.device]


def test_first_enrolment_secrets_are_per_session_and_the_first_confirmation_wins(alice):
    alice.device.delete()  # an account that never enrolled: the password leads to enrolment
    one, two = password_only(alice.user.email), password_only(alice.user.email)
    secret_one, secret_two = shown_secret(one.get(SETUP)), shown_secret(two.get(SETUP))
    assert secret_one and secret_two and secret_one != secret_two
    assert one.post(SETUP, {"token": code_for(secret_one)})["Location"] == reverse("accounts:recovery_codes")
    assert not signed_in(two)
    two = password_only(alice.user.email)
    assert two.get(SETUP)["Location"] == reverse("accounts:login_otp")
    assert TOTPDevice.objects.get(user=alice.user).bin_key == base64.b32decode(secret_one)


def test_new_recovery_codes_end_every_other_session(alice):
    other = session_of(alice)
    alice.client.post(reverse("accounts:recovery_codes_new"), {"password": PASSWORD})
    assert not signed_in(other)
    assert alice.client.get(reverse("home")).status_code == 200


def test_a_wrong_password_ends_nothing(alice):
    other = session_of(alice)
    alice.client.post(reverse("accounts:recovery_codes_new"), {"password": "wrong"})
    alice.client.post(reverse("accounts:2fa_reset"), {"password": "wrong"})
    assert signed_in(other) and other.get(reverse("home")).status_code == 200
