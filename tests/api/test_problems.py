"""Bad input of every kind gets a problem document, never a 500: broken
JSON, wrong types, bodies too large, bad cursors and ids, unknown paths
and methods, other media types."""

import base64
import json
import re
import unicodedata

import pytest

from mailing import mailings
from mailing.models import Contact, ContactList, CustomField, ImportRejection, Mailing
from tests.mailing.builders import make_list, make_template
from tests.security.walk import api_routes, concrete_urls, tenant_a_objects
from tests.servers.factories import make_server

from .conftest import make_api, problem

pytestmark = pytest.mark.django_db
URL = "/api/v1/contacts/"
ZERO = "00000000-0000-0000-0000-000000000000"


@pytest.mark.parametrize(
    "raw",
    [b"{", b"\xff\xfe{}", b"[" * 100_000 + b"]" * 100_000, b'{"email": 1' + b"0" * 5000 + b"}", b"NaN-ish"],
    ids=["cut", "not-utf8", "deep", "huge-number", "garbage"],
)
def test_malformed_json_is_400(api, raw):
    assert problem(api.post_raw(URL, raw), 400)["type"] == "urn:postroute:problem:malformed"


@pytest.mark.parametrize(
    ("raw", "said"),
    [
        (b'{"email": "a@x.test", "fields": {"city": NaN}}', "NaN"),
        (b'{"email": "a@x.test", "fields": {"city": -Infinity}}', "-Infinity"),
        (b'{"email": "a@x.test", "fields": {"city": 1e400}}', "1e400"),
        (b'{"email": "a@x.test", "email": "b@x.test"}', "“email”"),
        (b'{"email": "a@x.test", "fields": {"city": "Tver", "city": "Kazan"}}', "“city”"),
        ('{"email": "a@x.test", "fields": {"caf\u00e9": "1", "cafe\u0301": "2"}}'.encode(), "“café”"),
    ],
    ids=["nan", "infinity", "overflowing-float", "duplicate-key", "duplicate-nested-key", "same-key-composed"],
)
def test_what_json_does_not_allow_or_says_twice_is_400_not_a_guess(api, tenant_a, raw, said):
    """Python reads NaN and 1e400 (stored as "nan" and "inf") and keeps the
    last of two equal keys, losing the first without a word."""
    CustomField.objects.create(tenant=tenant_a, key="city", label="City")
    body = problem(api.post_raw(URL, raw), 400)
    assert body["type"] == "urn:postroute:problem:malformed" and said in body["detail"]
    assert not Contact.objects.exists()


@pytest.mark.parametrize(
    "body",
    [[], "text", {"email": ["a@x.test"]}, {"email": {"a": 1}}, {"email": "a@x.test", "fields": [1]}, {"lists": "x"}],
)
def test_wrong_types_are_422_with_the_fields(api, body):
    result = problem(api.post(URL, body), 422)
    assert result["type"] == "urn:postroute:problem:validation" and result["errors"]


def test_errors_of_nested_rows_name_their_path(api, tenant_a):
    customers = make_list(tenant_a)
    body = problem(api.post(URL + "bulk/", {"list": str(customers.public_id), "contacts": []}), 422)
    assert "contacts" in body["errors"]
    body = problem(api.post(URL + "bulk/", {"list": "nope", "contacts": [{"email": "a@x.test"}]}), 422)
    assert list(body["errors"]) == ["list"]


def test_a_body_too_large_is_413_before_it_is_read(api, settings):
    settings.API_MAX_BODY_BYTES = 1000
    body = problem(api.post_raw(URL, b'{"email": "' + b"a" * 2000 + b'"}'), 413)
    assert body["type"] == "urn:postroute:problem:too-large"


def test_the_body_limit_is_written_as_the_callers_language_writes_numbers(api, settings):
    settings.API_MAX_BODY_BYTES = 3 * 2**19  # 1.5 MB
    large = b'{"email": "' + b"a" * 2**21 + b'"}'
    assert problem(api.post_raw(URL, large), 413)["detail"] == "The body may be at most 1.5 MB."
    russian = problem(api.post_raw(URL, large, HTTP_ACCEPT_LANGUAGE="ru"), 413)
    assert russian["detail"] == "Тело запроса может занимать не более 1,5 МБ."


@pytest.mark.parametrize("cursor", ["%%%", "abc", "YzE6LTE", "YzI6NQ", "x" * 500])
def test_a_bad_cursor_is_422(api, cursor):
    assert "cursor" in problem(api.get(URL, {"cursor": cursor}), 422)["errors"]


@pytest.mark.parametrize("limit", ["0", "-1", "1001", "ten", "1e3", "²", "١٢", "9" * 5000, "0" * 4999 + "5"])
def test_a_bad_limit_is_422(api, limit):
    """Digits that str.isdigit() passes but int() refuses (a superscript)
    or reads as another script's, and more digits than int() converts,
    were a 500."""
    assert "limit" in problem(api.get(URL, {"limit": limit}), 422)["errors"]


@pytest.mark.parametrize(
    "path",
    ["/api/v1/contacts/not-a-uuid/", "/api/v1/nothing/", "/api/v1/mailings/00000000-0000-0000-0000-000000000000/"],
)
def test_unknown_paths_and_bad_ids_are_404_problems(api, path):
    assert problem(api.get(path), 404)["type"] == "urn:postroute:problem:not-found"


def test_a_method_the_resource_lacks_is_405_and_options_too(api):
    problem(api.delete(URL), 405)
    problem(api.client.options(URL, HTTP_AUTHORIZATION=f"Bearer {api.secret}"), 405)


def test_a_form_body_is_415(api):
    response = api.post_raw(URL, "email=a%40x.test", content_type="application/x-www-form-urlencoded")
    assert problem(response, 415)["type"] == "urn:postroute:problem:unsupported-media-type"


def test_a_list_filter_with_a_bad_id_is_422(api):
    assert problem(api.get(URL, {"list": "nope"}), 422)["errors"] == {"list": ["No such list."]}


def test_problems_speak_the_requests_language(api):
    body = problem(api.post(URL, {"email": "nope"}, HTTP_ACCEPT_LANGUAGE="ru"), 422)
    assert body["title"] == "Неверные данные" and body["type"] == "urn:postroute:problem:validation"


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/v1/suppressions/", {"reason": "x\x00"}),
        ("/api/v1/mailings/", {"status": "\x00"}),
        ("/api/v1/contacts/", {"list": "\x00"}),
        ("/api/v1/contacts/", {"cursor": "\x00", "limit": "\x00"}),
    ],
)
def test_nul_bytes_in_the_query_are_422_not_500(api, path, params):
    assert problem(api.get(path, params), 422)["errors"]


@pytest.mark.parametrize("text", ["a\x00b", "\ud800"], ids=["nul", "lone-surrogate"])
def test_nul_bytes_and_lone_surrogates_in_bodies_are_refused(api, tenant_a, text):
    customers = make_list(tenant_a)
    assert problem(api.post(URL, {"email": "a@x.test", "first_name": text}), 422)["errors"]["first_name"]
    assert problem(api.post("/api/v1/lists/", {"name": text}), 422)["errors"]["name"]
    rows = [
        {"email": "a@x.test", "fields": {"city": text}},
        {"email": text},
        {"email": "b@x.test", "last_name": text},
        {"email": "c@x.test"},
    ]
    body = api.post(URL + "bulk/", {"list": str(customers.public_id), "contacts": rows}).json()
    assert body["created"] == 1 and [r["index"] for r in body["rejections"]] == [0, 1, 2]
    encoded = "a%00b" if "\x00" in text else "%ED%A0%80"  # the same, as a client puts it in a path
    problem(api.delete(f"/api/v1/suppressions/{encoded}/"), 404)


@pytest.mark.parametrize("text", ["\x00", "\ud800"], ids=["nul", "lone-surrogate"])
def test_nul_bytes_and_lone_surrogates_in_a_field_name_reject_the_row_not_the_request(api, tenant_a, text):
    """The row's reason names the key it refuses: the key cannot be stored
    as it came, so it is named with U+FFFD in place of what cannot."""
    customers = make_list(tenant_a)
    rows = [{"email": "a@x.test", "fields": {f"ci{text}ty": "Tver"}}, {"email": "b@x.test"}]
    body = api.post(URL + "bulk/", {"list": str(customers.public_id), "contacts": rows}).json()
    assert body["created"] == 1 and body["rejections"] == [{"index": 0, "reason": "Not a field name: ci\ufffdty."}]
    assert ImportRejection.objects.get().reason == "Not a field name: ci\ufffdty."


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        (rb'{"email": "a@x.test", "fields": {"ci\ud800ty": "Tver"}}', "errors"),
        (rb'{"email": "a@x.test", "k\udc00": 1, "k\udc00": 2}', "detail"),
    ],
    ids=["unknown field", "key twice"],
)
def test_a_refusal_that_names_a_key_with_a_lone_surrogate_is_a_problem_not_a_500(api, tenant_a, raw, where):
    """A refusal names the key it refuses, and JSON may escape half a
    surrogate pair (\\ud800) that no UTF-8 answer can carry: the answer
    failed to encode and was a 500. It names the key with U+FFFD in place
    of the half, as the bulk upsert's rejections do."""
    CustomField.objects.create(tenant=tenant_a, key="city", label="City")
    body = problem(api.post_raw(URL, raw), 422 if where == "errors" else 400)
    assert "\ufffd" in json.dumps(body[where], ensure_ascii=False)
    assert not Contact.objects.exists()


def test_a_post_to_a_wrong_path_is_a_404_problem_too(api):
    assert problem(api.post("/api/v1/contact/", {"email": "a@x.test"}), 404)["type"].endswith(":not-found")


def test_a_cursor_works_only_where_it_was_given(api, api_b, tenant_a, tenant_b):
    """A cursor was the last row's id and nothing else: one endpoint's
    cursor sent to another, or another organisation's, was taken as a
    place in these rows, and a client that mixed up its stored cursors
    skipped rows without a word. Now it is refused."""
    for tenant in (tenant_a, tenant_b):
        for n in range(3):
            make_list(tenant, f"L{n}", [f"c{n}@x.test"])
    lists = api.get("/api/v1/lists/", {"limit": 1}).json()["next_cursor"]
    assert api.get("/api/v1/lists/", {"cursor": lists}).json()["results"]
    assert "cursor" in problem(api.get(URL, {"cursor": lists}), 422)["errors"]
    assert "cursor" in problem(api_b.get("/api/v1/lists/", {"cursor": lists}), 422)["errors"]
    bounces = api.get("/api/v1/bounces/").json()["next_cursor"]
    assert "cursor" in problem(api.get("/api/v1/unsubscribes/", {"cursor": bounces}), 422)["errors"]


def test_a_cursor_altered_by_hand_is_refused_and_one_given_before_still_works(api, tenant_a):
    for n in range(3):
        make_list(tenant_a, f"L{n}", [f"c{n}@x.test"])
    cursor = api.get("/api/v1/lists/", {"limit": 1}).json()["next_cursor"]
    text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    tag, number, signature = text.split(":", 2)
    forged = base64.urlsafe_b64encode(f"{tag}:{int(number) + 1}:{signature}".encode()).decode().rstrip("=")
    assert "cursor" in problem(api.get("/api/v1/lists/", {"cursor": forged}), 422)["errors"]
    # A cursor of the first form (the id alone), stored by a client before, still pages.
    legacy = base64.urlsafe_b64encode(f"c1:{number}".encode()).decode().rstrip("=")
    assert len(api.get("/api/v1/lists/", {"cursor": legacy}).json()["results"]) == 2


@pytest.mark.parametrize("path", ["/api/", "/api/v2/contacts/", "/api/contacts/", "/api/v1"])
def test_paths_under_api_outside_v1_are_404_problems_too(api, path):
    """They got the site's HTML 404 page."""
    assert problem(api.get(path), 404)["type"] == "urn:postroute:problem:not-found"


def test_the_reference_and_the_schema_without_their_slash_still_redirect(api):
    assert api.get("/api/docs").status_code == 301 and api.get("/api/schema").status_code == 301


def test_a_server_error_under_the_api_is_a_problem_document(api, monkeypatch):
    """A client reads JSON: it got the site's HTML error page. Pages keep it."""
    from mailing.api.views.templates import TemplateCollection

    def broken(view, request):
        raise RuntimeError("a bug")

    monkeypatch.setattr(TemplateCollection, "get", broken)
    api.client.raise_request_exception = False
    body = problem(api.get("/api/v1/templates/", HTTP_ACCEPT_LANGUAGE="ru"), 500)
    assert body["type"] == "urn:postroute:problem:server-error" and body["title"] == "У нас что-то пошло не так."
    assert "a bug" not in str(body)


@pytest.mark.parametrize(
    "accept",
    ["application/problem+json", "application/problem+json, application/json;q=0.5", "text/html", "text/plain"],
)
def test_the_accept_header_never_hides_the_answer(api, accept):
    """JSON is the one form served, so Accept is not checked (RFC 9110
    allows disregarding it). A client that said it takes problem documents,
    or that sent a library's default, got 406 on every request, even where
    the answer would have been a problem document (a refused limit)."""
    response = api.get(URL, HTTP_ACCEPT=accept)
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    assert "limit" in problem(api.get(URL, {"limit": "0"}, HTTP_ACCEPT=accept), 422)["errors"]
    assert api.post(URL, {"email": "a@x.test"}, HTTP_ACCEPT=accept).status_code == 201


def test_an_id_in_capitals_names_the_same_object_on_every_route(alice, tenant_a, tmp_path, settings):
    """UUIDs are read whatever their case (RFC 9562), as the bodies read
    them: a client that keeps ids in capitals (SQL Server, Delphi) got 404
    for its own objects from every path with an id. Every API route with
    an id, from the resolver, answers a GET in capitals as in small letters."""
    settings.API_RATE_LIMIT = settings.API_TENANT_RATE_LIMIT = 100_000
    ids = tenant_a_objects(tenant_a, alice, tmp_path)
    api = make_api(tenant_a, by=alice.user)
    found = 0
    for route, _pattern in api_routes():
        if "public_id>" not in route:
            continue
        for url in concrete_urls(route, ids):
            small = api.get(url)
            capitals = api.get(re.sub(r"[0-9a-f-]{36}", lambda m: m.group().upper(), url))
            assert (capitals.status_code, _without_instance(capitals)) == (small.status_code, _without_instance(small))
            found += small.status_code == 200
    assert found >= 5
    contact = make_list(tenant_a, "Capitals", ["caps@x.test"]).contacts.get()
    assert api.delete(f"{URL}{str(contact.public_id).upper()}/").status_code == 204


def _without_instance(response) -> dict:
    body = response.json()
    body.pop("instance", None)
    return body


def test_a_body_is_read_in_the_charset_it_declares_and_a_utf8_bom_is_no_error(api, tenant_a):
    """A program on Windows (1C, Delphi) sends windows-1251 and says so, or
    UTF-8 with a byte order mark (1C's default): both were 400 "not valid
    JSON (UTF-8)", as if the charset were not in the header; DRF's own
    parser reads it. A charset we do not read (or one that is no text
    encoding: bz2_codec would unpack a bomb) is 415, naming it."""

    def send(data: bytes, content_type: str):
        # generic(): the bytes as they are (post() re-encodes them to the charset)
        return api.client.generic(
            "POST", "/api/v1/lists/", data, content_type, HTTP_AUTHORIZATION=f"Bearer {api.secret}"
        )

    named = json.dumps({"name": "Клиенты"}, ensure_ascii=False)
    declared = send(named.encode("cp1251"), "application/json; charset=windows-1251")
    assert declared.status_code == 201 and declared.json()["name"] == "Клиенты"
    with_bom = send('\ufeff{"name": "Khách hàng"}'.encode(), "application/json")
    assert with_bom.status_code == 201 and with_bom.json()["name"] == "Khách hàng"
    assert send('{"name": "Đối tác"}'.encode(), "application/json; charset=UTF-8").status_code == 201
    undeclared = problem(send('{"name": "Ёж"}'.encode("cp1251"), "application/json"), 400)
    assert undeclared["type"].endswith(":malformed") and "UTF-8" in undeclared["detail"]
    for charset in ("no-such", "bz2_codec", "base64"):
        refused = problem(send(b'{"name": "x"}', f"application/json; charset={charset}"), 415)
        assert charset in refused["detail"]
    assert ContactList.objects.filter(tenant=tenant_a).count() == 3


@pytest.mark.parametrize(
    ("path", "body", "unknown"),
    [
        ("/api/v1/contacts/", {"email": "new@x.test", "frist_name": "Ann"}, "frist_name"),
        ("/api/v1/lists/", {"name": "Leads", "description": "From the fair"}, "description"),
        ("/api/v1/suppressions/", {"email": "a@x.test", "reason": "unsubscribed", "notes": "asked"}, "notes"),
        ("/api/v1/mailings/", {"name": "Offer", "template": "T", "lists": ["L"], "server": ["S"]}, "server"),
        ("/api/v1/mailings/M/schedule/", {"scheduledAt": "2030-01-01T10:00Z"}, "scheduledAt"),
        ("/api/v1/contacts/bulk/", {"list": "L", "contacts": [{"email": "a@x.test"}], "mode": "replace"}, "mode"),
    ],
)
def test_a_field_the_resource_does_not_have_is_refused_not_dropped(api, tenant_a, path, body, unknown):
    """A misspelt or made-up field was dropped without a word: 201 without
    the contact's name, or a mailing meant for one server ("server" for
    "servers") made to send through every server. Now it is 422 naming it.
    Fields the answers carry (id, status, reason) may come back: ignored."""
    customers, template = make_list(tenant_a, "L", ["a@x.test"]), make_template(tenant_a)
    server = make_server(tenant_a)
    mailing = Mailing(tenant=tenant_a, name="m", template=template)
    mailings.mailing_save(mailing=mailing, lists=[customers], servers=[server])
    ids = {"T": template.public_id, "L": customers.public_id, "S": server.public_id, "M": mailing.public_id}
    filled = json.loads(re.sub(r'"([TLSM])"', lambda m: f'"{ids[m.group(1)]}"', json.dumps(body)))
    before = (ContactList.objects.count(), Mailing.objects.count(), Contact.objects.count())
    refused = problem(api.post(re.sub(r"/M/", f"/{mailing.public_id}/", path), filled), 422)
    assert list(refused["errors"]) == [unknown]
    assert (ContactList.objects.count(), Mailing.objects.count(), Contact.objects.count()) == before
    assert Mailing.objects.get(pk=mailing.pk).status == Mailing.Status.DRAFT


def test_a_bulk_row_with_a_key_a_contact_does_not_have_is_rejected_not_dropped(api, tenant_a):
    customers = make_list(tenant_a)
    rows = [{"email": "a@x.test", "phone": "+7 900"}, {"email": "b@x.test", "firstName": "Bob"}, {"email": "c@x.test"}]
    body = api.post(URL + "bulk/", {"list": str(customers.public_id), "contacts": rows}).json()
    assert body["created"] == 1 and [r["index"] for r in body["rejections"]] == [0, 1]
    assert "phone" in body["rejections"][0]["reason"] and "firstName" in body["rejections"][1]["reason"]


def test_text_is_stored_composed_whatever_form_it_came_in(api, tenant_a):
    """A Mac or a Vietnamese keyboard sends "á" as "a" and a combining mark
    (NFD), and Python's json.dumps escapes it so: a list named so was a
    second "Khách hàng" beside the first, and no search typed composed found
    it. Every string of a body is read as NFC."""
    decomposed = unicodedata.normalize("NFD", "Khách hàng Nguyễn")
    first = api.post("/api/v1/lists/", {"name": decomposed})
    assert first.status_code == 201 and first.json()["name"] == "Khách hàng Nguyễn"
    again = problem(api.post("/api/v1/lists/", {"name": "Khách hàng Nguyễn"}), 422)
    assert list(again["errors"]) == ["name"]
    template = make_template(tenant_a)
    make_server(tenant_a)
    lists = [first.json()["id"]]
    made = api.post("/api/v1/mailings/", {"name": decomposed, "template": str(template.public_id), "lists": lists})
    assert made.status_code == 201 and made.json()["name"] == "Khách hàng Nguyễn"
    noted = api.post("/api/v1/suppressions/", {"email": "a@x.test", "note": decomposed})
    assert noted.json()["note"] == "Khách hàng Nguyễn"


@pytest.mark.parametrize("path", ["/api/v1/contacts", "/api/v1/contacts/bulk", f"/api/v1/mailings/{ZERO}/start"])
def test_a_path_without_its_final_slash_is_told_where_the_resource_is(api, path):
    """It was told "There is no such resource", of one that is there."""
    for response in (api.get(path), api.post(path, {"email": "a@x.test"})):
        body = problem(response, 404)
        assert f"{path}/" in body["detail"] and body["type"].endswith(":not-found")
    assert path + "/" not in problem(api.get(path + "x"), 404)["detail"]


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/api/v1/contacts/", "list_id=L"),
        ("/api/v1/contacts/", "lists=L"),
        ("/api/v1/mailings/", "state=draft"),
        ("/api/v1/suppressions/", "reasons=manual"),
        ("/api/v1/bounces/", "since=2026-01-01"),
        ("/api/v1/lists/", "ordering=-name"),
        ("/api/v1/servers/", "limit=5"),
        ("/api/v1/lists/L/", "fields=name"),
    ],
)
def test_a_query_parameter_the_request_does_not_read_is_refused(api, tenant_a, path, query):
    """A misspelt filter was dropped without a word: GET contacts/?list_id=…
    answered every contact, and a client that acts on them (deletes them
    from its CRM, say) acted on all. Now it is 422 naming it."""
    customers = make_list(tenant_a, "L", ["a@x.test"])
    make_list(tenant_a, "Other", ["b@x.test"])
    url = f"{path}?{query}".replace("L/", f"{customers.public_id}/").replace("=L", f"={customers.public_id}")
    body = problem(api.get(url), 422)
    assert list(body["errors"]) == [query.split("=")[0]]


def test_a_delete_with_a_query_parameter_is_refused_and_deletes_nothing(api, tenant_a):
    contact = make_list(tenant_a, "L", ["a@x.test"]).contacts.get()
    problem(api.delete(f"{URL}{contact.public_id}/?force=1"), 422)
    assert Contact.objects.filter(pk=contact.pk).exists()


@pytest.mark.parametrize("query", ["status=draft&status=active", "limit=1&limit=1000", "cursor=a&cursor=b"])
def test_a_query_parameter_given_twice_is_refused_not_half_read(api, query):
    """The last was read and the first dropped: ?status=draft&status=active
    answered the active ones only, as if that were all that was asked."""
    body = problem(api.get(f"/api/v1/mailings/?{query}"), 422)
    assert list(body["errors"]) == [query.split("=")[0]]
