"""Lists through the API: list with counts, create, read, delete (the
contacts stay); another tenant's list is 404."""

import pytest

from mailing.models import Contact, ContactList
from tests.mailing.builders import make_list

from .conftest import problem

pytestmark = pytest.mark.django_db
URL = "/api/v1/lists/"


def test_create_list_read_and_delete(api, tenant_a):
    created = api.post(URL, {"name": "  Hot   leads "})
    assert created.status_code == 201 and created.json()["name"] == "Hot leads"
    make_list(tenant_a, "Customers", ["a@example.com", "b@example.com"])
    listed = {row["name"]: row["contact_count"] for row in api.get(URL).json()["results"]}
    assert listed == {"Hot leads": 0, "Customers": 2}
    customers = ContactList.objects.get(name="Customers")
    assert api.get(f"{URL}{customers.public_id}/").json()["contact_count"] == 2
    assert api.delete(f"{URL}{customers.public_id}/").status_code == 204
    assert Contact.objects.filter(tenant=tenant_a).count() == 2  # the contacts stay


def test_a_taken_name_is_refused(api, tenant_a):
    make_list(tenant_a, "Customers")
    assert problem(api.post(URL, {"name": "customers"}), 422)["errors"]["name"]


def test_another_tenants_list_is_404(api, tenant_b):
    theirs = make_list(tenant_b, "Theirs", ["t@example.com"])
    problem(api.get(f"{URL}{theirs.public_id}/"), 404)
    problem(api.delete(f"{URL}{theirs.public_id}/"), 404)
    assert ContactList.objects.filter(pk=theirs.pk).exists()
    assert api.get(URL).json()["results"] == []
