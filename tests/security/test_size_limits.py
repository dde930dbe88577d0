"""Every free-text field a tenant's user fills has a size limit well below
the request body limit (DATA_UPLOAD_MAX_MEMORY_SIZE, 4 MiB): a value one
character (or byte) too long is refused with the limit named next to the
field and nothing is stored; the largest values allowed arrive even when the
browser percent-encodes them; a body larger than the request limit is
refused with 400, never a 500. The template bodies (512 KB each in UTF-8)
and the servers' passwords had no limit at all."""

import re
from urllib.parse import urlencode

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.urls import reverse

from mailing import templates_services
from mailing.models import ContactList, CustomField, MailTemplate, Suppression
from mailing.models.content import BODY_MAX_BYTES
from servers.forms import PASSWORD_MAX_LENGTH
from servers.models import BounceMailbox, SmtpServer
from tests.mailing.builders import make_list, make_template
from tests.servers.factories import make_server

from .test_hostile_input import MAILBOX, SERVER, TEMPLATE

pytestmark = pytest.mark.django_db
KB = 1024


def errors_next_to(response, field: str) -> list[str]:
    """The errors the page shows under `field` (includes/field.html), whatever
    id prefix the page gives the form."""
    html = response.content.decode()
    lists = re.findall(rf'<ul class="field-errors" id="[\w-]*{field}_error">(.*?)</ul>', html, re.S)
    return [item for found in lists for item in re.findall(r"<li>(.*?)</li>", found, re.S)]


def refused_next_to(response, field: str, limit: str) -> None:
    assert response.status_code == 400, response.status_code
    errors = errors_next_to(response, field)
    assert any(limit in error for error in errors), (field, errors)


def mailing_data(tenant) -> dict:
    template = make_template(tenant)
    contact_list = make_list(tenant, "L", ["a@x.test"])
    server = make_server(tenant)
    return {
        "name": "Spring",
        "template": template.pk,
        "lists": [contact_list.pk],
        "servers": [server.pk],
    }


# (what, the form's URL, valid data, field, the limit in characters, the
# model whose rows must not change)
CASES = [
    ("template name", "templates:add", TEMPLATE, "name", 120, MailTemplate),
    ("template subject", "templates:add", TEMPLATE, "subject", 250, MailTemplate),
    ("template sender name", "templates:add", TEMPLATE, "sender_name", 100, MailTemplate),
    ("list name", "contacts:list_create", {"name": "L"}, "name", 120, ContactList),
    ("field name", "contacts:field_add", {"label": "City", "key": "city"}, "label", 100, CustomField),
    ("suppression note", "contacts:suppression_add", {"email": "s@x.test", "note": "n"}, "note", 300, Suppression),
    ("server name", "servers:add", SERVER, "name", 100, SmtpServer),
    ("server password", "servers:add", SERVER, "password", PASSWORD_MAX_LENGTH, SmtpServer),
    ("mailbox password", "servers:mailbox", MAILBOX, "password", PASSWORD_MAX_LENGTH, BounceMailbox),
    ("mailbox folder", "servers:mailbox", MAILBOX, "folder", 200, BounceMailbox),
]


@pytest.mark.parametrize(("what", "url", "data", "field", "limit", "model"), CASES, ids=[c[0] for c in CASES])
def test_a_value_one_character_too_long_is_refused_next_to_its_field(alice, what, url, data, field, limit, model):
    response = alice.client.post(reverse(url), {**data, field: "x" * (limit + 1)})
    refused_next_to(response, field, f"at most {limit} characters")
    assert not model.objects.exists()


def test_a_mailing_name_too_long_is_refused_next_to_it(alice, tenant_a):
    data = mailing_data(tenant_a)
    response = alice.client.post(reverse("mailings:new"), {**data, "name": "x" * 151})
    refused_next_to(response, "name", "at most 150 characters")


def test_a_custom_field_value_too_long_is_refused_next_to_it(alice, tenant_a):
    CustomField.objects.create(tenant=tenant_a, key="city", label="City")
    response = alice.client.post(reverse("contacts:add"), {"email": "a@x.test", "cf_city": "x" * 1001})
    refused_next_to(response, "cf_city", "at most 1000 characters")


@pytest.mark.parametrize("field", ["text_body", "html_body"])
def test_a_template_body_over_512_kb_is_refused_next_to_it_and_not_checked(alice, field):
    # Cyrillic: 2 bytes a letter, so the limit is in bytes, not characters;
    # the placeholder at the start would be an error if the body were checked.
    body = "{{ nope }}" + "я" * (BODY_MAX_BYTES // 2)
    response = alice.client.post(reverse("templates:add"), {**TEMPLATE, field: body})
    refused_next_to(response, field, "at most 512 KB")
    assert "nope" not in " ".join(errors_next_to(response, field))
    assert not MailTemplate.objects.exists()


def test_two_bodies_at_the_limit_arrive_percent_encoded_and_are_saved(alice):
    """A browser sends a form URL-encoded: each byte of a Cyrillic letter
    becomes three. Both bodies at their limit still fit in the request."""
    greeting = "Привет {{ first_name }}! "
    body = greeting + "я" * ((BODY_MAX_BYTES - len(greeting.encode())) // 2)
    assert BODY_MAX_BYTES - 1 <= len(body.encode()) <= BODY_MAX_BYTES
    encoded = urlencode({**TEMPLATE, "text_body": body, "html_body": body})
    assert len(encoded) > 2.5 * 1024 * KB  # Django's default limit would have refused it
    response = alice.client.post(reverse("templates:add"), encoded, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 302, errors_next_to(response, "text_body") + errors_next_to(response, "html_body")
    assert MailTemplate.objects.get().html_body == body


def test_a_request_body_over_the_limit_is_refused_with_400(alice):
    body = "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)
    response = alice.client.post(
        reverse("templates:add"),
        urlencode({**TEMPLATE, "text_body": body}),
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 400
    assert not MailTemplate.objects.exists()


def test_the_template_service_refuses_a_body_too_large(tenant_a):
    """The admin and the shell go through the service: the model's limit."""
    template = MailTemplate(tenant=tenant_a, name="t", subject="s", text_body="x" * (BODY_MAX_BYTES + 1))
    with pytest.raises(ValidationError) as refused:
        templates_services.template_save(template=template)
    assert "at most 512 KB" in refused.value.message_dict["text_body"][0]
    assert not MailTemplate.objects.exists()
