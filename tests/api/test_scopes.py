"""Every method of every API route, from the resolver (a new route is
checked without anyone adding it), with a key that has every scope but the
one the method needs: refused with 403 (scope) before anything is read or
changed, the answer naming the scope; and each method needs some scope."""

import pytest

from accounts.models import ApiScope
from mailing.models import ContactList, Mailing, Suppression
from tests.security.walk import api_routes, concrete_urls, tenant_a_objects

from .conftest import make_api, problem

pytestmark = pytest.mark.django_db
METHODS = ("GET", "POST", "DELETE")


def send(api, method: str, url: str):
    if method == "GET":
        return api.get(url)
    if method == "DELETE":
        return api.delete(url)
    return api.post(url, {"name": "x", "email": "a@x.test"})


def state(tenant) -> tuple:
    return (
        ContactList.objects.filter(tenant=tenant).count(),
        Suppression.objects.filter(tenant=tenant).count(),
        list(Mailing.objects.filter(tenant=tenant).order_by("pk").values_list("status", flat=True)),
    )


def test_every_method_needs_its_scope_and_a_key_without_it_changes_nothing(alice, tenant_a, tmp_path, settings):
    settings.API_RATE_LIMIT = settings.API_TENANT_RATE_LIMIT = 100_000
    ids = tenant_a_objects(tenant_a, alice, tmp_path)
    before, checked = state(tenant_a), 0
    keys = {scope: make_api(tenant_a, [s for s in ApiScope.values if s != scope], name=scope) for scope in ApiScope}
    for route, pattern in api_routes():
        scopes = pattern.callback.view_class.scopes
        assert scopes and set(scopes) <= set(METHODS) and set(scopes.values()) <= set(ApiScope.values), route
        for method, needed in scopes.items():
            for url in concrete_urls(route, ids)[:3]:
                body = problem(send(keys[needed], method, url), 403)
                assert body["type"] == "urn:postroute:problem:scope" and f"“{needed}”" in body["detail"], url
                checked += 1
    assert state(tenant_a) == before
    assert checked > 30
