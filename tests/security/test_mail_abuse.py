"""The platform's own mail cannot flood one address: invitations (revoked
and sent again), password resets, verification resends and sign-ups are
counted per target address, per user and per client address
(accounts.mail_limits), through the real views, with the letters the
`mail` queue really sends. A refusal says so (429) and counts nothing; the
password reset's refusal is the same whether or not the address has an
account."""

import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from accounts.models import Invitation, Role, User
from accounts.views import auth as auth_views
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db
VICTIM = "victim@example.test"


@dataclass
class Tally:
    attempts: int = 0
    sent: int = 0
    allowed: int = 0  # what the limits let through in all


TALLY = Tally()


@pytest.fixture(scope="module", autouse=True)
def _summary() -> Iterator[None]:
    yield
    assert TALLY.sent <= TALLY.allowed
    print(f"\nmail abuse: {TALLY.attempts} attempts, {TALLY.sent} sent (≤ limits)")


def tally(attempts: int, sent: int, allowed: int) -> None:
    TALLY.attempts += attempts
    TALLY.sent += sent
    TALLY.allowed += allowed


def to(address: str) -> int:
    return sum(address in m.to for m in mail.outbox)


@pytest.fixture
def send(django_capture_on_commit_callbacks):
    """Run a request and the letters it queues, as the `mail` worker would."""

    def run(method, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return method(*args, **kwargs)

    return run


# Invitations


def test_revoking_and_inviting_one_address_30_times_sends_3(alice, send, settings):
    assert settings.PLATFORM_MAIL_PER_ADDRESS == 3
    statuses = []
    for _ in range(30):
        pending = Invitation.objects.filter(email=VICTIM, accepted_at=None, revoked_at=None).first()
        if pending is not None:
            alice.client.post(reverse("accounts:invitation_revoke", args=[pending.public_id]))
        response = send(alice.client.post, reverse("accounts:team"), {"email": VICTIM, "role": Role.MEMBER})
        statuses.append(response.status_code)
    assert to(VICTIM) == 3
    assert statuses[:3] == [302] * 3 and statuses[3:] == [429] * 27
    assert "Too many invitations to this address" in response.content.decode()
    tally(30, to(VICTIM), 3)


def test_a_refused_invitation_leaves_the_pending_one_alone(alice, send):
    for _ in range(4):
        send(alice.client.post, reverse("accounts:team"), {"email": VICTIM, "role": Role.MEMBER})
    pending = Invitation.objects.filter(email=VICTIM, revoked_at=None)
    assert pending.count() == 1 and Invitation.objects.filter(email=VICTIM).count() == 3
    tally(4, to(VICTIM), 3)


def test_one_user_sends_at_most_platform_mail_per_user_invitations(alice, carol, send, settings):
    settings.PLATFORM_MAIL_PER_USER = 5
    codes = [
        send(
            alice.client.post, reverse("accounts:team"), {"email": f"p{i}@example.test", "role": Role.MEMBER}
        ).status_code
        for i in range(8)
    ]
    assert codes == [302] * 5 + [429] * 3 and len(mail.outbox) == 5
    # Another admin of the same organisation has a budget of their own.
    response = send(carol.client.post, reverse("accounts:team"), {"email": "p9@example.test", "role": Role.MEMBER})
    assert response.status_code == 302
    tally(9, len(mail.outbox), 6)


# Password resets


def alert(response) -> str:
    return re.search(r'class="alert alert-error" role="alert">(.*?)</div>', response.content.decode(), re.S).group(1)


def reset(send, email: str, ip: str):
    return send(Client().post, reverse("accounts:password_reset"), {"email": email}, REMOTE_ADDR=ip)


def test_20_password_resets_for_one_address_send_3_and_tell_nothing(alice, send):
    known = [reset(send, alice.user.email, "198.51.100.1") for _ in range(20)]
    assert to(alice.user.email) == 3
    unknown = [reset(send, "nobody@example.test", "198.51.100.2") for _ in range(20)]
    assert [r.status_code for r in known] == [r.status_code for r in unknown] == [302] * 3 + [429] * 17
    assert alert(known[-1]) == alert(unknown[-1]) and "Too many password reset requests" in alert(known[-1])
    tally(40, len(mail.outbox), 3)


def test_password_resets_from_one_client_address_are_limited(alice, bob, send, settings):
    settings.PLATFORM_MAIL_PER_CLIENT = 4
    addresses = [alice.user.email, bob.user.email, *(f"x{i}@example.test" for i in range(8))]
    codes = [reset(send, email, "198.51.100.3").status_code for email in addresses]
    assert codes == [302] * 4 + [429] * 6
    assert len(mail.outbox) == 2  # the two accounts among the first four
    assert reset(send, "x9@example.test", "198.51.100.4").status_code == 302  # another address is not held
    tally(11, len(mail.outbox), 4)


# Verification


def sign_up(send, email: str, ip: str = "192.0.2.1", password: str = PASSWORD) -> tuple[Client, object]:
    client = Client()
    data = {"email": email, "organisation": "Initech", "password": password}
    response = send(client.post, reverse("accounts:signup"), data, REMOTE_ADDR=ip)
    # A sign-up signs nobody in, nor does its password before the link is
    # opened: the session of an account made before that, still unconfirmed.
    if (user := User.objects.filter(email=email, email_verified_at=None).first()) is not None:
        client.force_login(user)
    return client, response


def test_11_verification_resends_send_3(send, monkeypatch):
    monkeypatch.setattr(auth_views, "RESEND_INTERVAL", 0)  # the view's own minute is not what is tested
    client, _ = sign_up(send, "dana@initech.test")
    pages = [
        send(client.post, reverse("accounts:verify_resend"), REMOTE_ADDR="192.0.2.1", follow=True) for _ in range(11)
    ]
    assert to("dana@initech.test") == 1 + 3
    assert "Too many verification emails" in pages[-1].content.decode()
    assert "Too many" not in pages[2].content.decode()
    tally(12, to("dana@initech.test"), 4)


def test_a_resend_the_view_holds_back_counts_nothing(send, monkeypatch):
    client, _ = sign_up(send, "dana@initech.test")
    for _ in range(5):  # within the view's minute: one goes
        send(client.post, reverse("accounts:verify_resend"))
    monkeypatch.setattr(auth_views, "RESEND_INTERVAL", 0)
    for _ in range(5):
        send(client.post, reverse("accounts:verify_resend"))
    assert to("dana@initech.test") == 1 + 3
    tally(11, to("dana@initech.test"), 4)


# Sign-ups


def test_sign_ups_from_one_client_address_are_limited(send, settings):
    settings.PLATFORM_MAIL_PER_CLIENT = 3
    codes = [sign_up(send, f"u{i}@example.test")[1].status_code for i in range(6)]
    assert codes == [302] * 3 + [429] * 3
    assert User.objects.count() == 3 and len(mail.outbox) == 3
    _, refused = sign_up(send, "u9@example.test")
    assert b"Too many sign-ups from here" in refused.content and b'name="email"' in refused.content
    tally(7, len(mail.outbox), 3)


def test_a_sign_up_that_does_not_go_through_gives_its_count_back(send, settings):
    settings.PLATFORM_MAIL_PER_CLIENT = 2
    for i in range(4):
        assert sign_up(send, f"w{i}@example.test", password="123")[1].status_code == 200  # too short
    assert [sign_up(send, f"v{i}@example.test")[1].status_code for i in range(2)] == [302, 302]
    tally(6, len(mail.outbox), 2)
