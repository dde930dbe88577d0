"""The staff admin in Russian and Vietnamese: every registered model of our
apps, its list (column headers, filter titles, actions) and its form
(labels, fieldset titles, inline headers, help), with no English left. One
object of each model is made first, with Cyrillic data, so the form is an
existing object's and its inlines and filters show."""

import re
from html.parser import HTMLParser

import pytest
from django.contrib import admin
from django.urls import reverse

from accounts.models import Invitation, Tenant, User
from mailing.models import BounceReport, Letter, Mailing, Suppression
from servers.models import BounceMailbox, ConnectionTest, SmtpServer, TenantRest
from tests.i18n.english import SAME_IN_EVERY_LANGUAGE, english_left
from tests.mailing.builders import make_template
from tests.servers.factories import make_server

pytestmark = pytest.mark.django_db

OUR_APPS = ("accounts", "servers", "mailing")
# Names a Russian mail professional writes in Latin letters: protocol
# words in capitals (SMTP, UIDL, UIDVALIDITY), headers, and the keys Django's
# own Russian names ("Удерживайте Control или Command на Mac").
LATIN_ALLOWED = re.compile(r"^(?:[A-Z0-9]{2,}|Message-ID|Reply-To|Control|Command|Mac)$")


class Labels(HTMLParser):
    """The text of the admin's own words on a page: list column headers,
    filter titles, the action menu, form labels, fieldset and inline
    titles and help. Not the data (cells, the object's name, choices)."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, bool | str]] = []
        self.found: list[str] = []
        self.help: list[str] = []  # help texts: sentences that may name domains and addresses
        self.text: list[str] = []
        self.in_thead = self.in_action = False

    def _wanted(self, tag: str, attrs: dict) -> bool | str:
        classes = attrs.get("class") or ""
        return (
            (tag == "th" and self.in_thead)
            or tag in ("label", "summary", "legend")
            or (tag == "h3" and "changelist-filter" in self._path())
            or (tag == "h2" and "heading" in classes)
            or (tag == "option" and self.in_action)
        ) or ("help" if tag == "div" and "help" in classes.split() else False)

    def _path(self) -> str:
        return " ".join(tag for tag, _wanted in self.stack)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attrs = dict(attrs)
        if tag in ("input", "br", "img", "hr", "meta", "link"):
            return
        self.in_thead |= tag == "thead"
        self.in_action |= tag == "select" and attrs.get("name") == "action"
        if tag == "details" and attrs.get("data-filter-title"):
            self.found.append(attrs["data-filter-title"])
        wanted = self._wanted(tag, attrs)
        if wanted:
            self.text = []
        self.stack.append((tag, wanted))

    def handle_endtag(self, tag: str) -> None:
        self.in_thead &= tag != "thead"
        self.in_action &= tag != "select"
        while self.stack:
            opened, wanted = self.stack.pop()
            if wanted:
                text = " ".join("".join(self.text).split())
                (self.help if wanted == "help" else self.found).append(text)
            if opened == tag:
                break

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def labels_of(html: str) -> tuple[list[str], list[str]]:
    """(labels, help texts) of a page."""
    parser = Labels()
    parser.feed(html)
    return [text for text in parser.found if text], [text for text in parser.help if text]


def latin_words(texts: list[str]) -> list[str]:
    words = {w for text in texts for w in re.findall(r"[A-Za-z][A-Za-z-]*", text)}
    return sorted(w for w in words if w not in SAME_IN_EVERY_LANGUAGE and not LATIN_ALLOWED.match(w.strip("-")))


@pytest.fixture
def one_of_each(db) -> dict:
    tenant = Tenant.objects.create(name="Ромашка", slug="romashka")
    user = User.objects.create_user("ivan@romashka.test", full_name="Иван")
    server = make_server(tenant, name="Яндекс")
    platform = make_server(None, name="Платформа")
    mailing = Mailing.objects.create(tenant=tenant, name="Новости", template=make_template(tenant, name="Шаблон"))
    letter = Letter.objects.create(tenant=tenant, mailing=mailing, email="olga@romashka.test", server=server)
    return {
        Tenant: tenant,
        User: user,
        Invitation: Invitation.objects.create(tenant=tenant, email="petr@romashka.test", invited_by=user),
        SmtpServer: platform,
        BounceMailbox: BounceMailbox.objects.create(tenant=tenant, host="imap.yandex.ru", login="ivan@yandex.ru"),
        ConnectionTest: ConnectionTest.objects.create(tenant=tenant, server=server),
        TenantRest: TenantRest.objects.create(tenant=tenant, server=platform, reason="spam", blocked=True),
        Mailing: mailing,
        Letter: letter,
        Suppression: Suppression.objects.create(tenant=tenant, email="anna@romashka.test", reason="manual"),
        BounceReport: BounceReport.objects.create(tenant=tenant, source_key="k", kind="hard", letter=letter),
    }


def admin_pages(objects: dict) -> list[str]:
    pages = []
    for model in admin.site._registry:
        if model._meta.app_label in OUR_APPS:
            info = (model._meta.app_label, model._meta.model_name)
            pages.append(reverse("admin:{}_{}_changelist".format(*info)))
            pages.append(reverse("admin:{}_{}_change".format(*info), args=[objects[model].pk]))
    return pages


def test_every_model_of_ours_in_the_admin_has_an_object_here(one_of_each):
    registered = {model for model in admin.site._registry if model._meta.app_label in OUR_APPS}
    assert registered == set(one_of_each)


@pytest.mark.parametrize("language", ["ru", "vi"])
def test_the_admin_shows_no_english_label(staff_client, one_of_each, language):
    User.objects.filter(is_staff=True).update(language=language)
    left = {}
    for url in admin_pages(one_of_each):
        response = staff_client.get(url)
        assert response.status_code == 200, url
        labels, help_texts = labels_of(response.content.decode())
        assert labels, url
        english = english_left("\n".join(labels + help_texts))
        if language == "ru":
            english += latin_words(labels)
        if english:
            left[url] = english
    assert left == {}


def test_the_scan_sees_an_english_column_header():
    page = (
        '<table><thead><tr><th scope="col"><div class="text"><a href="?o=1">Created at</a></div></th>'
        '<th scope="col">Статус</th></tr></thead><tbody><tr><th>Acme Corp</th></tr></tbody></table>'
        '<label for="id_x">Sender address:</label><h2>Acme Corp</h2>'
    )
    labels, help_texts = labels_of(page + '<div class="help">Leave empty to keep it.</div>')
    assert labels == ["Created at", "Статус", "Sender address:"] and help_texts == ["Leave empty to keep it."]
    assert latin_words(labels) == ["Created", "Sender", "address", "at"]


def test_the_admin_says_which_zone_its_times_are_in(staff_client):
    page = staff_client.get(reverse("admin:index")).content.decode()
    assert re.search(r'<div id="site-zone">[^<]*UTC</div>', page)
