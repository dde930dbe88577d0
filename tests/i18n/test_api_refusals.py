"""The API's refusals of a field, in the language of Accept-Language:
Django REST framework's own (its Vietnamese catalogue has 20 strings, its
Russian lacks "Must be a valid UUID.") came back in English inside a
translated problem (config/django_strings.py lists them)."""

import json

import pytest

from accounts import api_keys
from tests.mailing.builders import make_list

BODIES = [
    ("/api/v1/contacts/", {"email": None, "lists": ["nope"], "first_name": 5 * [1], "fields": "x"}),
    ("/api/v1/contacts/", {"first_name": "x" * 500, "lists": "x", "fields": {"a": None}}),
    ("/api/v1/contacts/", {"email": "", "lists": [str(i) for i in range(101)]}),
    ("/api/v1/contacts/bulk/", {"list": "nope", "contacts": []}),
    ("/api/v1/contacts/bulk/", {"contacts": "x"}),
    ("/api/v1/contacts/bulk/", ["not", "an", "object"]),
    ("/api/v1/lists/", {"name": "x" * 500}),
    ("/api/v1/mailings/", {"name": "", "template": "x", "lists": []}),
]


def errors(client, key: str, language: str, url: str, data: object) -> dict:
    response = client.post(url, data=json.dumps(data), content_type="application/json",
                           HTTP_AUTHORIZATION=f"Bearer {key}", HTTP_ACCEPT_LANGUAGE=language)  # fmt: skip
    assert response.status_code in (400, 422), response.content
    return response.json()["errors"]


@pytest.mark.parametrize("language", ["ru", "vi"])
def test_every_field_refusal_of_the_api_is_in_the_language(client, tenant_a, alice, language):
    make_list(tenant_a, "L", ["a@x.test"])
    key = api_keys.api_key_create(tenant=tenant_a, by=alice.user, name="k", scopes=["contacts", "mailings"])[1]
    english_left = []
    for url, data in BODIES:
        english, said = errors(client, key, "en", url, data), errors(client, key, language, url, data)
        assert english.keys() == said.keys()
        for field, messages in said.items():
            english_left += [m for m in messages if m in english[field]]
    assert english_left == []
