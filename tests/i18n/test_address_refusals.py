"""Why an address is refused, in the reader's language: email-validator
words its refusals in English only ("An email address must have an
@-sign."), and they reached contact forms, imports and the API as they
were."""

import json

import pytest
from django.core.exceptions import ValidationError
from django.utils import translation

from accounts import api_keys
from servers.addresses import checked_address

BAD = ["bad", "@example.com", "ann@", "ann@example", "ann..lee@example.com", ".ann@example.com", "ann.@example.com",
       "ann@exa mple.com", "a" * 250 + "@example.com", "ann@example.com x", "ann,lee@example.com", "ann@-x.com",
       "ann@[1.2.3.4]", '"ann"@example.com', "ann@example.com."]  # fmt: skip


def refusal(address: str, language: str) -> str:
    with translation.override(language), pytest.raises(ValidationError) as refused:
        checked_address(address)
    return refused.value.messages[0]


@pytest.mark.parametrize("language", ["ru", "vi"])
@pytest.mark.parametrize("address", BAD)
def test_a_refused_address_is_explained_in_the_language(language, address):
    english = refusal(address, "en")
    said = refusal(address, language)
    assert said != english
    assert "@-sign" not in said and " the " not in said


@pytest.mark.parametrize(("language", "said"), [("ru", "В адресе электронной почты должен быть знак @."),
                                                ("vi", "Địa chỉ email phải có ký tự @.")])  # fmt: skip
def test_the_api_explains_a_missing_at_sign_in_the_language(tenant_a, alice, language, said, client):
    key = api_keys.api_key_create(tenant=tenant_a, by=alice.user, name="k", scopes=["contacts"])[1]
    response = client.post("/api/v1/contacts/", data=json.dumps({"email": "ann.example.com"}),
                           content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}",
                           HTTP_ACCEPT_LANGUAGE=language)  # fmt: skip
    assert response.status_code == 422
    assert response.json()["errors"]["email"] == [said]
