"""The unsubscribe link of every letter: it works without login, asks
before it acts on GET, takes the RFC 8058 one-click POST without a CSRF
token, and cannot be bent to another address or another tenant."""

import pytest
from django.core import signing
from django.test import Client
from django.urls import reverse

from mailing import contacts
from mailing.models import Suppression
from mailing.unsubscribe import SALT, make_token, unsubscribe_url

pytestmark = pytest.mark.django_db


def link(tenant, email: str = "ann@example.com") -> str:
    return reverse("unsubscribe", args=[make_token(tenant.pk, email)])


def test_get_shows_a_confirmation_and_changes_nothing(tenant_a):
    response = Client().get(link(tenant_a))
    html = response.content.decode()
    assert response.status_code == 200 and "ann@example.com" in html and "Acme" in html
    assert '<form method="post"' in html and "Unsubscribe</button>" in html
    assert not Suppression.objects.exists()


def test_pressing_the_button_unsubscribes(tenant_a):
    csrf_client = Client(enforce_csrf_checks=True)
    response = csrf_client.post(link(tenant_a), {"confirm": "1"})
    assert response.status_code == 200 and "You are unsubscribed" in response.content.decode()
    row = Suppression.objects.get()
    assert (row.tenant, row.email, row.reason) == (tenant_a, "ann@example.com", Suppression.Reason.UNSUBSCRIBED)


def test_the_one_click_post_works_without_a_csrf_token(tenant_a):
    url = unsubscribe_url("https://postroute.test", tenant_a.pk, "Ann@example.com")
    path = url.removeprefix("https://postroute.test")
    response = Client(enforce_csrf_checks=True).post(
        path, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 200
    assert contacts.is_suppressed(tenant_a, "Ann@example.com")
    Client(enforce_csrf_checks=True).post(
        path, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
    )
    assert Suppression.objects.count() == 1


@pytest.mark.parametrize(
    "mangle",
    [
        lambda token: token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
        lambda token: "garbage",
        lambda token: signing.dumps([1, "ann@example.com"], salt="another.salt", compress=True),
        lambda token: signing.dumps(["x"], salt=SALT),
    ],
)
def test_a_tampered_link_is_a_400_and_suppresses_nobody(tenant_a, mangle):
    token = mangle(make_token(tenant_a.pk, "ann@example.com"))
    for method in ("get", "post"):
        response = getattr(Client(), method)(reverse("unsubscribe", args=[token]))
        assert response.status_code == 400 and "not valid" in response.content.decode()
    assert not Suppression.objects.exists()


def test_another_tenants_link_unsubscribes_only_in_that_tenant(tenant_a, tenant_b, charlie):
    contacts.contact_create(tenant=tenant_a, email="ann@example.com")
    charlie.client.post(link(tenant_b))
    assert contacts.is_suppressed(tenant_b, "ann@example.com")
    assert not contacts.is_suppressed(tenant_a, "ann@example.com")


def test_a_link_of_a_deleted_tenant_is_invalid(tenant_a):
    url = link(tenant_a)
    tenant_a.delete()
    assert Client().post(url).status_code == 400
    assert not Suppression.objects.exists()


def test_a_signed_in_user_who_has_not_finished_onboarding_can_still_unsubscribe(tenant_a, alice):
    alice.user.email_verified_at = None
    alice.user.save()
    response = alice.client.post(link(tenant_a))
    assert response.status_code == 200 and contacts.is_suppressed(tenant_a, "ann@example.com")


def test_a_link_made_compressed_before_still_reads():
    from django.core import signing

    from mailing.unsubscribe import SALT, read_token

    old = signing.dumps([7, "ann@x.test"], salt=SALT, compress=True)
    assert read_token(old) == (7, "ann@x.test")


@pytest.mark.parametrize("email", ["ann@example.com", "josé@пример.рф", 'a"b\\c@x.test'])
def test_a_token_is_what_djangos_signer_makes(email, monkeypatch, settings):
    import time

    # The timestamp is made once a second: the next second has its own.
    for secret, now in (("one-" + "x" * 50, 1767225600.75), ("two-" + "y" * 50, 1767225601.1)):
        settings.SECRET_KEY = secret
        monkeypatch.setattr(time, "time", lambda now=now: now)
        assert make_token(42, email) == signing.dumps([42, email], salt=SALT)
        monkeypatch.undo()
        assert signing.loads(make_token(42, email), salt=SALT) == [42, email]


def test_a_starting_worker_reverses_the_link_before_its_first_letter():
    from config.celery import prepare_links
    from mailing.unsubscribe import _path

    _path.cache_clear()
    prepare_links()  # connected to Celery's worker_init
    assert _path.cache_info().currsize == 1


# The recipient of a Russian organisation's letter whose browser asks for
# no language we have reads the page in the organisation's language.
RU_ASK, RU_DONE = "Больше не присылать письма от", "больше не будет получать писем от"
VI_ASK, VI_DONE = "Ngừng gửi thư từ", "Bạn đã hủy đăng ký"
EN_ASK, EN_DONE = "Stop letters from", "You are unsubscribed"


@pytest.mark.parametrize(
    ("accept", "lang", "ask", "done"),
    [
        ("de-DE,de;q=0.9", "ru", RU_ASK, RU_DONE),
        (None, "ru", RU_ASK, RU_DONE),
        ("ru-RU,ru;q=0.9", "ru", RU_ASK, RU_DONE),
        ("vi", "vi", VI_ASK, VI_DONE),
        ("de,en;q=0.5", "en", EN_ASK, EN_DONE),
    ],
    ids=["german", "no-header", "russian", "vietnamese", "english-second"],
)
def test_the_page_is_in_the_browsers_language_else_the_organisations(tenant_a, accept, lang, ask, done):
    tenant_a.default_language = "ru"
    tenant_a.save(update_fields=["default_language"])
    headers = {"Accept-Language": accept} if accept else {}
    asked = Client().get(link(tenant_a), headers=headers)
    assert ask in asked.content.decode() and f'<html lang="{lang}">' in asked.content.decode()
    assert asked["Content-Language"] == lang
    confirmed = Client(enforce_csrf_checks=True).post(link(tenant_a), {"confirm": "1"}, headers=headers)
    assert done in confirmed.content.decode() and confirmed["Content-Language"] == lang
    assert contacts.is_suppressed(tenant_a, "ann@example.com")


def test_an_english_organisations_page_stays_english_for_a_german_browser(tenant_a):
    response = Client().get(link(tenant_a), headers={"Accept-Language": "de"})
    assert EN_ASK in response.content.decode() and response["Content-Language"] == "en"
