"""The staff login at /$ADMIN_URL/login/: one step (email, password and the
code of the app), the tenant login's throttle, and one answer for every
failure, so that the page is no password oracle."""

import re

import pytest
from django.test import Client
from django.urls import reverse
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import User
from tests.conftest import PASSWORD, next_code, totp_code

pytestmark = pytest.mark.django_db

LOGIN = reverse("admin:login")
ADDRESS = "203.0.113.50"


@pytest.fixture
def staff(db) -> tuple[User, TOTPDevice]:
    user = User.objects.create_superuser("ops@postroute.test", PASSWORD)
    return user, TOTPDevice.objects.create(user=user, name="Staff authenticator", confirmed=True)


def wrong_code(device: TOTPDevice) -> str:
    valid = {totp_code(device, offset=s) for s in range(-90, 91, 30)}
    return next(c for c in ("123456", "654321", "111111") if c not in valid)


def staff_login(client: Client, email: str, password: str, code: str, ip: str = ADDRESS):
    return client.post(LOGIN, {"email": email, "password": password, "code": code}, REMOTE_ADDR=ip)


def answer(response) -> tuple[int, list[str]]:
    """What the page says: its status and its errors."""
    form = response.context["form"]
    return response.status_code, [*form.non_field_errors(), *(e for f in form for e in f.errors)]


def test_the_form_asks_for_email_password_and_code_at_once(db):
    page = Client().get(LOGIN).content.decode()
    fields = set(re.findall(r'<(?:input|select)[^>]* name="([^"]+)"', page))
    assert fields == {"csrfmiddlewaretoken", "email", "password", "code", "next"}
    assert "otp_device" not in page and "otp_challenge" not in page and "OTP Challenge" not in page


def test_30_wrong_passwords_are_throttled_like_the_tenant_login(staff):
    user, device = staff
    client = Client()
    statuses = [staff_login(client, user.email, f"wrong-{n}", totp_code(device)).status_code for n in range(30)]
    assert statuses == [200] * 4 + [429] * 26
    response = staff_login(client, user.email, PASSWORD, totp_code(device))
    assert response.status_code == 429 and b"Too many failed attempts" in response.content
    assert client.get(reverse("admin:index")).status_code == 302
    # The same account is locked at the tenant login too.
    response = Client().post(
        reverse("accounts:login"), {"email": user.email, "password": PASSWORD}, REMOTE_ADDR="192.0.2.9"
    )
    assert response.status_code == 429


def test_an_address_spraying_staff_accounts_is_throttled(staff):
    client = Client()
    for n in range(5):
        staff_login(client, f"ops{n}@postroute.test", "wrong", "000000")
    user, device = staff
    assert staff_login(client, user.email, PASSWORD, totp_code(device)).status_code == 429


def test_a_right_password_answers_like_a_wrong_one(staff):
    user, device = staff
    wrong_password = answer(staff_login(Client(), user.email, "wrong", wrong_code(device), ip="192.0.2.1"))
    right_password = answer(staff_login(Client(), user.email, PASSWORD, wrong_code(device), ip="192.0.2.2"))
    no_such_account = answer(staff_login(Client(), "nobody@postroute.test", PASSWORD, "123456", ip="192.0.2.3"))
    assert wrong_password == right_password == no_such_account == (200, ["Email, password or code is wrong."])


def test_a_tenant_user_with_password_and_code_is_refused_alike(alice):
    response = staff_login(Client(), alice.user.email, PASSWORD, totp_code(alice.device))
    assert answer(response) == (200, ["Email, password or code is wrong."])


def test_wrong_codes_here_count_with_the_tenant_logins_wrong_codes(staff):
    """A right password at the tenant login does not clear them."""
    user, device = staff
    for n in range(4):
        staff_login(Client(), user.email, PASSWORD, wrong_code(device), ip=f"198.51.100.{n}")
        assert Client().post(reverse("accounts:login"), {"email": user.email, "password": PASSWORD}).status_code == 302
    response = staff_login(Client(), user.email, PASSWORD, wrong_code(device), ip="198.51.100.9")
    assert response.status_code == 429


def test_email_password_and_code_open_the_admin_and_come_back_to_next(staff):
    user, device = staff
    client = Client()
    target = reverse("admin:accounts_tenant_changelist")
    response = client.post(
        f"{LOGIN}?next={target}", {"email": user.email, "password": PASSWORD, "code": totp_code(device), "next": target}
    )
    assert response.status_code == 302 and response["Location"] == target
    assert client.get(target).status_code == 200
    evil = Client().post(
        LOGIN,
        {"email": user.email, "password": PASSWORD, "code": next_code(device), "next": "https://evil.test/"},
    )
    assert evil["Location"] == reverse("admin:index")
