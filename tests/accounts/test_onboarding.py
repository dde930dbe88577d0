"""The whole onboarding through HTTP: sign up, verify, enrol TOTP, keep the
recovery codes, reach the checklist, then log in again with each factor."""

import base64
import re

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import Membership, Role, User
from tests.conftest import PASSWORD, next_code

from .helpers import code_for, last_link, shown_secret

pytestmark = pytest.mark.django_db


def sign_up(client: Client, capture, email: str = "dana@initech.test") -> None:
    with capture(execute=True):
        response = client.post(
            reverse("accounts:signup"),
            {"email": email, "full_name": "Dana", "organisation": "Initech", "password": PASSWORD},
        )
    assert response.status_code == 302
    assert response["Location"] == reverse("accounts:signup_sent")
    # Nobody is signed in by a sign-up (it answers alike for an address that
    # has an account), nor by its password before the link is opened (that
    # too would tell a new address from a taken one).
    assert "_auth_user_id" not in client.session
    assert client.post(reverse("accounts:login"), {"email": email, "password": PASSWORD}).status_code == 200
    assert "_auth_user_id" not in client.session


def enrol(client: Client) -> tuple[TOTPDevice, list[str]]:
    page = client.get(reverse("accounts:2fa_setup"))
    assert page.status_code == 200
    secret = shown_secret(page)
    assert b"data:image/svg+xml" in page.content  # the QR code
    # The secret lives in this session only: no device until its code.
    assert not TOTPDevice.objects.filter(user__email="dana@initech.test").exists()
    response = client.post(reverse("accounts:2fa_setup"), {"token": code_for(secret)})
    assert response["Location"] == reverse("accounts:recovery_codes")
    device = TOTPDevice.objects.get(user__email="dana@initech.test", confirmed=True)
    assert base64.b32decode(secret) == device.bin_key  # the key shown is the device's key
    codes_page = client.get(reverse("accounts:recovery_codes")).content.decode()
    codes = re.findall(r"<code>([a-z0-9]+)</code>", codes_page)
    assert len(codes) == 10
    assert "<code>" not in client.get(reverse("accounts:recovery_codes")).content.decode()  # shown once
    return device, codes


def test_it_walks_signup_to_checklist_and_logs_in_with_each_factor(client, django_capture_on_commit_callbacks):
    sign_up(client, django_capture_on_commit_callbacks)
    user = User.objects.get(email="dana@initech.test")
    assert Membership.objects.get(user=user).role == Role.OWNER

    assert len(mail.outbox) == 1 and mail.outbox[0].subject.startswith("Confirm your email")

    # The link proves the address; then the password logs in.
    assert client.get(last_link(user.email))["Location"] == reverse("accounts:login")
    response = client.post(reverse("accounts:login"), {"email": "dana@initech.test", "password": PASSWORD})
    assert response["Location"] == reverse("home")
    # Verified but not enrolled: every page leads to enrolment.
    assert client.get(reverse("home"))["Location"] == reverse("accounts:2fa_setup")

    device, codes = enrol(client)
    home = client.get(reverse("home"))
    assert home.status_code == 200
    assert b"Getting started" in home.content and b"Add a sending server" in home.content

    client.post(reverse("accounts:logout"))
    assert client.get(reverse("home")).status_code == 302

    # Password, then the code from the app (the next time step: the enrolment
    # code may not be replayed).
    response = client.post(reverse("accounts:login"), {"email": "DANA@initech.test", "password": PASSWORD})
    assert response["Location"] == reverse("home")
    assert client.get(reverse("home"))["Location"] == reverse("accounts:login_otp")
    response = client.post(reverse("accounts:login_otp"), {"token": next_code(device)})
    assert response["Location"] == reverse("home")
    assert client.get(reverse("home")).status_code == 200
    client.post(reverse("accounts:logout"))

    # Password, then a recovery code, which then no longer works.
    fresh = Client()
    fresh.post(reverse("accounts:login"), {"email": user.email, "password": PASSWORD})
    assert fresh.post(reverse("accounts:login_otp"), {"token": codes[0]})["Location"] == reverse("home")
    fresh.post(reverse("accounts:logout"))
    again = Client()
    again.post(reverse("accounts:login"), {"email": user.email, "password": PASSWORD})
    response = again.post(reverse("accounts:login_otp"), {"token": codes[0]})
    assert response.status_code == 200 and b"That code is not valid" in response.content
    assert again.get(reverse("home"))["Location"] == reverse("accounts:login_otp")


def test_a_wrong_enrolment_code_is_refused_next_to_the_field(client, django_capture_on_commit_callbacks):
    sign_up(client, django_capture_on_commit_callbacks)
    client.get(last_link("dana@initech.test"))
    client.post(reverse("accounts:login"), {"email": "dana@initech.test", "password": PASSWORD})
    secret = shown_secret(client.get(reverse("accounts:2fa_setup")))
    wrong = f"{(int(code_for(secret)) + 1) % 1_000_000:06d}"
    response = client.post(reverse("accounts:2fa_setup"), {"token": wrong})
    assert response.status_code == 200
    assert b"That code does not match" in response.content
    assert not TOTPDevice.objects.filter(user__email="dana@initech.test", confirmed=True).exists()


def test_signup_reports_bad_input_next_to_the_field(client, alice):
    response = client.post(
        reverse("accounts:signup"),
        {"email": alice.user.email, "organisation": "", "password": "123"},
    )
    assert response.status_code == 200
    form = response.context["form"]
    assert "email" not in form.errors  # whether it has an account is not said (test_signup_existing)
    assert form.errors["organisation"]
    assert any("too short" in e for e in form.errors["password"])
    assert User.objects.count() == 1


def test_resend_sends_a_new_link_once_a_minute(client, django_capture_on_commit_callbacks):
    sign_up(client, django_capture_on_commit_callbacks)
    client.force_login(User.objects.get(email="dana@initech.test"))  # signed in before the link was needed
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("accounts:verify_resend"))
        client.post(reverse("accounts:verify_resend"))
    assert len(mail.outbox) == 2
