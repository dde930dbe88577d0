"""Every answer the API gives is the one its published schema promises: a
request to each operation, through the Django test client with real
objects behind it (a waiting mailing, a bounce, a server with limits), and
each body, the refusals' too, validated against the schema served at
/api/schema/. A client generated from the schema must be able to read
every answer: a null where the schema says a string, a field it does not
name, or a status it does not list would break one. And every body the
API took is one the schema allows (a client that checks what it sends)."""

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from jsonschema import Draft202012Validator, FormatChecker

from accounts.models import ApiScope
from mailing import contacts, mailings
from mailing.models import CustomField, Letter, Mailing
from mailing.unsubscribe import make_token
from tests.mailing.builders import make_list, make_template
from tests.servers.factories import make_server

from .conftest import make_api
from .test_feeds import report, started

pytestmark = pytest.mark.django_db
ZERO = "00000000-0000-0000-0000-000000000000"


def json_schema(node: object) -> object:
    """OpenAPI 3.0's schema dialect as JSON Schema: `nullable` becomes a
    null alternative, and an object with named properties is closed, so
    that an answer's field the schema does not name fails too."""
    if isinstance(node, list):
        return [json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key in ("nullable", "readOnly", "writeOnly", "description", "example"):
            continue
        if key == "properties":
            out[key] = {name: json_schema(sub) for name, sub in value.items()}
        else:
            out[key] = json_schema(value)
    if out.get("type") == "object" and "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    if node.get("nullable"):
        return {"anyOf": [out, {"type": "null"}]}
    return out


class Schema:
    def __init__(self) -> None:
        response = Client().get("/api/schema/", {"format": "json"})
        assert response.status_code == 200
        self.doc = response.json()
        self.components = json_schema(self.doc["components"])
        self.paths = [
            (re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)) + "$"), path)
            for path in self.doc["paths"]
        ]
        self.seen: set[tuple[str, str]] = set()

    def operation(self, method: str, url: str) -> tuple[str, dict]:
        path = url.split("?")[0]
        matches = [template for pattern, template in self.paths if pattern.match(path)]
        # The most specific template first: contacts/bulk/ before contacts/{public_id}/.
        template = min(matches, key=lambda t: t.count("{"))
        operation = self.doc["paths"][template].get(method.lower())
        assert operation is not None, f"{method} {template} is not in the schema"
        return template, operation

    def check_request(self, method: str, url: str, body: object) -> None:
        """A body the API took must be one the schema allows: a client
        whose generated code checks what it sends could not send it."""
        _template, operation = self.operation(method, url)
        request = operation.get("requestBody", {}).get("content", {}).get("application/json")
        assert request is not None, f"{method} {url}: took a body the schema does not describe"
        validator = Draft202012Validator(
            {"components": self.components, **json_schema(request["schema"])}, format_checker=FormatChecker()
        )
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(body)]
        assert not errors, f"{method} {url} (request): {errors[:5]}"

    def check(self, method: str, url: str, response) -> None:
        template, operation = self.operation(method, url)
        self.seen.add((method, template))
        code = str(response.status_code)
        responses = operation["responses"]
        documented = responses.get(code) or responses.get(f"{code[0]}XX")
        where = f"{method} {url} -> {code}"
        assert documented is not None, f"{where}: the schema lists only {sorted(responses)}"
        content = documented.get("content")
        if not content:
            assert not response.content, f"{where}: a body the schema does not describe"
            return
        media = response["Content-Type"].split(";")[0]
        assert media in content, f"{where}: {media}, the schema says {sorted(content)}"
        validator = Draft202012Validator(
            {"components": self.components, **json_schema(content[media]["schema"])}, format_checker=FormatChecker()
        )
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(response.json())]
        assert not errors, f"{where}: {errors[:5]}"


@pytest.fixture
def world(tenant_a, alice):
    """One of each thing an answer describes, filled in."""
    CustomField.objects.create(tenant=tenant_a, key="city", label="City")
    customers = make_list(tenant_a, "Customers", ["ann@example.com"])
    contact = customers.contacts.get()
    contact.fields = {"city": "Hà Nội"}
    contact.save()
    template = make_template(tenant_a)
    server = make_server(tenant_a, name="Yandex", max_per_hour=10)
    mailing = started(tenant_a, ["a@example.com", "b@example.com"])
    report(Letter.objects.filter(mailing=mailing).first(), 1)
    Mailing.objects.filter(pk=mailing.pk).update(
        status=Mailing.Status.WAITING,
        resume_at=timezone.now() + timedelta(minutes=5),
        wait_reason=Mailing.WaitReason.LIMITS,
    )
    contacts.unsubscribe(token=make_token(tenant_a.pk, "gone@example.com"))
    draft = Mailing(tenant=tenant_a, name="Draft", template=template)
    mailings.mailing_save(mailing=draft, lists=[customers], servers=[server])
    return {"list": customers, "contact": contact, "template": template, "server": server, "draft": draft}


def test_every_answer_matches_the_published_schema(world, tenant_a, alice, settings):
    schema = Schema()
    api = make_api(tenant_a, by=alice.user)
    reader = make_api(tenant_a, scopes=[ApiScope.READ], by=alice.user, name="reader")
    customers, contact, template, server, draft = (world[k] for k in ("list", "contact", "template", "server", "draft"))
    new_mailing = {"name": "Offer", "template": str(template.public_id), "lists": [str(customers.public_id)]}

    def call(method: str, url: str, body: object = None, client=api, **headers):
        if method == "GET":
            response = client.get(url, **headers)
        elif method == "DELETE":
            response = client.delete(url, **headers)
        else:
            response = client.post(url, body, **headers)
            if response.status_code < 300 and body is not None:
                schema.check_request(method, url, body)
        schema.check(method, url, response)
        return response

    for url in ("contacts/", "lists/", "suppressions/", "templates/", "mailings/", "bounces/", "unsubscribes/"):
        assert call("GET", f"/api/v1/{url}?limit=1").status_code == 200
    call("GET", "/api/v1/servers/")
    call("GET", f"/api/v1/servers/{server.public_id}/")
    call("GET", f"/api/v1/contacts/{contact.public_id}/")
    call("GET", f"/api/v1/lists/{customers.public_id}/")
    call("GET", f"/api/v1/templates/{template.public_id}/")
    call("GET", f"/api/v1/mailings/{draft.public_id}/")
    created = call("POST", "/api/v1/mailings/", new_mailing).json()
    assert call("POST", f"/api/v1/mailings/{created['id']}/pause/").status_code == 409
    at = (timezone.now() + timedelta(days=1)).isoformat()
    assert call("POST", f"/api/v1/mailings/{created['id']}/schedule/", {"scheduled_at": at}).status_code == 200
    call("POST", f"/api/v1/mailings/{created['id']}/unschedule/")
    assert call("POST", "/api/v1/contacts/", {"email": "bob@example.com", "lists": [str(customers.public_id)]})
    call("POST", "/api/v1/contacts/", {"email": "bob@example.com"})  # taken: 422
    bulk = {"list": str(customers.public_id), "contacts": [{"email": "cat@example.com"}, {"email": "nope"}]}
    assert call("POST", "/api/v1/contacts/bulk/", bulk).json()["rejected"] == 1
    # What a CSV import takes, the schema allows: blank names and values.
    blanks = {"email": "dan@example.com", "first_name": "", "last_name": "", "fields": {"city": ""}}
    assert (
        call("POST", "/api/v1/contacts/bulk/", {"list": str(customers.public_id), "contacts": [blanks]}).json()[
            "created"
        ]
        == 1
    )
    at_once = {"confirm_rejected": False, "scheduled_at": (timezone.now() + timedelta(days=2)).isoformat()}
    scheduled = call("POST", f"/api/v1/mailings/{created['id']}/schedule/", at_once, HTTP_IDEMPOTENCY_KEY="plan-1")
    assert scheduled.status_code == 200
    call("POST", f"/api/v1/mailings/{created['id']}/unschedule/", {})
    new_list = call("POST", "/api/v1/lists/", {"name": "Partners"}).json()
    call("DELETE", f"/api/v1/lists/{new_list['id']}/")
    assert call("POST", "/api/v1/suppressions/", {"email": "x@example.com"}).status_code == 201
    assert call("POST", "/api/v1/suppressions/", {"email": "x@example.com"}).status_code == 200
    call("DELETE", "/api/v1/suppressions/x@example.com/")
    call("DELETE", "/api/v1/suppressions/x@example.com/")  # 404
    call("DELETE", f"/api/v1/contacts/{contact.public_id}/")
    # Refusals: problem documents, whatever refuses.
    call("GET", "/api/v1/contacts/", client=Client())  # 401
    call("POST", "/api/v1/lists/", {"name": "x"}, client=reader)  # 403 scope
    call("GET", f"/api/v1/mailings/{ZERO}/")  # 404
    call("GET", "/api/v1/contacts/?cursor=nope")  # 422
    schema.check("POST", "/api/v1/contacts/", api.post_raw("/api/v1/contacts/", b"{"))  # 400
    schema.check("POST", "/api/v1/contacts/", api.post_raw("/api/v1/contacts/", "a=b", "text/plain"))  # 415
    settings.API_RATE_LIMIT = 0
    assert call("GET", "/api/v1/templates/").status_code == 429
    documented = {
        (method.upper(), path) for path, ops in schema.doc["paths"].items() for method in ops if method != "parameters"
    }
    assert documented <= schema.seen, f"operations this test did not call: {documented - schema.seen}"
