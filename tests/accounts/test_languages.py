"""The page's language: the user's saved choice, else the browser's
Accept-Language, else the organisation's default; the platform's letters
in their recipient's language; numbers and plurals per language."""

import re

import pytest
from django.core import mail
from django.template import Context, Template
from django.test import Client
from django.urls import reverse
from django.utils import translation

from accounts import emails
from accounts.models import Invitation, User

pytestmark = pytest.mark.django_db


def page_language(client: Client, url: str = "/accounts/login/", **headers: str) -> str:
    response = client.get(url, headers=headers, follow=True)
    return re.search(r'<html lang="([^"]+)"', response.content.decode()).group(1)


def test_the_browser_language_is_used_before_anything_is_chosen():
    assert page_language(Client(), accept_language="ru-RU,ru;q=0.9,en;q=0.8") == "ru"
    assert page_language(Client(), accept_language="de-DE,vi;q=0.5") == "vi"
    assert page_language(Client(), accept_language="de-DE") == "en"


@pytest.mark.parametrize(
    ("header", "language"),
    [
        ("be", "ru"),  # Belarus, Kazakhstan, Kyrgyzstan: Russian is an official language too
        ("kk-KZ,kk;q=0.9", "ru"),
        ("ky", "ru"),
        ("be-BY,en;q=0.5", "ru"),  # preferred to English, as Belarusian is
        ("en-US,kk;q=0.5", "en"),
        ("kk,vi;q=0.9", "ru"),
        ("uk", "en"),  # Ukrainian readers are not sent to Russian
        ("uk-UA,ru;q=0.8", "ru"),  # unless they ask for it
        ("ru;q=0.9", "ru"),
        ("vi-VN", "vi"),
        ("*", "en"),
    ],
)
def test_a_browser_language_we_lack_falls_back_to_the_one_its_readers_read(header, language):
    assert page_language(Client(), accept_language=header) == language


def test_a_choice_in_the_header_is_kept_before_signing_in():
    client = Client()
    client.post(reverse("accounts:language_set"), {"language": "vi", "next": "/accounts/login/"})
    assert page_language(client, accept_language="ru") == "vi"


def test_the_users_choice_is_saved_and_wins_over_the_browser(alice):
    response = alice.client.post(reverse("accounts:language_set"), {"language": "ru", "next": "/servers/"})
    assert response.status_code == 302 and response["Location"] == "/servers/"
    alice.user.refresh_from_db()
    assert alice.user.language == "ru"
    fresh = Client()
    fresh.force_login(alice.user)
    # Logged in anywhere else, the saved choice is used at once.
    assert page_language(fresh, "/accounts/login/", accept_language="vi") == "ru"


def test_an_unknown_language_or_a_foreign_next_changes_nothing(alice):
    response = alice.client.post(reverse("accounts:language_set"), {"language": "xx", "next": "https://evil.test/"})
    assert response["Location"] == "/"
    alice.user.refresh_from_db()
    assert alice.user.language == ""


def test_the_organisation_default_applies_when_the_browser_asks_for_nothing_we_have(alice, bob):
    page = reverse("accounts:organisation")
    response = alice.client.post(reverse("accounts:tenant_language"), {"language": "vi", "next": page})
    assert response.status_code == 302 and response["Location"] == page
    assert '<option value="vi" lang="vi" selected>' in alice.client.get(page).content.decode()
    assert page_language(bob.client, "/accounts/security/", accept_language="de") == "vi"
    assert page_language(bob.client, "/accounts/security/", accept_language="ru") == "ru"


def test_members_cannot_change_the_organisation_language(bob, tenant_a):
    response = bob.client.post(reverse("accounts:tenant_language"), {"language": "ru"})
    assert response.status_code == 403
    tenant_a.refresh_from_db()
    assert tenant_a.default_language == "en"


def test_the_invitation_is_written_in_the_inviting_organisations_language(alice, tenant_a):
    tenant_a.default_language = "ru"
    tenant_a.save()
    invitation = Invitation.objects.create(tenant=tenant_a, email="new@x.test", invited_by=alice.user)
    emails.invitation(invitation=invitation, base_url="https://postroute.test")
    message = mail.outbox[-1]
    assert "Acme" in message.subject and "Postroute" in message.subject
    assert "Вас пригласили" in message.subject
    assert "7 дней" in message.body


def test_the_verification_letter_follows_the_users_choice(tenant_a):
    user = User.objects.create_user("v@x.test", "x", language="ru")
    emails.verification(user=user, base_url="https://postroute.test")
    assert mail.outbox[-1].subject == "Подтвердите адрес для Postroute"
    assert "Ссылка действует 3 дня." in mail.outbox[-1].body


def test_numbers_and_plurals_follow_the_language():
    # The same phrase the mailings page shows while letters are prepared.
    template = Template(
        "{{ n }} | {% blocktranslate count counter=n %}Preparing {{ counter }} letter…{% plural %}"
        "Preparing {{ counter }} letters…{% endblocktranslate %}"
    )
    with translation.override("ru"):
        assert template.render(Context({"n": 12345})) == "12\xa0345 | Готовим 12\xa0345 писем…"
        assert template.render(Context({"n": 1})).endswith("Готовим 1 письмо…")
        assert template.render(Context({"n": 2})).endswith("Готовим 2 письма…")
        assert template.render(Context({"n": 21})).endswith("Готовим 21 письмо…")
    with translation.override("en"):
        assert template.render(Context({"n": 12345})) == "12,345 | Preparing 12,345 letters…"
        assert template.render(Context({"n": 1})).endswith("Preparing 1 letter…")
