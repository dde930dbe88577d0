"""The two-step login, its throttling and the links that expire."""

import pytest
from django.test import Client, override_settings
from django.urls import reverse

from accounts.models import AuthThrottle
from tests.conftest import PASSWORD, totp_code

pytestmark = pytest.mark.django_db


def password_step(client: Client, email: str, password: str = PASSWORD, ip: str = "198.51.100.7"):
    return client.post(reverse("accounts:login"), {"email": email, "password": password}, REMOTE_ADDR=ip)


def test_the_password_alone_reaches_only_the_code_page(alice):
    client = Client()
    password_step(client, alice.user.email)
    for name in ("home", "accounts:team", "accounts:security"):
        assert client.get(reverse(name))["Location"] == reverse("accounts:login_otp")


def test_it_refuses_the_sixth_attempt_for_an_account_even_with_the_right_password(alice):
    client = Client()
    for attempt in range(5):
        response = password_step(client, alice.user.email, "wrong", ip=f"203.0.113.{attempt}")
    assert response.status_code == 429
    response = password_step(client, alice.user.email, PASSWORD, ip="203.0.113.99")
    assert response.status_code == 429
    assert b"Too many failed attempts" in response.content
    assert "_auth_user_id" not in client.session


def test_it_refuses_an_address_that_sprays_many_accounts(alice):
    client = Client()
    for n in range(5):
        password_step(client, f"nobody{n}@acme.test", "wrong")
    response = password_step(client, alice.user.email, PASSWORD)
    assert response.status_code == 429
    # Another address may still log in to the same account.
    assert password_step(Client(), alice.user.email, PASSWORD, ip="192.0.2.1").status_code == 302


def test_the_lock_lifts_after_the_lockout(alice):
    client = Client()
    with override_settings(LOGIN_LOCKOUT_SECONDS=0):
        for _ in range(5):
            password_step(client, alice.user.email, "wrong")
        assert password_step(client, alice.user.email, PASSWORD).status_code == 302


def test_wrong_codes_are_throttled_too(alice):
    client = Client()
    password_step(client, alice.user.email)
    for _ in range(5):
        client.post(reverse("accounts:login_otp"), {"token": "000000"}, REMOTE_ADDR="198.51.100.7")
    response = client.post(
        reverse("accounts:login_otp"), {"token": totp_code(alice.device, offset=30)}, REMOTE_ADDR="198.51.100.7"
    )
    assert response.status_code == 429
    assert client.get(reverse("home"))["Location"] == reverse("accounts:login_otp")


def test_a_successful_login_clears_the_account_counter(alice):
    client = Client()
    for _ in range(3):
        password_step(client, alice.user.email, "wrong")
    password_step(client, alice.user.email)
    assert AuthThrottle.objects.filter(failures__gte=3).count() == 1  # only the address keeps its count


def test_resetting_two_factor_asks_for_the_password(alice):
    response = alice.client.post(reverse("accounts:2fa_reset"), {"password": "wrong"})
    assert response.status_code == 400
    assert b"That is not your password" in response.content
    assert alice.user.totpdevice_set.filter(confirmed=True).exists()
    response = alice.client.post(reverse("accounts:2fa_reset"), {"password": PASSWORD})
    assert response["Location"] == reverse("accounts:2fa_setup")
    assert alice.client.get(reverse("accounts:2fa_setup")).status_code == 200
    # The current app works until the new one is confirmed (tests/accounts/test_two_factor.py).
    assert list(alice.user.totpdevice_set.all()) == [alice.device]


def test_new_recovery_codes_ask_for_the_password_and_replace_the_old(alice):
    assert alice.client.post(reverse("accounts:recovery_codes_new"), {"password": "nope"}).status_code == 400
    alice.client.post(reverse("accounts:recovery_codes_new"), {"password": PASSWORD})
    first = alice.client.get(reverse("accounts:recovery_codes")).context["codes"]
    alice.client.post(reverse("accounts:recovery_codes_new"), {"password": PASSWORD})
    second = alice.client.get(reverse("accounts:recovery_codes")).context["codes"]
    assert len(first) == len(second) == 10 and not set(first) & set(second)
    client = Client()
    password_step(client, alice.user.email)
    # (Successful code first: django-otp also slows down a device after a miss.)
    assert client.post(reverse("accounts:login_otp"), {"token": second[0]})["Location"] == reverse("home")
    client.post(reverse("accounts:logout"))
    password_step(client, alice.user.email)
    assert client.post(reverse("accounts:login_otp"), {"token": first[0]}).status_code == 200


def test_password_reset_by_email_is_single_use(alice, django_capture_on_commit_callbacks):
    from django.core import mail

    from .helpers import last_link

    client = Client()
    with django_capture_on_commit_callbacks(execute=True):  # the letter goes from the `mail` queue
        client.post(reverse("accounts:password_reset"), {"email": alice.user.email})
    assert len(mail.outbox) == 1
    link = last_link(alice.user.email)
    form_url = client.get(link)["Location"]
    new = "a different long passphrase 7"
    response = client.post(form_url, {"new_password1": new, "new_password2": new})
    assert response["Location"] == reverse("accounts:password_reset_complete")
    assert password_step(Client(), alice.user.email, new).status_code == 302
    reused = Client().get(link, follow=True)
    assert reused.context["validlink"] is False and b"link does not work" in reused.content


def test_the_password_reset_letter_is_queued_not_sent_during_the_request(alice, django_capture_on_commit_callbacks):
    from django.core import mail

    for email, queued in ((alice.user.email, 1), ("nobody@example.test", 0)):
        with django_capture_on_commit_callbacks() as callbacks:
            response = Client().post(reverse("accounts:password_reset"), {"email": email})
        assert response.status_code == 302 and len(callbacks) == queued
    assert mail.outbox == []


def reset_password(client: Client, email: str, capture, new: str = "a different long passphrase 7"):
    from .helpers import last_link

    with capture(execute=True):
        client.post(reverse("accounts:password_reset"), {"email": email})
    form_url = client.get(last_link(email))["Location"]
    return client.post(form_url, {"new_password1": new, "new_password2": new})


def test_a_new_password_ends_every_other_session_and_keeps_this_one(alice, django_capture_on_commit_callbacks):
    from .helpers import session_of, signed_in

    others = [session_of(alice), session_of(alice, verified=False)]
    response = reset_password(alice.client, alice.user.email, django_capture_on_commit_callbacks)
    assert response["Location"] == reverse("accounts:password_reset_complete")
    assert not any(signed_in(c) for c in others)  # ended, not merely stale
    assert alice.client.get(reverse("home")).status_code == 200


def test_a_new_password_set_from_another_browser_ends_every_session(alice, django_capture_on_commit_callbacks):
    from .helpers import signed_in

    reset_password(Client(), alice.user.email, django_capture_on_commit_callbacks)
    assert not signed_in(alice.client)


def test_wrong_codes_count_per_account_across_password_steps_and_addresses(alice):
    """12 wrong codes from 3 addresses, passing the password step again
    before each 4: the account's fifth wrong code locks the code step."""
    valid = {totp_code(alice.device, offset=s) for s in range(-90, 91, 30)}
    wrong = (c for c in (f"{n:06d}" for n in range(100_000, 1_000_000, 7919)) if c not in valid)
    statuses = []
    for ip in ("203.0.113.1", "203.0.113.2", "203.0.113.3"):
        client = Client()
        assert password_step(client, alice.user.email, ip=ip).status_code == 302
        for _ in range(4):
            statuses.append(client.post(reverse("accounts:login_otp"), {"token": next(wrong)}, REMOTE_ADDR=ip))
    assert [r.status_code for r in statuses] == [200] * 4 + [429] * 8
    client = Client()
    assert password_step(client, alice.user.email, ip="203.0.113.4").status_code == 302
    response = client.post(reverse("accounts:login_otp"), {"token": totp_code(alice.device)}, REMOTE_ADDR="203.0.113.4")
    assert response.status_code == 429 and b"Too many failed attempts" in response.content
    assert client.get(reverse("home"))["Location"] == reverse("accounts:login_otp")


def test_a_signed_in_user_changes_the_password_with_the_old_one(alice):
    from .helpers import session_of, signed_in

    other = session_of(alice)
    url = reverse("accounts:password_change")
    new = "a-New-passphrase-42"
    wrong = alice.client.post(url, {"old_password": "nope", "new_password1": new, "new_password2": new})
    assert wrong.status_code == 400 and "incorrectly" in wrong.content.decode()
    assert signed_in(other)
    response = alice.client.post(url, {"old_password": PASSWORD, "new_password1": new, "new_password2": new})
    assert response["Location"] == reverse("accounts:security")
    alice.user.refresh_from_db()
    assert alice.user.check_password(new)
    assert not signed_in(other)  # logged out everywhere else
    assert alice.client.get(reverse("home")).status_code == 200  # and still here, 2FA verified


def test_an_ipv6_client_is_one_address_across_its_64(alice):
    """One subscriber holds a whole /64: an address each try gave a sprayer
    2^64 fresh counters. The /64 is counted as one address (an IPv4-mapped
    address as its IPv4); another /64 is not held."""
    client = Client()
    for n in range(5):
        password_step(client, f"nobody{n}@acme.test", "wrong", ip=f"2001:db8:7:1::{n + 1:x}")
    response = password_step(client, alice.user.email, PASSWORD, ip="2001:db8:7:1:ffff:1:2:3")
    assert response.status_code == 429
    assert password_step(Client(), alice.user.email, PASSWORD, ip="2001:db8:7:2::1").status_code == 302
    for n in range(5):
        password_step(client, f"other{n}@acme.test", "wrong", ip="203.0.113.77")
    assert password_step(Client(), alice.user.email, PASSWORD, ip="::ffff:203.0.113.77").status_code == 429
