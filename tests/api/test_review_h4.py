"""An outsider's requests found these: each was a 500, a process held for
minutes, or something stored broken."""

import json

import pytest

from mailing.models import ContactList, CustomField

from .conftest import problem

pytestmark = pytest.mark.django_db
URL = "/api/v1/contacts/"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (URL, {"email": "a@x.test", "fields": {"ci\x00ty": "Tver"}}),
        ("/api/v1/lists/", {"name": "Leads", "na\x00me": 1}),
    ],
    ids=["field", "unknown-key"],
)
def test_a_refusal_naming_a_key_with_a_nul_is_kept_for_its_idempotency_key(api, tenant_a, path, body):
    """The refusal named the key as it came, NUL and all, and PostgreSQL
    keeps no NUL in a jsonb: storing the answer for the Idempotency-Key was
    a 500, and the key stayed claimed (409 "in progress" to every retry)."""
    CustomField.objects.create(tenant=tenant_a, key="city", label="City")
    first = problem(api.post(path, body, HTTP_IDEMPOTENCY_KEY="nul-1"), 422)
    assert "\ufffd" in json.dumps(first["errors"], ensure_ascii=False)
    again = api.post(path, body, HTTP_IDEMPOTENCY_KEY="nul-1")
    assert problem(again, 422) == first and again["Idempotent-Replayed"] == "true"
    assert not ContactList.objects.exists()
