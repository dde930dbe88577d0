"""Contacts through the API: create one, upsert many by address through
the CSV import's own path (same checks, same per-row errors, same
merging), list with a cursor, read and delete; another tenant's are 404."""

import pytest
from django.db import connections

from mailing.imports.runner import Mapping, _parse
from mailing.models import Contact, ContactImport, CustomField, ImportRejection
from tests.mailing.builders import make_list

from .conftest import problem

pytestmark = pytest.mark.django_db
URL = "/api/v1/contacts/"
BULK = "/api/v1/contacts/bulk/"


def test_it_creates_a_contact_in_its_lists(api, tenant_a):
    customers = make_list(tenant_a, "Customers")
    response = api.post(URL, {"email": "Ann@Example.COM", "first_name": " Ann ", "lists": [str(customers.public_id)]})
    assert response.status_code == 201, response.content
    body = response.json()
    contact = Contact.objects.get(tenant=tenant_a)
    assert body["id"] == str(contact.public_id) and body["email"] == contact.email == "Ann@example.com"
    assert contact.first_name == "Ann" and body["lists"] == [str(customers.public_id)]


def test_a_bad_address_or_a_taken_one_is_refused_next_to_the_field(api, tenant_a):
    assert problem(api.post(URL, {"email": "not an address"}), 422)["errors"]["email"]
    api.post(URL, {"email": "ann@example.com"})
    body = problem(api.post(URL, {"email": "ann@example.com"}), 422)
    assert "already exists" in body["errors"]["email"][0]
    assert Contact.objects.filter(tenant=tenant_a).count() == 1


def test_a_value_for_a_field_not_defined_is_refused_by_name_not_dropped(api, tenant_a):
    CustomField.objects.create(tenant=tenant_a, key="city", label="City")
    fields = {"city": "Tver", "company": "Acme", "plan\x00": "x"}
    body = problem(api.post(URL, {"email": "ann@example.com", "fields": fields}), 422)
    assert set(body["errors"]) == {"fields.company", "fields.plan\ufffd"}  # a NUL no answer kept can hold
    assert "No such field" in body["errors"]["fields.company"][0]
    assert not Contact.objects.exists()
    assert api.post(URL, {"email": "ann@example.com", "fields": {"city": "Tver"}}).json()["fields"] == {"city": "Tver"}


def test_another_tenants_list_is_no_list(api, tenant_b):
    theirs = make_list(tenant_b, "Theirs")
    body = problem(api.post(URL, {"email": "ann@example.com", "lists": [str(theirs.public_id)]}), 422)
    assert body["errors"] == {"lists": ["No such list."]}
    assert not Contact.objects.exists()


def test_bulk_upsert_goes_through_the_import_with_its_per_row_errors(api, tenant_a):
    customers = make_list(tenant_a, "Customers")
    Contact.objects.create(tenant=tenant_a, email="old@example.com", first_name="Old", fields={"city": "Tver"})
    rows = [
        {"email": "new@example.com", "first_name": "New", "fields": {"city": "Kazan", "plan": 3}},
        {"email": "old@example.com", "last_name": "Timer"},
        {"email": "broken@@example.com"},
        {"first_name": "No address"},
        "not an object",
        {"email": "list@example.com", "fields": {"city": ["a", "list"]}},
        {"email": "new@EXAMPLE.com", "last_name": "Later"},  # merged into the first row
        {"email": "ctrl@example.com", "first_name": "Bad\x07name"},
    ]
    response = api.post(BULK, {"list": str(customers.public_id), "contacts": rows})
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["rows"], body["created"], body["rejected"]) == (8, 1, 5)
    assert [r["index"] for r in body["rejections"]] == [2, 3, 4, 5, 7]
    # The reasons are the CSV import's own, word for word.
    mapping = Mapping(email=0, first_name=1, last_name=2, fields={})
    assert body["rejections"][0]["reason"] == _parse(["broken@@example.com", "", ""], mapping)
    assert body["rejections"][1]["reason"] == _parse(["", "No address", ""], mapping)
    assert body["rejections"][4]["reason"] == _parse(["ctrl@example.com", "Bad\x07name", ""], mapping)
    new = Contact.objects.get(tenant=tenant_a, email="new@example.com")
    assert (new.first_name, new.last_name, new.fields) == ("New", "Later", {"city": "Kazan", "plan": "3"})
    old = Contact.objects.get(tenant=tenant_a, email="old@example.com")
    assert (old.first_name, old.last_name, old.fields) == ("Old", "Timer", {"city": "Tver"})
    assert set(customers.contacts.values_list("email", flat=True)) == {"new@example.com", "old@example.com"}
    # Recorded as an import, as a CSV's would be, with the rejected rows.
    imp = ContactImport.objects.get(public_id=body["import_id"], tenant=tenant_a)
    assert imp.status == "done" and imp.file_name == "API: CRM" and imp.rejected == 5
    assert list(ImportRejection.objects.filter(contact_import=imp).values_list("line", flat=True)) == [3, 4, 5, 6, 8]
    assert set(CustomField.objects.filter(tenant=tenant_a).values_list("key", flat=True)) == {"city", "plan"}


def test_bulk_upsert_refuses_a_bad_field_name_per_row(api, tenant_a):
    customers = make_list(tenant_a)
    rows = [{"email": "a@example.com", "fields": {"Bad Name!": "x"}}, {"email": "b@example.com"}]
    body = api.post(BULK, {"list": str(customers.public_id), "contacts": rows}).json()
    assert body["created"] == 1 and body["rejections"][0]["index"] == 0
    assert "Bad Name!" in body["rejections"][0]["reason"]
    assert not CustomField.objects.filter(tenant=tenant_a).exists()


def test_bulk_upsert_defines_a_new_field_under_the_key_it_was_sent_with(api, tenant_a, alice):
    """A placeholder name as the page allows it (two underscores, one at the
    end) became another field (a_b, tail) while the values stayed under the
    key sent: nothing showed them, and {{ a__b }} was no field."""
    customers = make_list(tenant_a)
    rows = [{"email": "a@example.com", "fields": {"a__b": "x", "tail_": "y"}}]
    body = api.post(BULK, {"list": str(customers.public_id), "contacts": rows}).json()
    assert body["created"] == 1 and not body["rejections"]
    assert set(CustomField.objects.filter(tenant=tenant_a).values_list("key", flat=True)) == {"a__b", "tail_"}
    contact = Contact.objects.get(tenant=tenant_a)
    assert contact.fields == {"a__b": "x", "tail_": "y"}
    page = alice.client.get(f"/contacts/{contact.public_id}/").text
    assert 'value="x"' in page and 'value="y"' in page


def test_bulk_upsert_takes_at_most_ten_thousand_rows(api, tenant_a, settings):
    customers = make_list(tenant_a)
    rows = [{"email": f"r{i}@example.com"} for i in range(10_001)]
    body = problem(api.post(BULK, {"list": str(customers.public_id), "contacts": rows}), 422)
    assert "contacts" in body["errors"]
    assert not Contact.objects.exists()


def test_the_list_pages_with_a_cursor_and_filters_by_list(api, tenant_a):
    customers = make_list(tenant_a, "Customers", [f"c{i}@example.com" for i in range(5)])
    make_list(tenant_a, "Other", ["o@example.com"])
    seen, cursor = [], None
    while True:
        body = api.get(URL, {"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        seen += [c["email"] for c in body["results"]]
        if not (cursor := body["next_cursor"]):
            break
    assert sorted(seen) == sorted([f"c{i}@example.com" for i in range(5)] + ["o@example.com"])
    assert len(seen) == len(set(seen))
    body = api.get(URL, {"list": str(customers.public_id)}).json()
    assert len(body["results"]) == 5


def test_read_and_delete_one_and_another_tenants_is_404(api, api_b, tenant_a):
    contact = Contact.objects.create(tenant=tenant_a, email="ann@example.com")
    url = f"{URL}{contact.public_id}/"
    problem(api_b.get(url), 404)
    problem(api_b.delete(url), 404)
    assert api.get(url).json()["email"] == "ann@example.com"
    assert api.delete(url).status_code == 204
    assert not Contact.objects.exists()
    problem(api.get(url), 404)


def test_an_organisation_runs_one_bulk_upsert_at_a_time(api, api_b, tenant_a, tenant_b):
    """A bulk upsert of 10,000 rows runs in the web process that took it,
    and counted as one request: an organisation sending them in parallel
    took every web worker there is, everyone's pages and API with them.
    While one runs, its organisation's next is 429 with Retry-After (not
    kept for its Idempotency-Key: the retry runs); others' are not held."""
    from mailing.api.views.contacts import BULK_LOCK

    customers, theirs = make_list(tenant_a, "L"), make_list(tenant_b, "L")
    body = {"list": str(customers.public_id), "contacts": [{"email": "ann@example.com"}]}
    other = connections.create_connection("default")  # another web process's connection
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s, %s)", [BULK_LOCK, tenant_a.pk])
        busy = api.post(BULK, body, HTTP_IDEMPOTENCY_KEY="sync-1")
        assert problem(busy, 429)["type"] == "urn:postroute:problem:rate-limited"
        assert 1 <= int(busy["Retry-After"]) <= 60 and not ContactImport.objects.filter(tenant=tenant_a).exists()
        their_body = {"list": str(theirs.public_id), "contacts": [{"email": "bob@example.com"}]}
        assert api_b.post(BULK, their_body).status_code == 200
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [BULK_LOCK, tenant_a.pk])
    finally:
        other.close()
    retried = api.post(BULK, body, HTTP_IDEMPOTENCY_KEY="sync-1")
    assert retried.status_code == 200 and retried.json()["created"] == 1 and "Idempotent-Replayed" not in retried
