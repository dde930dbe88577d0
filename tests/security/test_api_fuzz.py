"""No 500 from the API: every API route from the resolver (a new one is
fuzzed without anyone adding it), with a key that has every scope, filled
with tenant A's real objects, gets hostile bodies and query parameters;
every answer is below 500, and every refusal is a problem document."""

import json
from urllib.parse import quote_from_bytes

import pytest

from tests.api.conftest import make_api

from .walk import api_routes, concrete_urls, tenant_a_objects

pytestmark = pytest.mark.django_db
TEXTS = ["", "\x00", "\ud800", "x" * 10_000, "٣", "-1", "1e309", "9" * 5000, "00000000-0000-0000-0000-000000000000"]
BODIES = [
    None, [], "x", 1, 1.5, True, {"": ""}, [[[[[]]]]],
    *(dict.fromkeys(("email", "name", "template", "list", "note", "first_name"), text) for text in TEXTS),
    {"email": "a@x.test", "fields": {"a": {"b": 1}}, "lists": ["nope", 5]},
    {"list": "nope", "contacts": [None, 5, "x", {"email": 5}, {"fields": []}]},
    {"template": 5, "lists": "x", "servers": {"a": 1}, "confirm_rejected": "maybe"},
    {"name": "x", "template": "00000000-0000-0000-0000-000000000000", "lists": [], "servers": []},
]  # fmt: skip
PARAMS = ["cursor", "limit", "list", "status", "reason"]


def test_no_api_route_answers_500_to_hostile_input(alice, tenant_a, tmp_path, settings):
    settings.API_RATE_LIMIT = settings.API_TENANT_RATE_LIMIT = 100_000
    ids = tenant_a_objects(tenant_a, alice, tmp_path)
    api = make_api(tenant_a, by=alice.user)
    requests = 0
    fuzzed = []
    for route, pattern in api_routes():
        # The parameters the view reads (any other is refused before them).
        names = getattr(pattern.callback.view_class, "query", ()) or PARAMS
        for url in of_its_kind(api, concrete_urls(route, ids)):
            fuzzed.append(url)
            for text in TEXTS:
                for response in (
                    api.get(f"{url}?{query(text, names)}"),
                    api.post_raw(url, json.dumps(text)),
                ):
                    requests += 1
                    check(response, url)
            for body in BODIES:
                check(api.post_raw(url, json.dumps(body)), url)
                requests += 1
            check(api.post_raw(url, b"\xff{" + b"[" * 5000), url)
            requests += 1
    for url in fuzzed:  # last: a deleted object would be 404 to the routes after
        check(api.delete(url), url)
        requests += 1
    assert requests > 800
    print(f"API fuzz: {requests} requests, no 500")


def of_its_kind(api, urls: list[str]) -> list[str]:
    """The URLs of tenant A's objects the route is about: the objects of
    other models are 404 before the view reads anything. A route that
    looks nothing up on GET (an action) is asked with an empty POST."""
    if len(urls) == 1:
        return urls
    found = [url for url in urls if api.get(url).status_code != 404]
    if len(found) == len(urls):
        found = [url for url in urls if api.post_raw(url, b"{}").status_code != 404]
    assert found and len(found) < len(urls), urls
    return found


def query(text: str, names) -> str:
    """Every parameter set to `text`, its bytes percent-encoded as a client
    would send them (half a surrogate pair included)."""
    value = quote_from_bytes(text.encode("utf-8", "surrogatepass"))
    return "&".join(f"{name}={value}" for name in names)


def check(response, url: str) -> None:
    assert response.status_code < 500, (url, response.status_code, response.content[:300])
    if response.status_code >= 400:
        assert response["Content-Type"] == "application/problem+json", (url, response.status_code)
