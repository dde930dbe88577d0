"""Every refusal is written in the request's language, all of it: the
title, the detail and each field's messages. Each bad request is sent in
English and again in Russian and Vietnamese; a run of three words that the
English answer has too (a message of DRF's or Python's json left in
English, whole or inside a translated sentence) fails."""

import json
import re

import pytest
from django.test import Client
from django.utils import translation
from django.utils.functional import Promise
from rest_framework import serializers

from accounts.models import ApiScope
from mailing.api.serializers import (
    BulkContactSerializer,
    BulkUpsertSerializer,
    ContactListSerializer,
    ContactSerializer,
    MailingActionSerializer,
    MailingSerializer,
    SuppressionSerializer,
)
from mailing.models import Mailing
from tests.mailing.builders import make_list, make_template

from .conftest import make_api

pytestmark = pytest.mark.django_db
ZERO = "00000000-0000-0000-0000-000000000000"
INPUTS = [
    ContactSerializer,
    BulkUpsertSerializer,
    BulkContactSerializer,
    ContactListSerializer,
    SuppressionSerializer,
    MailingSerializer,
    MailingActionSerializer,
]
MAILING = {"name": "m", "template": ZERO, "lists": [ZERO]}


# Names every language keeps as they are: formats, and the values a field takes.
TERMS = {"json", "utf", "nan", *Mailing.Status.values}


def _words(text: str) -> list[str]:
    """The text's words, without what is quoted or code (a header, the
    formats a time is written in), the same in every language."""
    prose = re.sub(r"“[^”]*”|«[^»]*»|\"[^\"]*\"|\S*[/|\[\]]\S*", " ", text)
    return [word for word in re.findall(r"[^\W\d_]+", prose.lower()) if word not in TERMS]


def _english_left(answer: str, english: str) -> set[str]:
    def runs(text: str) -> set[str]:
        words = _words(text)
        return {" ".join(words[i : i + 3]) for i in range(len(words) - 2)}

    return runs(answer) & runs(english)


def _texts(body: dict) -> list[str]:
    errors = body.get("errors", {})
    return [body["title"], body["detail"], *(" ".join(messages) for messages in errors.values())]


def _bad_requests(api, reader, customers) -> dict:
    """name -> a callable sending one bad request with extra headers."""
    json_body = "application/json"

    def post(path: str, body: object, **extra):
        return lambda **h: api.post(path, body, **extra, **h)

    def raw(path: str, data: bytes | str, content_type: str = json_body):
        return lambda **h: api.post_raw(path, data, content_type, **h)

    listed = str(customers.public_id)
    return {
        "no-key": lambda **h: Client().get("/api/v1/contacts/", **h),
        "bad-key": lambda **h: Client().get("/api/v1/contacts/", HTTP_AUTHORIZATION="Bearer pr_nope", **h),
        "scope": lambda **h: reader.post("/api/v1/lists/", {"name": "x"}, **h),
        "unknown-path": lambda **h: api.get("/api/v1/nothing/", **h),
        "unknown-id": lambda **h: api.get(f"/api/v1/mailings/{ZERO}/", **h),
        "unknown-action": lambda **h: api.post(f"/api/v1/mailings/{ZERO}/explode/", **h),
        "method": lambda **h: api.delete("/api/v1/contacts/", **h),
        "media-type": raw("/api/v1/contacts/", "email=a", "text/plain"),
        "cut-json": raw("/api/v1/contacts/", b'{"email": "a@x.test",'),
        "trailing-comma": raw("/api/v1/contacts/", b'{"email": "a@x.test",}'),
        "not-utf8": raw("/api/v1/contacts/", '{"email": "ё@x.test"}'.encode("cp1251")),
        "deep": raw("/api/v1/contacts/", b"[" * 100_000 + b"]" * 100_000),
        "huge-integer": raw("/api/v1/contacts/", b'{"email": 1' + b"0" * 5000 + b"}"),
        "nan": raw("/api/v1/contacts/", b'{"email": NaN}'),
        "twice": raw("/api/v1/contacts/", b'{"email": "a@x.test", "email": "b@x.test"}'),
        "contact-types": post(
            "/api/v1/contacts/",
            {"email": None, "first_name": "\ud800", "last_name": "a\x00b", "fields": [], "lists": "x"},
        ),
        "contact-lengths": post(
            "/api/v1/contacts/", {"email": "a" * 300, "first_name": 5 * "x" * 100, "lists": [ZERO] * 101}
        ),
        "contact-blank": post("/api/v1/contacts/", {"email": "", "lists": ["nope"], "fields": {"a": ["x"]}}),
        "not-an-object": post("/api/v1/contacts/", ["a@x.test"]),
        "bulk": post("/api/v1/contacts/bulk/", {"list": "x", "contacts": "y"}),
        "bulk-empty": post("/api/v1/contacts/bulk/", {"list": listed, "contacts": []}),
        "list": post("/api/v1/lists/", {"name": {"a": 1}}),
        "suppression": post("/api/v1/suppressions/", {"email": True, "note": "x" * 400}),
        "mailing": post("/api/v1/mailings/", {"name": "", "template": 5, "lists": [], "servers": {}}),
        "mailing-time": post("/api/v1/mailings/", {**MAILING, "scheduled_at": "tomorrow"}),
        "mailing-time-end": post("/api/v1/mailings/", {**MAILING, "scheduled_at": "9999-12-31T23:59:59"}),
        "mailing-time-type": post("/api/v1/mailings/", {**MAILING, "scheduled_at": 5}),
        "mailing-refs": post("/api/v1/mailings/", {**MAILING, "lists": [listed]}),
        "action": post(f"/api/v1/mailings/{ZERO}/start/", {"confirm_rejected": "maybe"}),
        "limit": lambda **h: api.get("/api/v1/contacts/", {"limit": "0"}, **h),
        "cursor": lambda **h: api.get("/api/v1/contacts/", {"cursor": "nope"}, **h),
        "status": lambda **h: api.get("/api/v1/mailings/", {"status": "nope"}, **h),
        "idempotency-key": post("/api/v1/lists/", {"name": "x"}, HTTP_IDEMPOTENCY_KEY="a\tb"),
        "not-suppressed": lambda **h: api.delete("/api/v1/suppressions/a@x.test/", **h),
    }


@pytest.mark.parametrize("language", ["ru", "vi"])
def test_every_refusal_speaks_the_requests_language(tenant_a, alice, settings, language):
    settings.API_MAX_BODY_BYTES = 10**6
    api = make_api(tenant_a, by=alice.user)
    reader = make_api(tenant_a, [ApiScope.READ], name="reader")
    customers = make_list(tenant_a, "Customers")
    make_template(tenant_a)
    left = {}
    for name, send in _bad_requests(api, reader, customers).items():
        english, answer = send(HTTP_ACCEPT_LANGUAGE="en"), send(HTTP_ACCEPT_LANGUAGE=language)
        assert english.status_code == answer.status_code and english.status_code >= 400, name
        assert answer["Content-Type"] == "application/problem+json", name
        for text, english_text in zip(_texts(answer.json()), _texts(english.json()), strict=True):
            if found := _english_left(text, english_text):
                left[name] = (text, sorted(found))
    assert not left, json.dumps(left, ensure_ascii=False, indent=1)


@pytest.mark.parametrize("language", ["ru", "vi"])
def test_the_rate_limit_speaks_the_requests_language(api, settings, language):
    settings.API_RATE_LIMIT = 1
    assert api.get("/api/v1/contacts/").status_code == 200
    english = api.get("/api/v1/contacts/", HTTP_ACCEPT_LANGUAGE="en").json()
    answer = api.get("/api/v1/contacts/", HTTP_ACCEPT_LANGUAGE=language).json()
    assert answer["status"] == 429
    for text, english_text in zip(_texts(answer), _texts(english), strict=True):
        assert not _english_left(text, english_text), text


def _fields(field):
    yield field
    if isinstance(field, serializers.Serializer):
        for child in field.fields.values():
            if not child.read_only:
                yield from _fields(child)
    elif getattr(field, "child", None) is not None:
        yield from _fields(field.child)


def _messages(field) -> list:
    validators = [getattr(v, "message", None) for v in field.validators]
    return [*field.error_messages.values(), *(m for m in validators if isinstance(m, Promise))]


@pytest.mark.parametrize("serializer", INPUTS, ids=lambda s: s.__name__)
def test_every_message_an_input_field_can_give_is_translated(serializer):
    """Also those no request above happens to provoke: DRF's catalogues lack
    some of its own messages in Vietnamese and Russian."""
    untranslated = set()
    for field in _fields(serializer()):
        for message in _messages(field):
            with translation.override("en"):
                english = str(message)
            for language in ("ru", "vi"):
                with translation.override(language):
                    if str(message) == english:
                        untranslated.add((language, english))
    assert not untranslated, sorted(untranslated)
