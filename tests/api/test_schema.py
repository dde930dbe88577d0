"""The OpenAPI 3 schema at /api/schema/ describes every API route, with
the bearer key as its security, and is valid; the reference page at
/api/docs/ has nothing inline for the CSP to refuse (the browser test
renders it: tests/browser/test_api_browser.py)."""

import re

import pytest
from django.test import Client
from drf_spectacular.validation import validate_schema

from tests.security.walk import api_routes

pytestmark = pytest.mark.django_db


def test_the_schema_is_valid_openapi_and_covers_every_route():
    response = Client().get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    schema = response.json()
    validate_schema(schema)
    assert schema["openapi"].startswith("3.")
    assert schema["components"]["securitySchemes"]["apiKey"] == {
        **schema["components"]["securitySchemes"]["apiKey"],
        "type": "http",
        "scheme": "bearer",
    }
    documented = {re.sub(r"\{[^}]+\}", "{}", path) for path in schema["paths"]}
    routes = {"/" + re.sub(r"<[^>]+>", "{}", route) for route, _ in api_routes()}
    assert routes == documented
    bulk = schema["paths"]["/api/v1/contacts/bulk/"]["post"]
    assert bulk["security"] == [{"apiKey": []}]


@pytest.mark.parametrize("version", ["a\r\nSet-Cookie: x=1", "2"], ids=["line break", "another version"])
def test_the_schema_is_version_1_whatever_the_query_asks(version):
    """?version= went into the schema and, as given, into the answer's
    Content-Disposition header: a line break in it was a 500 (Django
    refuses the header), any other value a schema that said so."""
    response = Client().get("/api/schema/", {"format": "json", "version": version})
    assert response.status_code == 200
    assert response.json()["info"]["version"] == "1"
    assert response["Content-Disposition"] == 'inline; filename="Postroute API.json"'  # as without it


def test_the_reference_page_has_nothing_inline():
    response = Client().get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "<style" not in html and " style=" not in html
    assert all(src for src in re.findall(r"<script([^>]*)>", html)), "an inline script"
    assert all('src="/' in tag for tag in re.findall(r"<script[^>]*>", html))
    assert "script-src 'self'" in response["Content-Security-Policy"]
    script = Client().get("/api/docs/", {"script": ""})
    assert script.status_code == 200 and script["Content-Type"].startswith("application/javascript")
    assert "/api/schema/" in script.content.decode()


def test_the_schema_says_what_a_request_may_send():
    """What the README said and the schema did not: a client generated from
    the schema could not send an Idempotency-Key, nor knew the bounds of
    `limit` or that `list` is an id."""
    schema = Client().get("/api/schema/", {"format": "json"}).json()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            parameters = {p["name"]: p for p in operation.get("parameters", [])}
            if method == "post":
                header = parameters.get("Idempotency-Key", {})
                assert header.get("in") == "header" and header["schema"]["maxLength"] == 255, path
            if "limit" in parameters:
                assert parameters["limit"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 1000}, path
            if "list" in parameters:
                assert parameters["list"]["schema"] == {"type": "string", "format": "uuid"}, path


def test_the_query_parameters_a_view_takes_are_the_ones_the_schema_names():
    """A view refuses any query parameter it does not read (its `query`):
    the schema must name the same ones, or a generated client is refused."""
    schema = Client().get("/api/schema/", {"format": "json"}).json()
    checked = 0
    for route, pattern in api_routes():
        operation = schema["paths"].get("/" + re.sub(r"<\w+:(\w+)>", r"{\1}", route), {}).get("get")
        if operation is None:
            continue
        named = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
        assert named == set(pattern.callback.view_class.query), route
        checked += 1
    assert checked >= 10
