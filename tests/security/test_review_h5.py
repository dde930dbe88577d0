"""An outsider's attacks on sign-up, sign-in and the organisations that the
other security tests do not make (review h5)."""

import importlib

import pytest
from django.apps import apps
from django.test import Client
from django.urls import reverse

from accounts import throttle
from accounts.models import AuthThrottle, Invitation, User, normalize_email_address
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

SIGNUP = {"password": "a long pass phrase 93!", "organisation": "Org", "full_name": ""}


def signup(email: str):
    return Client().post(reverse("accounts:signup"), {**SIGNUP, "email": email})


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("ana@bücher.test", "ana@xn--bcher-kva.test"),
        ("ana@xn--bcher-kva.test", "ANA@BÜCHER.test"),
        ("ivan@почта.рф", "ivan@XN--80A1ACNY.XN--P1AI"),
    ],
)
def test_an_idn_domain_spelt_in_ascii_or_in_unicode_is_one_account(first, second):
    assert signup(first).status_code == 302
    # Answered as a new sign-up (tests/accounts/test_signup_existing.py), but nothing is made.
    assert signup(second).status_code == 302
    assert User.objects.count() == 1


def test_an_idn_address_is_kept_in_unicode_lower_case():
    assert normalize_email_address(" Ana@XN--BCHER-KVA.Test ") == "ana@bücher.test"
    assert normalize_email_address("ana@bu\u0308cher.test") == "ana@bücher.test"
    assert (
        normalize_email_address("ana@xn--strae-oqa.test") == "ana@straße.test"
    )  # IDNA 2008, as email_validator reads it
    assert normalize_email_address("ana@xn--zz.test") == "ana@xn--zz.test"  # no valid A-label: as typed


def test_the_ascii_spelling_of_an_idn_address_logs_in(alice):
    user = User.objects.create_user("ana@bücher.test", "pass phrase 93!", email_verified_at=alice.user.date_joined)
    client = Client()
    response = client.post(
        reverse("accounts:login"), {"email": "ana@xn--bcher-kva.test", "password": "pass phrase 93!"}
    )
    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(user.pk)


def test_the_ascii_spelling_of_an_idn_address_gets_its_reset_link(db, monkeypatch):
    from accounts import services

    User.objects.create_user("ana@bücher.test", "pass phrase 93!")
    sent = []
    monkeypatch.setattr(services, "password_reset_send", lambda *, user, base_url: sent.append(user.email))
    Client().post(reverse("accounts:password_reset"), {"email": "ana@xn--bcher-kva.test"})
    assert sent == ["ana@bücher.test"]


def test_the_migration_stores_ascii_idn_addresses_in_unicode_unless_taken(alice, tenant_a):
    migration = importlib.import_module("accounts.migrations.0012_idn_emails_in_unicode")
    User.objects.bulk_create(
        [User(email="ana@xn--bcher-kva.test"), User(email="bo@xn--bcher-kva.test"), User(email="bo@bücher.test")]
    )
    Invitation.objects.create(tenant=tenant_a, email="cy@xn--bcher-kva.test", invited_by=alice.user)
    migration.idn_emails_in_unicode(apps, None)
    emails = set(User.objects.values_list("email", flat=True))
    assert {"ana@bücher.test", "bo@xn--bcher-kva.test", "bo@bücher.test"} <= emails
    assert Invitation.objects.get().email == "cy@bücher.test"


def test_every_spelling_of_an_idn_address_counts_against_one_lockout(db, settings):
    User.objects.create_user("ana@bücher.test", "pass phrase 93!", email_verified_at="2026-01-01T00:00Z")
    spellings = ["ana@bücher.test", "ana@xn--bcher-kva.test", "ana@bu\u0308cher.test"]
    for n in range(settings.LOGIN_FAILURE_LIMIT):
        client = Client(REMOTE_ADDR=f"198.51.100.{n}")  # a fresh address each time
        client.post(reverse("accounts:login"), {"email": spellings[n % 3], "password": "wrong"})
    client = Client(REMOTE_ADDR="203.0.113.9")
    response = client.post(reverse("accounts:login"), {"email": spellings[1], "password": "pass phrase 93!"})
    assert response.status_code == 429


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("accounts:recovery_codes_new", "password"),
        ("accounts:2fa_reset", "password"),
        ("accounts:password_change", "old_password"),
    ],
)
def test_a_signed_in_session_cannot_guess_the_password_on_the_security_page(alice, settings, url, field):
    """Sudo mode guards against a session someone else holds: its password
    check was an oracle without the login's limit."""
    statuses = [
        alice.client.post(reverse(url), {field: "wrong", "new_password1": "x", "new_password2": "x"}).status_code
        for _n in range(settings.LOGIN_FAILURE_LIMIT)
    ]
    assert statuses == [400] * (settings.LOGIN_FAILURE_LIMIT - 1) + [429]
    response = alice.client.post(
        reverse(url),
        {field: PASSWORD, "new_password1": "a new pass phrase 93!", "new_password2": "a new pass phrase 93!"},
    )
    assert response.status_code == 429
    assert "Too many failed attempts" in response.content.decode()
    alice.user.refresh_from_db()
    assert alice.user.check_password(PASSWORD)
    assert (
        Client().post(reverse("accounts:login"), {"email": alice.user.email, "password": PASSWORD}).status_code == 429
    )


def test_a_right_password_on_the_security_page_clears_its_failures(alice, settings):
    for _n in range(settings.LOGIN_FAILURE_LIMIT - 1):
        alice.client.post(reverse("accounts:recovery_codes_new"), {"password": "wrong"})
    assert AuthThrottle.objects.filter(key=throttle.password_key(alice.user.email)).exists()
    assert alice.client.post(reverse("accounts:recovery_codes_new"), {"password": PASSWORD}).status_code == 302
    assert not AuthThrottle.objects.filter(key=throttle.password_key(alice.user.email)).exists()


def invited_link(by, email: str, role: str, capture) -> str:
    from tests.accounts.helpers import last_link

    with capture(execute=True):
        assert by.client.post(reverse("accounts:team"), {"email": email, "role": role}).status_code == 302
    return last_link(email)


@pytest.mark.parametrize("then", ["removed", "demoted"])
def test_an_invitation_lapses_when_its_inviter_no_longer_manages_the_team(
    alice, carol, charlie, then, django_capture_on_commit_callbacks
):
    """A removed admin's pending invitation (to a friend, or a second address
    of their own) was a way back in, with the admin role."""
    from accounts import services
    from accounts.models import Membership, Role

    link = invited_link(carol, charlie.user.email, Role.ADMIN, django_capture_on_commit_callbacks)
    fresh = invited_link(carol, "newcomer@example.test", Role.ADMIN, django_capture_on_commit_callbacks)
    carols = Membership.objects.get(user=carol.user)
    owner = Membership.objects.get(user=alice.user)
    if then == "removed":
        services.membership_remove(membership=carols, by=owner)
    else:
        services.membership_change_role(membership=carols, role=Role.MEMBER, by=owner)
    assert charlie.client.post(link).status_code == 400
    assert not Membership.objects.filter(user=charlie.user, tenant=owner.tenant).exists()
    response = Client().post(fresh, {"full_name": "", "password": PASSWORD})
    assert response.status_code == 400
    assert not User.objects.filter(email="newcomer@example.test").exists()


def test_an_owners_invitation_to_the_owner_role_lapses_when_they_are_no_longer_owner(
    alice, carol, charlie, django_capture_on_commit_callbacks
):
    from accounts import services
    from accounts.models import Membership, Role

    link = invited_link(alice, charlie.user.email, Role.OWNER, django_capture_on_commit_callbacks)
    services.membership_change_role(
        membership=Membership.objects.get(user=carol.user), role=Role.OWNER, by=Membership.objects.get(user=alice.user)
    )
    services.membership_change_role(
        membership=Membership.objects.get(user=alice.user), role=Role.ADMIN, by=Membership.objects.get(user=carol.user)
    )
    assert charlie.client.post(link).status_code == 400
    assert not Membership.objects.filter(user=charlie.user, tenant__slug="acme").exists()


def test_an_invitation_still_works_while_its_inviter_manages_the_team(
    alice, carol, charlie, django_capture_on_commit_callbacks
):
    from accounts.models import Membership, Role

    link = invited_link(carol, charlie.user.email, Role.ADMIN, django_capture_on_commit_callbacks)
    assert charlie.client.post(link).status_code == 302
    assert Membership.objects.get(user=charlie.user, tenant__slug="acme").role == Role.ADMIN


def test_an_invitation_that_lapses_while_the_newcomer_signs_up_makes_no_account(
    alice, monkeypatch, django_capture_on_commit_callbacks
):
    """Revoked (or its inviter removed) between the page's check and the
    account's creation: the page says so, where it was a 500."""
    from accounts import selectors
    from accounts.models import Role

    link = invited_link(alice, "newcomer@example.test", Role.MEMBER, django_capture_on_commit_callbacks)
    answers = iter([True, False])
    monkeypatch.setattr(selectors, "invitation_stands", lambda invitation: next(answers))
    response = Client().post(link, {"full_name": "", "password": PASSWORD})
    assert response.status_code == 400
    assert "no longer valid" in response.content.decode()
    assert not User.objects.filter(email="newcomer@example.test").exists()


def test_the_team_page_lists_no_lapsed_invitation(alice, carol, django_capture_on_commit_callbacks):
    # A lapsed invitation cannot be accepted: listed as pending, it told the
    # owners someone could still join through it.
    from accounts import selectors, services
    from accounts.models import Membership, Role

    invited_link(carol, "by-carol@example.test", Role.ADMIN, django_capture_on_commit_callbacks)
    invited_link(alice, "by-alice@example.test", Role.MEMBER, django_capture_on_commit_callbacks)
    invited_link(alice, "owner-too@example.test", Role.OWNER, django_capture_on_commit_callbacks)
    owner = Membership.objects.get(user=alice.user)
    services.membership_change_role(membership=Membership.objects.get(user=carol.user), role=Role.MEMBER, by=owner)
    page = alice.client.get(reverse("accounts:team")).content.decode()
    assert "by-alice@example.test" in page and "owner-too@example.test" in page
    assert "by-carol@example.test" not in page
    # The page's list and the link's own check agree, invitation by invitation.
    listed = set(selectors.standing_invitations(owner.tenant))
    assert listed == {i for i in Invitation.objects.filter(tenant=owner.tenant) if selectors.invitation_stands(i)}
