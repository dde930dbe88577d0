"""The suppression list through the API: add (idempotent: the first
reason stays), remove, list; one tenant never touches another's."""

from urllib.parse import quote

import pytest

from mailing.models import Suppression
from tests.mailing.builders import suppress

from .conftest import problem

pytestmark = pytest.mark.django_db
URL = "/api/v1/suppressions/"


def test_add_list_and_remove(api, tenant_a):
    response = api.post(URL, {"email": "Ann@Example.com", "note": "asked by phone"})
    assert response.status_code == 201
    assert response.json() == {**response.json(), "email": "Ann@example.com", "reason": "manual"}
    assert api.post(URL, {"email": "Ann@example.com"}).status_code == 200  # already there
    assert [s["email"] for s in api.get(URL).json()["results"]] == ["Ann@example.com"]
    assert api.delete(f"{URL}Ann@example.com/").status_code == 204
    assert not Suppression.objects.exists()
    problem(api.delete(f"{URL}Ann@example.com/"), 404)


def test_a_bad_address_is_refused(api):
    assert problem(api.post(URL, {"email": "nope"}), 422)["errors"]["email"]


def test_the_list_filters_by_reason(api, tenant_a):
    suppress(tenant_a, "m@example.com")
    Suppression.objects.create(tenant=tenant_a, email="u@example.com", reason="unsubscribed")
    body = api.get(URL, {"reason": "unsubscribed"}).json()
    assert [s["email"] for s in body["results"]] == ["u@example.com"]


def test_another_tenants_suppression_is_neither_seen_nor_removed(api, tenant_b):
    suppress(tenant_b, "theirs@example.com")
    assert api.get(URL).json()["results"] == []
    problem(api.delete(f"{URL}theirs@example.com/"), 404)
    assert Suppression.objects.filter(tenant=tenant_b).exists()


@pytest.mark.parametrize("email", ["a/b@example.com", "a?b@example.com", "a#b@example.com", "a%b@example.com"])
def test_an_address_the_api_suppressed_can_be_removed_whatever_it_holds(api, tenant_a, email):
    """An address may hold "/" (RFC 5321): added through the API, it could
    not be removed, its path cut at the slash (the other characters a
    client percent-encodes)."""
    assert api.post(URL, {"email": email}).status_code == 201
    assert api.delete(f"{URL}{quote(email, safe='@')}/").status_code == 204
    assert not Suppression.objects.exists()
