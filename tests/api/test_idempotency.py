"""Idempotency-Key on the POSTs that create or start: the same key and
body replay the first answer and do nothing again; the same key with
another body is refused; keys are per API key; they last a day."""

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from accounts.models import ApiIdempotency
from mailing import contacts
from mailing.models import ContactList
from tests.mailing.builders import make_list, make_template
from tests.servers.factories import make_server

from .conftest import Api, make_api, problem

pytestmark = pytest.mark.django_db
URL = "/api/v1/lists/"


def test_the_same_key_and_body_replay_the_first_answer(api, tenant_a):
    first = api.post(URL, {"name": "Leads"}, HTTP_IDEMPOTENCY_KEY="abc-1")
    again = api.post(URL, {"name": "Leads"}, HTTP_IDEMPOTENCY_KEY="abc-1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again["Idempotent-Replayed"] == "true"
    assert ContactList.objects.filter(tenant=tenant_a).count() == 1
    # Without the header the same body is a new request (here: refused, the name is taken).
    assert problem(api.post(URL, {"name": "Leads"}), 422)["errors"]["name"]


def test_the_same_key_with_another_body_is_422(api, tenant_a):
    api.post(URL, {"name": "Leads"}, HTTP_IDEMPOTENCY_KEY="abc-1")
    body = problem(api.post(URL, {"name": "Other"}, HTTP_IDEMPOTENCY_KEY="abc-1"), 422)
    assert body["type"] == "urn:postroute:problem:idempotency-key-reused"
    assert list(ContactList.objects.values_list("name", flat=True)) == ["Leads"]


def test_a_refusal_is_replayed_too(api, tenant_a):
    first = api.post(URL, {"name": ""}, HTTP_IDEMPOTENCY_KEY="k")
    again = api.post(URL, {"name": ""}, HTTP_IDEMPOTENCY_KEY="k")
    assert problem(first, 422) == problem(again, 422)
    assert again["Idempotent-Replayed"] == "true"


def test_a_key_still_running_is_409(api, tenant_a):
    ApiIdempotency.objects.create(
        tenant=tenant_a,
        api_key=api.key,
        key="busy",
        fingerprint=_fingerprint(api, {"name": "Leads"}),
        expires_at=timezone.now() + timedelta(hours=1),
    )
    assert problem(api.post(URL, {"name": "Leads"}, HTTP_IDEMPOTENCY_KEY="busy"), 409)
    assert not ContactList.objects.exists()


def _fingerprint(api, body):
    """The fingerprint the first request stored, read back from a real one."""
    api.post(URL, body, HTTP_IDEMPOTENCY_KEY="probe")
    row = ApiIdempotency.objects.get(key="probe")
    ContactList.objects.all().delete()
    return row.fingerprint


def test_keys_belong_to_one_api_key(api, tenant_a):
    other = make_api(tenant_a, name="Other")
    api.post(URL, {"name": "Leads"}, HTTP_IDEMPOTENCY_KEY="same")
    body = problem(other.post(URL, {"name": "Leads"}, HTTP_IDEMPOTENCY_KEY="same"), 422)
    assert body["errors"]["name"]  # a new request for this key: the name is taken now


def test_an_expired_key_is_a_new_request(api, tenant_a):
    api.post(URL, {"name": "Leads"}, HTTP_IDEMPOTENCY_KEY="old")
    ApiIdempotency.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    ContactList.objects.all().delete()
    assert api.post(URL, {"name": "Leads"}, HTTP_IDEMPOTENCY_KEY="old").status_code == 201
    row = ApiIdempotency.objects.get(key="old")
    assert timedelta(hours=23) < row.expires_at - timezone.now() <= timedelta(hours=24)


@pytest.mark.parametrize("value", ["x" * 256, "tab\there"])
def test_a_malformed_key_is_400(api, value):
    assert problem(api.post(URL, {"name": "Leads"}, HTTP_IDEMPOTENCY_KEY=value), 400)
    assert not ContactList.objects.exists()


def as_a_server_gives_it(text: str) -> str:
    """A header as a WSGI server puts it in the environ: its UTF-8 bytes
    read as latin-1 (PEP 3333)."""
    return text.encode().decode("latin-1")


@pytest.mark.parametrize("key", ["ключ-1", "đơn-hàng-42", "注文-7", "ж" * 255])
def test_a_key_in_any_language_is_a_key_of_as_many_characters(api, tenant_a, key):
    """The README promises any string up to 255 characters; the header's
    UTF-8 was read as latin-1, so a Cyrillic or Vietnamese key (bytes that
    read as control characters) was refused as not printable, and a key of
    255 letters counted twice its length."""
    first = api.post(URL, {"name": "Leads"}, HTTP_IDEMPOTENCY_KEY=as_a_server_gives_it(key))
    again = api.post(URL, {"name": "Leads"}, HTTP_IDEMPOTENCY_KEY=as_a_server_gives_it(key))
    assert first.status_code == again.status_code == 201, first.content
    assert again["Idempotent-Replayed"] == "true"
    assert ApiIdempotency.objects.get().key == key
    problem(api.post(URL, {"name": "Leads"}, HTTP_IDEMPOTENCY_KEY=as_a_server_gives_it(key + "ж" * 256)), 400)


def test_a_claim_whose_request_died_is_taken_over(api, tenant_a):
    ApiIdempotency.objects.create(
        tenant=tenant_a,
        api_key=api.key,
        key="dead",
        fingerprint=_fingerprint(api, {"name": "Leads"}),
        created_at=timezone.now() - timedelta(minutes=11),
        expires_at=timezone.now() + timedelta(hours=1),
    )
    response = api.post(URL, {"name": "Leads"}, HTTP_IDEMPOTENCY_KEY="dead")
    assert response.status_code == 201
    assert ApiIdempotency.objects.get(key="dead").status == 201


@pytest.mark.django_db(transaction=True)
def test_two_copies_racing_on_postgresql_do_the_work_once(tenant_a, alice, monkeypatch):
    """Two threads, two connections, the same key at once: one creates the
    list, the other is told the first still runs; then a retry replays."""
    create = contacts.list_create

    def slow_create(**kwargs):
        time.sleep(0.3)  # the second copy arrives while the first works
        return create(**kwargs)

    monkeypatch.setattr(contacts, "list_create", slow_create)
    api = make_api(tenant_a, by=alice.user)
    start, answers = threading.Barrier(2), []

    def send():
        try:
            start.wait()
            copy = Api(api.key, api.secret, Client())  # a client, and a connection, of its own
            answers.append(copy.post(URL, {"name": "Leads"}, HTTP_IDEMPOTENCY_KEY="race"))
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(a.status_code for a in answers) == [201, 409]
    assert ContactList.objects.filter(tenant=tenant_a).count() == 1
    replay = api.post(URL, {"name": "Leads"}, HTTP_IDEMPOTENCY_KEY="race")
    assert replay.status_code == 201 and replay["Idempotent-Replayed"] == "true"


def test_a_retry_naming_the_object_in_capitals_is_the_same_request(api, tenant_a):
    """Paths take ids in either case; the key's fingerprint took the path as
    written, so a retry that wrote the id otherwise was "reused for a
    different request"."""
    make_server(tenant_a)
    customers, template = make_list(tenant_a, "L", ["a@x.test"]), make_template(tenant_a)
    body = {"name": "m", "template": str(template.public_id), "lists": [str(customers.public_id)]}
    mailing = api.post("/api/v1/mailings/", body).json()["id"]
    at = {"scheduled_at": "2030-01-01T10:00Z"}
    first = api.post(f"/api/v1/mailings/{mailing}/schedule/", at, HTTP_IDEMPOTENCY_KEY="plan")
    again = api.post(f"/api/v1/mailings/{mailing.upper()}/schedule/", at, HTTP_IDEMPOTENCY_KEY="plan")
    assert first.status_code == again.status_code == 200, again.content
    assert again["Idempotent-Replayed"] == "true"
