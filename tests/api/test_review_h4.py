"""An outsider's requests found these: each was a 500, a process held for
minutes, or something stored broken."""

import json

import pytest
from django.test import Client

from mailing.api.serializers import MAX_FIELD_KEYS
from mailing.models import ContactList, CustomField, Mailing
from tests.mailing.builders import make_list, make_template
from tests.servers.factories import make_server

from .conftest import problem

pytestmark = pytest.mark.django_db
URL = "/api/v1/contacts/"
ZERO = "00000000-0000-0000-0000-000000000000"
LONG = "k" * 100_000


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


def test_a_server_named_twice_in_a_new_mailing_is_one_server(api, tenant_a):
    """mailing_save made a link for each id given, and the second broke the
    one-link-a-server constraint: a 500. Named twice it is one server, as a
    list named twice is one list."""
    server = make_server(tenant_a)
    customers = make_list(tenant_a, "Customers", ["ann@example.com"])
    body = {
        "name": "Offer",
        "template": str(make_template(tenant_a).public_id),
        "lists": [str(customers.public_id)] * 2,
        "servers": [str(server.public_id), str(server.public_id).upper()],
    }
    response = api.post("/api/v1/mailings/", body)
    assert response.status_code == 201, response.content
    assert response.json()["servers"] == [str(server.public_id)]
    assert response.json()["lists"] == [str(customers.public_id)]


def test_a_charset_whose_codec_names_no_byte_it_cannot_read_is_415(api):
    """Python's punycode codec refuses with a bare UnicodeError, without
    the byte UnicodeDecodeError names: it went past the parser, a 500."""
    response = api.client.generic(
        "POST",
        "/api/v1/lists/",
        b'{"name": "Leads"}',
        content_type="application/json; charset=punycode",
        HTTP_AUTHORIZATION=f"Bearer {api.secret}",
    )
    assert "punycode" in problem(response, 415)["detail"]
    assert not ContactList.objects.exists()


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (URL, {"email": "a@x.test", "lists": ["x"] * 1000}, "lists"),
        (URL, {"email": "a@x.test", "fields": {f"k{i}": [] for i in range(1001)}}, "fields"),
        ("/api/v1/mailings/", {"name": "Offer", "template": ZERO, "lists": [ZERO], "servers": ["x"] * 101}, "servers"),
        ("/api/v1/contacts/bulk/", {"list": ZERO, "contacts": [None] * 10_001}, "contacts"),
    ],
    ids=["ids", "fields", "servers", "rows"],
)
def test_a_list_too_long_is_refused_for_its_length_not_item_by_item(api, path, body, field):
    """DRF read every item before the length: a 4 MB body of a million bad
    ids held a web process for minutes and answered 40 MB, an error an item."""
    errors = problem(api.post(path, body), 422)["errors"]
    assert list(errors) == [field] and len(errors[field]) == 1
    assert "no more than" in errors[field][0]


def test_the_schema_says_how_many_fields_a_contact_may_send():
    schema = Client().get("/api/schema/", {"format": "json"}).json()
    components = schema["components"]["schemas"]
    assert components["ContactRequest"]["properties"]["fields"]["maxProperties"] == MAX_FIELD_KEYS
    assert "maxProperties" not in components["Contact"]["properties"]["fields"]  # an answer holds what is stored


def test_a_null_bulk_row_is_rejected_alone_not_the_request(api, tenant_a):
    """README: a bad row does not stop the others. A null one refused the
    whole request (422, contacts.0), where a string or a number is one
    rejection among the rows."""
    customers = make_list(tenant_a)
    rows = [None, {"email": "ann@example.com"}]
    response = api.post(URL + "bulk/", {"list": str(customers.public_id), "contacts": rows})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["created"] == 1 and body["rejected"] == 1
    assert body["rejections"] == [{"index": 0, "reason": "The row must be an object with an “email”."}]


def test_a_list_name_taken_by_a_racing_request_is_a_refusal_not_a_500(api, tenant_a, monkeypatch):
    """Two requests creating one list (a CRM's retry without an
    Idempotency-Key) both passed the check for the name, and the second
    save broke contact_list_name_unique: a 500. Here the other request
    saves between this one's check and its save."""
    checked = ContactList.full_clean

    def other_request_first(self, *args, **kwargs):
        checked(self, *args, **kwargs)
        ContactList.objects.create(tenant=self.tenant, name=self.name)

    monkeypatch.setattr(ContactList, "full_clean", other_request_first)
    body = problem(api.post("/api/v1/lists/", {"name": "Leads"}), 422)
    assert body["errors"]["name"] == ["There is already a list named “Leads”."]
    assert ContactList.objects.filter(tenant=tenant_a).count() == 1


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        (json.dumps({"email": "a@x.test", "fields": {LONG: "x"}}), "errors"),
        ('{"email": "a@x.test", "' + LONG + '": 1, "' + LONG + '": 2}', "detail"),
    ],
    ids=["fields-key", "key-twice"],
)
def test_a_refusal_names_a_long_key_by_its_start(api, raw, where):
    """As an unknown key of the body is named (its first 100 characters):
    a fields key or a key sent twice came back whole, a body of 16 MB
    answered with 16 MB (and kept them for its Idempotency-Key)."""
    body = problem(api.post_raw(URL, raw), 422 if where == "errors" else 400)
    assert len(json.dumps(body[where])) < 500


@pytest.mark.parametrize("raw", [b"[]", b"false", b"0", b'""'])
def test_an_action_with_a_body_that_is_no_object_is_refused_not_taken_as_empty(api, tenant_a, raw):
    """Such a body was read as {}: the mailing paused on a body that said
    nothing an action reads, where every other POST refuses it."""
    make_server(tenant_a)
    body = {
        "name": "Offer",
        "template": str(make_template(tenant_a).public_id),
        "lists": [str(make_list(tenant_a, "L", ["ann@example.com"]).public_id)],
    }
    created = api.post("/api/v1/mailings/", body).json()
    Mailing.objects.filter(public_id=created["id"]).update(status=Mailing.Status.ACTIVE)
    assert problem(api.post_raw(f"/api/v1/mailings/{created['id']}/pause/", raw), 422)["errors"]
    assert Mailing.objects.get(public_id=created["id"]).status == Mailing.Status.ACTIVE
    # No body, or null, is still no body.
    assert api.post_raw(f"/api/v1/mailings/{created['id']}/pause/", b"null").json()["status"] == "paused"


@pytest.mark.parametrize("path", ["/api/schema/", "/api/docs/"])
@pytest.mark.parametrize(("method", "query"), [("get", {"format": "xml"}), ("post", {}), ("options", {})])
def test_the_schemas_and_the_reference_pages_refusals_are_json_as_they_say(path, method, query):
    """Their first renderer (the schema's YAML, the page's HTML) wrote
    their refusals, under Content-Type: application/problem+json; OPTIONS
    answered the schema view's docstring."""
    response = getattr(Client(), method)(path, query)
    assert response.status_code in (404, 405)
    problem(response, response.status_code)


def test_a_list_name_taken_in_another_case_by_a_racing_request_is_a_422(api, tenant_a, monkeypatch):
    checked = ContactList.full_clean

    def other_request_first(self, *args, **kwargs):
        checked(self, *args, **kwargs)
        ContactList.objects.create(tenant=self.tenant, name=self.name.lower())

    monkeypatch.setattr(ContactList, "full_clean", other_request_first)
    body = problem(api.post("/api/v1/lists/", {"name": "Clients"}), 422)
    assert body["errors"]["name"] == ["There is already a list named “Clients”."]
    assert ContactList.objects.filter(tenant=tenant_a).count() == 1
