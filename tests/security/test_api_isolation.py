"""The isolation walk of the API: every API route from the resolver (a
new one is walked without anyone adding it), filled with tenant A's real
objects, asked with every method by

- tenant B's key with every scope: 404 on each of A's objects (405 where
  the route has no such method), and no body shows A's data;
- no key, and A's own key once revoked: 401, every time;
- A's key without the scope the method needs: 403;

and A's rows are the same afterwards. A's own key, for contrast, reads
A's data on the collection routes, so the leak check looks at real bodies."""

from collections import Counter

import pytest
from django.test import Client

from accounts import api_keys
from accounts.models import ApiScope
from mailing.api.views.base import ApiView
from mailing.models import BounceReport, Letter, Mailing, Suppression
from tests.api.conftest import make_api

from .walk import SECRETS, SUPPRESSED, api_routes, body, concrete_urls, shows_secrets, tenant_a_objects, tenant_state

pytestmark = pytest.mark.django_db
METHODS = ("get", "post", "put", "patch", "delete")
STATS: Counter = Counter()


def _feed_data(tenant_a) -> None:
    """What the bounce and unsubscribe feeds show of A."""
    mailing = Mailing.objects.get(tenant=tenant_a, name="A's mailing")
    letter = Letter.objects.create(tenant=tenant_a, mailing=mailing, email="a@x.test", status="bounced")
    BounceReport.objects.create(
        tenant=tenant_a, letter=letter, source_key="imap:INBOX:1:9", kind="hard", matched_by="header"
    )
    Suppression.objects.create(tenant=tenant_a, email="unsubscribed-a@x.test", reason="unsubscribed")


def data_of(tenant) -> dict:
    """A's rows but its keys', whose last use the walk itself moves."""
    state = tenant_state(tenant)
    state.pop("accounts.ApiKey")
    return state


def leaks(response, url: str) -> bool:
    """A's data in the answer, other than the request's own path echoed
    back (a problem's `instance`)."""
    content = body(response).replace(url.encode(), b"")
    return any(s in content for s in SECRETS)


def _call(api_or_client, method: str, url: str, secret: str | None = None):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {secret}"} if secret else {}
    client = api_or_client
    if method in ("get", "delete"):
        return getattr(client, method)(url, **headers)
    return getattr(client, method)(url, "{}", content_type="application/json", **headers)


def test_every_api_route_refuses_outsiders_visitors_revoked_keys_and_wrong_scopes(
    alice, charlie, tenant_a, tenant_b, tmp_path, settings
):
    settings.API_RATE_LIMIT = settings.API_TENANT_RATE_LIMIT = 100_000
    ids = tenant_a_objects(tenant_a, alice, tmp_path)
    _feed_data(tenant_a)
    outsider = make_api(tenant_b, by=charlie.user)
    revoked = make_api(tenant_a, name="Revoked")
    api_keys.api_key_revoke(api_key=revoked.key)
    lacking = {scope: make_api(tenant_a, [s for s in ApiScope.values if s != scope], name=scope) for scope in ApiScope}
    owner = make_api(tenant_a, name="Owner")
    before = data_of(tenant_a)
    anonymous = Client()
    routes = api_routes()
    assert len(routes) >= 15
    shown: dict[str, bool] = {}
    requests = 0
    for route, pattern in routes:
        view = pattern.callback.cls
        assert issubclass(view, ApiView), f"/{route} is not an ApiView: no key, no scope, no rate limit"
        urls = concrete_urls(route, ids)
        assert urls and all("<" not in u for u in urls), f"/{route}: a parameter the walk cannot fill"
        for url in urls:
            own_object = any(str(i) in url for i in ids) or SUPPRESSED in url
            for method in METHODS:
                declared = method.upper() in view.scopes
                response = _call(outsider.client, method, url, outsider.secret)
                requests += 1
                assert not leaks(response, url), f"{method.upper()} {url} shows A's data to B's key"
                if own_object or not declared:
                    assert response.status_code in (404, 405), (method, url, response.status_code)
                for caller, secret in ((anonymous, None), (revoked.client, revoked.secret)):
                    response = _call(caller, method, url, secret)
                    requests += 1
                    assert response.status_code == 401, (method, url, secret, response.status_code)
                    assert not leaks(response, url)
                if declared:
                    needed = view.scopes[method.upper()]
                    response = _call(lacking[needed].client, method, url, lacking[needed].secret)
                    requests += 1
                    assert response.status_code == 403, (method, url, needed, response.status_code)
                    assert not leaks(response, url)
        if "<" not in route and "GET" in view.scopes:
            shown[route] = shows_secrets(_call(owner.client, "get", "/" + route, owner.secret))
    assert data_of(tenant_a) == before  # nothing of A moved
    # A's own key reads A's data where the walk looked for it.
    assert sum(shown.values()) >= 6, shown
    STATS.update(requests=requests, routes=len(routes))
    print(f"API isolation: {requests} requests across {len(routes)} API routes, 0 leaks")
