"""Bursts of 100 wrong logins through the real login views: against one
account from one address, across many accounts from one address, against
one account from many addresses, and 100 wrong codes at the 2FA step. After
LOGIN_FAILURE_LIMIT (5) failures every further attempt is refused without
the password or the code being checked — the right one is refused too —
and the lock lifts once LOGIN_LOCKOUT_SECONDS have passed (the throttle's
rows are moved back in time; nothing sleeps)."""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts import recovery
from accounts.models import AuthThrottle, User
from accounts.views import auth as auth_views
from tests.conftest import PASSWORD, Person, totp_code

pytestmark = pytest.mark.django_db

BURST = 100
ADDRESS = "203.0.113.7"


@dataclass
class Tally:
    attempts: int = 0
    refused: int = 0
    successes_while_throttled: int = 0


TALLY = Tally()


@pytest.fixture(scope="module", autouse=True)
def _summary() -> Iterator[None]:
    yield
    print(
        f"\nlogin burst: {TALLY.attempts} attempts in bursts of {BURST}, {TALLY.refused} refused by the throttle, "
        f"{TALLY.successes_while_throttled} successes while throttled"
    )


@dataclass
class Spy:
    """Counts the calls of the function the view uses to check a password
    or a code, and still calls it."""

    calls: int = 0

    def wrap(self, real: Callable) -> Callable:
        def spy(*args: object, **kwargs: object) -> object:
            self.calls += 1
            return real(*args, **kwargs)

        return spy


@pytest.fixture
def checks(monkeypatch) -> Spy:
    spy = Spy()
    monkeypatch.setattr(auth_views, "authenticate", spy.wrap(auth_views.authenticate))
    monkeypatch.setattr(recovery, "match", spy.wrap(recovery.match))
    return spy


def sign_in(client: Client, email: str, password: str, ip: str = ADDRESS, **headers: str):
    return client.post(
        reverse("accounts:login"), {"email": email, "password": password}, REMOTE_ADDR=ip, headers=headers
    )


def logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def burst(attempt: Callable[[int], object], checks: Spy) -> int:
    """Runs BURST attempts; returns how many were refused without a check.
    Each must be refused: the first LIMIT after a check, the rest before."""
    limit = settings.LOGIN_FAILURE_LIMIT
    refused = 0
    for n in range(BURST):
        before = checks.calls
        response = attempt(n)
        checked = checks.calls - before
        expected = 429 if n >= limit - 1 else 200
        assert response.status_code == expected, (n, response.status_code)
        assert checked == (1 if n < limit else 0), f"attempt {n + 1} was checked {checked} times"
        if n >= limit - 1:
            assert b"Too many failed attempts" in response.content
        refused += not checked
    TALLY.attempts += BURST
    TALLY.refused += refused
    return refused


def refused_while_throttled(response, client: Client) -> None:
    if response.status_code != 429 or logged_in(client):
        TALLY.successes_while_throttled += 1
    assert response.status_code == 429 and b"Too many failed attempts" in response.content


def window_passes() -> None:
    """Moves every lock and count back by one lockout window."""
    window = timedelta(seconds=settings.LOGIN_LOCKOUT_SECONDS + 1)
    for row in AuthThrottle.objects.all():
        row.first_failure_at -= window
        row.locked_until = row.locked_until and row.locked_until - window
        row.save(update_fields=["first_failure_at", "locked_until"])


def test_100_wrong_passwords_for_one_account_from_one_address(alice, checks):
    client = Client()
    assert burst(lambda n: sign_in(client, alice.user.email, f"wrong-{n}"), checks) == BURST - 5
    before = checks.calls
    refused_while_throttled(sign_in(client, alice.user.email, PASSWORD), client)
    # X-Forwarded-For is not trusted without a proxy (NUM_PROXIES=0).
    refused_while_throttled(sign_in(client, alice.user.email, PASSWORD, X_Forwarded_For="192.0.2.99"), client)
    assert checks.calls == before, "the right password was checked while throttled"
    window_passes()
    assert sign_in(client, alice.user.email, PASSWORD).status_code == 302 and logged_in(client)


def test_100_wrong_passwords_across_100_accounts_from_one_address(alice, checks):
    now = timezone.now()
    users = [User.objects.create_user(f"user{n}@acme.test", PASSWORD, email_verified_at=now) for n in range(BURST)]
    client = Client()
    assert burst(lambda n: sign_in(client, users[n].email, "wrong"), checks) == BURST - 5
    before = checks.calls
    refused_while_throttled(sign_in(client, alice.user.email, PASSWORD), client)  # untouched account, same address
    assert checks.calls == before
    other = Client()  # the address is locked, not the accounts
    assert sign_in(other, users[-1].email, PASSWORD, ip="192.0.2.1").status_code == 302
    window_passes()
    assert sign_in(client, alice.user.email, PASSWORD).status_code == 302 and logged_in(client)


def test_100_wrong_passwords_for_one_account_from_100_addresses(alice, checks):
    client = Client()
    addresses = [f"198.51.{n // 250}.{n % 250 + 1}" for n in range(BURST)]
    assert burst(lambda n: sign_in(client, alice.user.email, "wrong", ip=addresses[n]), checks) == BURST - 5
    before = checks.calls
    refused_while_throttled(sign_in(client, alice.user.email, PASSWORD, ip="192.0.2.200"), client)
    assert checks.calls == before
    window_passes()
    assert sign_in(client, alice.user.email, PASSWORD, ip="192.0.2.200").status_code == 302


def wrong_code(person: Person, n: int) -> str:
    valid = {totp_code(person.device, offset=s) for s in range(-90, 91, 30)}
    return next(c for c in (f"{(n * 7919 + k) % 1_000_000:06d}" for k in range(10)) if c not in valid)


def test_100_wrong_codes_at_the_second_step(alice, checks):
    client = Client()
    assert sign_in(client, alice.user.email, PASSWORD).status_code == 302
    url = reverse("accounts:login_otp")
    checks.calls = 0

    def attempt(n: int):
        return client.post(url, {"token": wrong_code(alice, n)}, REMOTE_ADDR=ADDRESS)

    assert burst(attempt, checks) == BURST - 5
    before = checks.calls
    response = client.post(url, {"token": totp_code(alice.device)}, REMOTE_ADDR=ADDRESS)
    verified = client.get(reverse("home")).status_code == 200
    TALLY.successes_while_throttled += response.status_code != 429 or verified
    assert response.status_code == 429 and not verified and checks.calls == before
    window_passes()
    alice.device.refresh_from_db()
    if alice.device.throttling_failure_timestamp:  # django-otp's own per-device backoff, moved back too
        alice.device.throttling_failure_timestamp -= timedelta(days=1)
        alice.device.save(update_fields=["throttling_failure_timestamp"])
    response = client.post(url, {"token": totp_code(alice.device)}, REMOTE_ADDR=ADDRESS)
    assert response.status_code == 302 and client.get(reverse("home")).status_code == 200
