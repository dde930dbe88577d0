"""Who may call: a key of the tenant, active, of an active organisation,
with the scope the request needs; its use noted at most once a minute;
its requests limited per minute, with Retry-After."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from accounts import api_keys
from accounts.models import ApiKey, Tenant

from .conftest import make_api, problem

pytestmark = pytest.mark.django_db
URL = "/api/v1/contacts/"


def test_no_key_or_a_malformed_header_is_401_with_the_scheme():
    body = problem(Client().get(URL), 401)
    assert body["type"] == "urn:postroute:problem:unauthenticated"
    response = Client().get(URL, HTTP_AUTHORIZATION="Bearer")
    assert problem(response, 401) and response["WWW-Authenticate"].startswith("Bearer")
    problem(Client().get(URL, HTTP_AUTHORIZATION="Basic YTpi"), 401)


def test_an_unknown_or_revoked_key_is_401(api):
    problem(Client().get(URL, HTTP_AUTHORIZATION="Bearer pr_" + "x" * 43), 401)
    assert api.get(URL).status_code == 200
    api_keys.api_key_revoke(api_key=api.key)
    problem(api.get(URL), 401)


def test_a_suspended_organisations_key_is_refused(api, tenant_a):
    Tenant.objects.filter(pk=tenant_a.pk).update(status=Tenant.Status.SUSPENDED)
    assert problem(api.get(URL), 403)["type"] == "urn:postroute:problem:suspended"


def test_each_request_needs_its_scope(tenant_a):
    reader = make_api(tenant_a, ["read"])
    assert reader.get(URL).status_code == 200
    body = problem(reader.post(URL, {"email": "a@example.com"}), 403)
    assert body["type"] == "urn:postroute:problem:scope" and "contacts" in body["detail"]
    problem(reader.get("/api/v1/servers/"), 403)
    writer = make_api(tenant_a, ["contacts"])
    problem(writer.get(URL), 403)
    assert writer.post(URL, {"email": "a@example.com"}).status_code == 201


def test_the_last_use_is_written_at_most_once_a_minute(api, django_assert_num_queries):
    assert api.key.last_used_at is None
    api.get(URL)
    first = ApiKey.objects.get(pk=api.key.pk).last_used_at
    assert first is not None
    api.get(URL)
    assert ApiKey.objects.get(pk=api.key.pk).last_used_at == first
    ApiKey.objects.filter(pk=api.key.pk).update(last_used_at=first - timedelta(minutes=2))
    api.get(URL)
    assert ApiKey.objects.get(pk=api.key.pk).last_used_at > first


def test_a_key_past_its_rate_limit_gets_429_with_retry_after(api, tenant_a, settings):
    settings.API_RATE_LIMIT = 3
    for _ in range(3):
        assert api.get(URL).status_code == 200
    response = api.get(URL)
    body = problem(response, 429)
    assert body["type"] == "urn:postroute:problem:rate-limited"
    assert 1 <= int(response["Retry-After"]) <= 60
    # Per key: another key of the same organisation still passes.
    assert make_api(tenant_a, name="Other").get(URL).status_code == 200


def test_the_secret_is_stored_only_as_a_hash(tenant_a):
    key, secret = api_keys.api_key_create(tenant=tenant_a, by=None, name="CRM", scopes=["read"])
    row = ApiKey.objects.filter(pk=key.pk).values().get()
    assert secret not in str(row) and secret.startswith(row["prefix"]) and len(row["prefix"]) == 11
    assert api_keys.api_key_for_secret(secret) == key
    assert timezone.now() - key.created_at < timedelta(minutes=1)


def test_a_signed_in_session_is_no_key(alice, tenant_a):
    """So a cross-site POST riding on the browser's cookie gets nowhere,
    and the API needs no CSRF token."""
    assert problem(alice.client.get(URL), 401)
    assert problem(alice.client.post(URL, {"email": "a@example.com"}, content_type="application/json"), 401)


def test_an_organisations_keys_share_its_limit_and_other_organisations_keep_theirs(api, api_b, tenant_a, settings):
    """The limit was per key only: an organisation with 50 keys had 50
    times the capacity, and its flood was everyone's. Its keys now share
    API_TENANT_RATE_LIMIT as well; another organisation is not touched."""
    settings.API_RATE_LIMIT, settings.API_TENANT_RATE_LIMIT = 3, 4
    keys = [api, make_api(tenant_a, name="Second"), make_api(tenant_a, name="Third")]
    answers = [key.get(URL) for key in keys for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200, 200, 200, 429, 429]
    body = problem(answers[-1], 429)
    assert body["type"] == "urn:postroute:problem:rate-limited" and 1 <= int(answers[-1]["Retry-After"]) <= 60
    assert api_b.get(URL).status_code == 200
