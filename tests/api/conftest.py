"""API tests talk HTTP with real keys, made by the same service as the
page: a client per key that sends `Authorization: Bearer <key>`."""

import json
from dataclasses import dataclass

import pytest
from django.test import Client

from accounts import api_keys
from accounts.models import ApiKey, ApiScope, Tenant

ALL_SCOPES = list(ApiScope.values)


@dataclass
class Api:
    key: ApiKey
    secret: str
    client: Client

    def _headers(self, headers: dict | None) -> dict:
        return {"HTTP_AUTHORIZATION": f"Bearer {self.secret}", **(headers or {})}

    def get(self, path: str, params: dict | None = None, **headers):
        return self.client.get(path, params or {}, **self._headers(headers))

    def post(self, path: str, body: object = None, **headers):
        data = json.dumps(body if body is not None else {})
        return self.client.post(path, data, content_type="application/json", **self._headers(headers))

    def post_raw(self, path: str, data: bytes | str, content_type: str = "application/json", **headers):
        return self.client.post(path, data, content_type=content_type, **self._headers(headers))

    def delete(self, path: str, **headers):
        return self.client.delete(path, **self._headers(headers))


def make_api(tenant: Tenant, scopes: list[str] | None = None, name: str = "CRM", by=None) -> Api:
    key, secret = api_keys.api_key_create(tenant=tenant, by=by, name=name, scopes=scopes or ALL_SCOPES)
    return Api(key, secret, Client())


@pytest.fixture
def api(tenant_a, alice) -> Api:
    """Tenant A's key with every scope."""
    return make_api(tenant_a, by=alice.user)


@pytest.fixture
def api_b(tenant_b, charlie) -> Api:
    """Tenant B's key with every scope: the outsider."""
    return make_api(tenant_b, by=charlie.user)


def problem(response, status: int) -> dict:
    """The problem details of a refused request, checked for their shape."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert body["type"].startswith("urn:postroute:problem:")
    assert body["title"] and "detail" in body and body["instance"].startswith("/api/")
    return body
