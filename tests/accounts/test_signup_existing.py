"""Sign-up with an address that has an account answers as a new sign-up
does: nobody learns from the page whether the address has an account. The
owner gets a letter instead, with links to log in and to reset the
password."""

import re

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import Tenant, User
from tests.conftest import PASSWORD

from .helpers import another_request_makes_the_account_meanwhile

pytestmark = pytest.mark.django_db


def sign_up(email: str, capture, **extra):
    client = Client()
    with capture(execute=True):
        response = client.post(
            reverse("accounts:signup"),
            {"email": email, "full_name": "Eve", "organisation": "Evil Corp", "password": PASSWORD},
            **extra,
        )
    return client, response


def answer(client: Client, response, email: str) -> str:
    """The page the sign-up leads to, the address typed taken out, and the
    CSRF token (a new one each time)."""
    page = client.get(response["Location"]).content.decode()
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", page.replace(email, "EMAIL"))


def test_a_taken_address_is_answered_as_a_new_one(alice, django_capture_on_commit_callbacks):
    new_client, new = sign_up("dana@initech.test", django_capture_on_commit_callbacks)
    taken_client, taken = sign_up(alice.user.email, django_capture_on_commit_callbacks)
    assert new.status_code == taken.status_code == 302
    assert new["Location"] == taken["Location"]
    assert answer(new_client, new, "dana@initech.test") == answer(taken_client, taken, alice.user.email)
    assert "Check your inbox" in answer(taken_client, taken, alice.user.email)
    # Neither is signed in: the new account is not, until it logs in.
    assert "_auth_user_id" not in new_client.session and "_auth_user_id" not in taken_client.session
    assert User.objects.filter(email=alice.user.email).count() == 1
    assert not Tenant.objects.filter(name="Evil Corp", memberships__user=alice.user).exists()
    assert Tenant.objects.filter(name="Evil Corp").count() == 1  # the new sign-up's


def test_the_owner_is_told_in_their_language_with_links_to_log_in_and_reset(alice, django_capture_on_commit_callbacks):
    alice.user.language = "ru"
    alice.user.save(update_fields=["language"])
    sign_up("ALICE@acme.test", django_capture_on_commit_callbacks)
    [letter] = mail.outbox
    assert letter.to == ["alice@acme.test"]
    assert "Postroute" in letter.subject and not letter.subject.isascii()  # Russian
    assert reverse("accounts:login") in letter.body and reverse("accounts:password_reset") in letter.body
    assert PASSWORD not in letter.body and "Evil Corp" not in letter.body


def test_an_idn_address_in_its_other_spelling_is_the_same_account(db, django_capture_on_commit_callbacks):
    User.objects.create_user("ana@bücher.test", "pass phrase 93!", email_verified_at=timezone.now())
    sign_up("ana@xn--bcher-kva.test", django_capture_on_commit_callbacks)
    assert User.objects.count() == 1
    [letter] = mail.outbox
    assert letter.to == ["ana@xn--bcher-kva.test"]  # the domain as IDNA 2008 spells it
    assert reverse("accounts:login") in letter.body


def test_the_letters_to_a_taken_address_are_limited_as_sign_ups_are(alice, django_capture_on_commit_callbacks):
    codes = [
        sign_up(alice.user.email, django_capture_on_commit_callbacks, REMOTE_ADDR=f"192.0.2.{i}")[1].status_code
        for i in range(5)
    ]
    new_codes = [
        sign_up(f"dana{i}@initech.test", django_capture_on_commit_callbacks, REMOTE_ADDR="198.51.100.1")[1].status_code
        for i in range(1)
    ]
    assert codes == [302] * 3 + [429] * 2
    assert new_codes == [302]
    assert len([m for m in mail.outbox if m.to == [alice.user.email]]) == 3


def test_a_double_click_makes_one_account_and_answers_alike(client, monkeypatch, django_capture_on_commit_callbacks):
    another_request_makes_the_account_meanwhile(monkeypatch)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("accounts:signup"),
            {"email": "dana@initech.test", "organisation": "Initech", "password": PASSWORD},
        )
    assert response.status_code == 302 and response["Location"] == reverse("accounts:signup_sent")
    assert User.objects.count() == 1 and "_auth_user_id" not in client.session


def test_a_password_reset_answers_alike_for_a_taken_and_a_free_address(alice, django_capture_on_commit_callbacks):
    url = reverse("accounts:password_reset")
    with django_capture_on_commit_callbacks(execute=True):
        taken = Client().post(url, {"email": alice.user.email})
        free = Client().post(url, {"email": "nobody@acme.test"})
    assert taken.status_code == free.status_code == 302
    assert taken["Location"] == free["Location"]
    assert [m.to for m in mail.outbox] == [[alice.user.email]]


@pytest.mark.parametrize(
    "domain",
    ["ａｃｍｅ.test", "ac\u00adme.test", "ac\u200bme.test", "ＡＣＭＥ.test", "ac\u200dme.test", "ac\u200cme.test"],
)
def test_a_domain_spelt_as_idna_maps_it_to_a_taken_one_is_the_same_account(
    alice, domain, django_capture_on_commit_callbacks
):
    """Full-width letters, a soft hyphen or a zero-width space in the
    domain are the same domain to IDNA, where the letters go: each
    spelling was another account, and another count of the address's
    sign-up limit, for the same mailbox."""
    sign_up(f"alice@{domain}", django_capture_on_commit_callbacks)
    assert User.objects.count() == 1
    [letter] = mail.outbox
    assert letter.to == ["alice@acme.test"] and reverse("accounts:password_reset") in letter.body


def log_in(email: str, password: str = PASSWORD):
    return Client().post(reverse("accounts:login"), {"email": email, "password": password})


def test_logging_in_with_the_password_just_typed_tells_nothing(alice, django_capture_on_commit_callbacks):
    """The sign-up's own password logged a new account in and not a taken
    one: signing up and then logging in told whether the address had an
    account. An account logs in once the link proved its address."""
    typed = "an attacker's own pass 71"
    for email in ["dana@initech.test", alice.user.email]:
        with django_capture_on_commit_callbacks(execute=True):
            Client().post(reverse("accounts:signup"), {"email": email, "organisation": "Evil", "password": typed})
    new, taken = log_in("dana@initech.test", typed), log_in(alice.user.email, typed)
    assert new.status_code == taken.status_code == 200
    page = new.content.decode().replace("dana@initech.test", "EMAIL")
    assert re.sub(r'value="[^"]{40,}"', "", page) == re.sub(
        r'value="[^"]{40,}"', "", taken.content.decode().replace(alice.user.email, "EMAIL")
    )


def test_signing_up_again_before_confirming_sends_the_link_again(db, django_capture_on_commit_callbacks):
    """The account's owner, who cannot log in before confirming, gets a new
    link by signing up again (counted as a sign-up)."""
    sign_up("dana@initech.test", django_capture_on_commit_callbacks)
    sign_up("dana@initech.test", django_capture_on_commit_callbacks)
    first, second = mail.outbox
    assert first.subject == second.subject and "/verify/" in second.body
    user = User.objects.get(email="dana@initech.test")
    link = re.search(r"https?://\S+", second.body).group()
    Client().get(link)
    user.refresh_from_db()
    assert user.is_email_verified and log_in("dana@initech.test").status_code == 302
