"""Races around replacing the authenticator app, through the real views, on
threads of their own (PostgreSQL: each thread its own connection). In every
round the owner resets two-factor login from her session, reads the new
secret and confirms it with a code, while at the same moment

- a session that had passed only the password step before the reset,
- a session that logs in with the password while the reset runs, and
- a session that had passed the code step before the reset (a stolen one)

each ask for the enrolment page and post a valid code of the owner's new
secret as soon as it exists (as if they had read it over her shoulder). No
other session may see a secret, confirm one or get recovery codes; the owner
ends every round with the app she scanned."""

import base64
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse
from django_otp.plugins.otp_totp.models import TOTPDevice

from tests.accounts.helpers import code_for, session_of, shown_secret
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)

ROUNDS = 8
TRIES = 6  # requests of each other session per round
SETUP = reverse("accounts:2fa_setup")
CODES = reverse("accounts:recovery_codes")


@dataclass
class Tally:
    attempts: int = 0
    secrets_to_another_session: int = 0


TALLY = Tally()
COUNTING = threading.Lock()


@pytest.fixture(scope="module", autouse=True)
def _summary() -> Iterator[None]:
    yield
    print(f"\nauth races: {TALLY.attempts} attempts, {TALLY.secrets_to_another_session} secrets to another session")


@pytest.fixture(autouse=True)
def _postgresql() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the races need PostgreSQL (SQLite serialises every writer)")


def password_only(email: str) -> Client:
    client = Client()
    assert client.post(reverse("accounts:login"), {"email": email, "password": PASSWORD}).status_code == 302
    return client


@dataclass
class Round:
    secret: str | None = None
    owner_done: threading.Event = field(default_factory=threading.Event)
    seen: list[str] = field(default_factory=list)  # secrets other sessions were shown
    confirmed: int = 0  # codes other sessions got accepted
    errors: list[BaseException] = field(default_factory=list)


def on_thread(fn: Callable[[], None], state: Round) -> threading.Thread:
    def run() -> None:
        try:
            fn()
        except BaseException as exc:  # reported by the test, not lost in the thread
            state.errors.append(exc)
        finally:
            connection.close()  # the thread's own connection

    return threading.Thread(target=run)


def other_session(client: Client | Callable[[], Client], state: Round, start: threading.Barrier) -> None:
    start.wait(timeout=30)
    if callable(client):
        client = client()  # logs in with the password now, while the reset runs
    for _ in range(TRIES):
        page = client.get(SETUP)
        if shown := shown_secret(page):
            state.seen.append(shown)
        if state.secret is not None:
            response = client.post(SETUP, {"token": code_for(state.secret)})
            if response.status_code == 302 and response["Location"] == CODES:
                state.confirmed += 1
            if shown_secret(response):
                state.seen.append(shown_secret(response))
        codes = client.get(CODES)
        if codes.context and codes.context.get("codes"):
            state.confirmed += 1
        with COUNTING:
            TALLY.attempts += 1
        if state.owner_done.is_set():
            break


def owner(alice, state: Round, start: threading.Barrier) -> None:
    start.wait(timeout=30)
    response = alice.client.post(reverse("accounts:2fa_reset"), {"password": PASSWORD})
    assert response["Location"] == SETUP
    state.secret = shown_secret(alice.client.get(SETUP))
    assert state.secret
    response = alice.client.post(SETUP, {"token": code_for(state.secret)})
    assert response["Location"] == CODES, response
    state.owner_done.set()


def test_other_sessions_never_get_the_secret_of_a_reset(alice):
    for _ in range(ROUNDS):
        state = Round()
        alice.device = TOTPDevice.objects.get(user=alice.user)  # the app she confirmed last round
        before, stolen = password_only(alice.user.email), session_of(alice)
        start = threading.Barrier(4)
        threads = [
            on_thread(lambda: owner(alice, state, start), state),
            on_thread(lambda: other_session(before, state, start), state),
            on_thread(lambda: other_session(stolen, state, start), state),
            on_thread(lambda: other_session(lambda: password_only(alice.user.email), state, start), state),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not state.errors, state.errors
        TALLY.secrets_to_another_session += len(state.seen) + state.confirmed
        assert state.seen == [] and state.confirmed == 0
        device = TOTPDevice.objects.get(user=alice.user)
        assert device.confirmed and device.bin_key == base64.b32decode(state.secret)
