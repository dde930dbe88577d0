"""A name must show: one made only of invisible characters (zero-width
spaces, joiners, the BOM, a soft hyphen, other format characters, spaces
of any kind, combining marks with no letter to sit on) is refused next to
its field, on every page and API call that stores one; names in any
script, with their marks, and emoji are kept."""

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from accounts.models import ApiKey, Tenant
from mailing.models import ContactList, CustomField, Mailing, MailTemplate
from servers.models import SmtpServer
from servers.validators import visible_name
from tests.api.conftest import make_api, problem
from tests.mailing.builders import make_list, make_template
from tests.servers.factories import make_server

pytestmark = pytest.mark.django_db
INVISIBLE = [
    "\u200b",  # zero-width space
    "\u200c\u200d",  # ZWNJ, ZWJ
    "\u2060",  # word joiner
    "\ufeff",  # BOM
    "\u00ad",  # soft hyphen
    "\u200b \u00a0\u3000\u2003\u200b",  # with spaces of several kinds
    "\u0301\u0308",  # combining marks alone
    "\u202e\u2066",  # bidi controls
    "\u3164",  # Hangul filler, a letter by its category that shows nothing
    "\u2800",  # braille blank
    "\U000e0041",  # a tag character
]
VISIBLE = [
    "Клиенты",
    "Vie\u0323\u0302t Nam",  # Việt, its marks after the base letter (decomposed)
    "Khách hàng",
    "🎉",
    "❤\ufe0f",
    "顧客リスト",
    "\u200bA",  # one visible character is enough
    "٣",
]
ZWSP = "\u200b"


@pytest.mark.parametrize("name", INVISIBLE)
def test_a_name_without_a_visible_character_is_refused(name):
    with pytest.raises(ValidationError) as refused:
        visible_name(name)
    assert refused.value.code == "invisible"


@pytest.mark.parametrize("name", VISIBLE)
def test_names_in_any_script_with_marks_and_emoji_are_kept(name):
    visible_name(name)


def refused_next_to(response, field: str, form: str = "form") -> None:
    assert response.status_code in (200, 400), response.status_code
    form = response.context[form]
    assert any("visible character" in e for e in form.errors[field]), form.errors


def test_a_list_and_a_custom_field_need_a_visible_name(alice, tenant_a):
    refused_next_to(alice.client.post(reverse("contacts:list_create"), {"name": ZWSP}), "name")
    customers = make_list(tenant_a, "Customers")
    rename = alice.client.post(reverse("contacts:list_rename", args=[customers.public_id]), {"name": "\u2060\u00ad"})
    refused_next_to(rename, "name")
    refused_next_to(alice.client.post(reverse("contacts:field_add"), {"label": "\ufeff"}), "label", "field_form")
    assert list(ContactList.objects.values_list("name", flat=True)) == ["Customers"]
    assert not CustomField.objects.exists()
    assert alice.client.post(reverse("contacts:list_create"), {"name": "Клиенты 🎉"}).status_code == 302


def test_a_template_and_a_mailing_need_a_visible_name(alice, tenant_a):
    template = {"name": "\u200c\u200d", "subject": "Hi", "text_body": "Hi {{ unsubscribe_url }}", "html_body": ""}
    response = alice.client.post(reverse("templates:add"), template)
    refused_next_to(response, "name")
    assert response.context["form"]["subject"].value() == "Hi"  # nothing typed is lost
    assert not MailTemplate.objects.exists()
    server, customers = make_server(tenant_a), make_list(tenant_a, "L", ["a@x.test"])
    mailing = {"name": ZWSP, "template": make_template(tenant_a).pk, "lists": [customers.pk], "servers": [server.pk]}
    refused_next_to(alice.client.post(reverse("mailings:new"), mailing), "name")
    assert not Mailing.objects.exists()


def test_a_server_needs_a_visible_name(alice, tenant_a):
    data = {"name": "\u00ad\u200b", "sender_email": "n@acme.test", "host": "8.8.8.8", "port": 587,
            "security": "starttls", "login": "n@acme.test", "password": "pw", "enabled": "on"}  # fmt: skip
    refused_next_to(alice.client.post(reverse("servers:add"), data), "name")
    assert not SmtpServer.objects.filter(tenant=tenant_a).exists()


def test_an_organisation_and_an_api_key_need_a_visible_name(alice, tenant_a):
    refused_next_to(alice.client.post(reverse("accounts:tenant_new"), {"name": "\u3000\u200b"}), "name")
    assert Tenant.objects.count() == 1
    response = alice.client.post("/accounts/organisation/api-keys/", {"name": ZWSP, "scopes": ["read"]})
    refused_next_to(response, "name")
    assert not ApiKey.objects.exists()


def test_signing_up_needs_a_visible_organisation_name(client):
    data = {"email": "dana@initech.test", "organisation": "\ufeff", "password": "a long enough password 1"}
    refused_next_to(client.post(reverse("accounts:signup"), data), "organisation")


def test_the_api_refuses_an_invisible_list_or_mailing_name(alice, tenant_a):
    api = make_api(tenant_a, by=alice.user)
    body = problem(api.post("/api/v1/lists/", {"name": ZWSP}), 422)
    assert list(body["errors"]) == ["name"] and "visible character" in body["errors"]["name"][0]
    make_server(tenant_a)
    mailing = {
        "name": "\u2060",
        "template": str(make_template(tenant_a).public_id),
        "lists": [str(make_list(tenant_a, "L", ["a@x.test"]).public_id)],
    }
    body = problem(api.post("/api/v1/mailings/", mailing), 422)
    assert list(body["errors"]) == ["name"] and "visible character" in body["errors"]["name"][0]
    assert not Mailing.objects.exists()
    assert api.post("/api/v1/lists/", {"name": "Khách hàng"}).status_code == 201


@pytest.mark.parametrize("name", ["\u2065", "\ufff0\ufff8", "\U000e0000", "\U000e0080\U000e00ff", "\U000e0fff"])
def test_default_ignorable_code_points_not_yet_assigned_are_refused_too(name):
    """Unicode draws every default-ignorable code point as nothing, even
    one not yet assigned (U+2065, U+FFF0-FFF8, the rest of U+E0000-E0FFF):
    their category was "unassigned", which passed."""
    with pytest.raises(ValidationError):
        visible_name(name)
