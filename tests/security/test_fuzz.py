"""No 500 anywhere: a fuzz walk over every URL pattern (from the resolver,
as the isolation walk) and every parameter the views read, as an owner, a
member and an anonymous visitor, with GET and POST.

The parameters are found, not listed: while the walk makes a first request
to a page, every key read from request.GET or request.POST is recorded
(views and bound forms read their fields by name), and the fields of the
forms the page shows are added. Each is then filled with garbage: Unicode
digits, huge and negative numbers, 5,000 digits, floats Python cannot
hold, empty values, 10 KB, NUL, an encoded lone surrogate and bytes that are
not UTF-8, a list where one value is expected, impossible dates, a UUID
that exists nowhere. One parameter at a time with the others as the page
proposes them, then all at once. A 5xx fails the walk, with the request and
the exception that made it.

What cannot reach other code is sent once: a route is walked with the
objects of its own model (the others are 404 to it), and a POST whose body
no code read (a 405, a refusal) gets one request with every key at 10 KB."""

import socket
import sys
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import quote_from_bytes

import pytest
from django import forms
from django.core.signals import got_request_exception
from django.http import HttpResponse, QueryDict
from django.test import Client
from django.urls import reverse
from django_otp import DEVICE_ID_SESSION_KEY

from mailing.models import Mailing
from servers import services
from servers.models import BounceMailbox, SmtpServer
from tests.conftest import Person
from tests.mailing.builders import make_template

from .test_hostile_input import MAILBOX, SERVER
from .walk import OWN_ACCOUNT, OneKind, concrete_urls, is_public, tenant_a_objects, walk

pytestmark = pytest.mark.django_db

# Each value as the bytes that go into the query string or the body.
GARBAGE: dict[str, bytes | list[bytes]] = {
    "superscript two": "²".encode(),
    "Arabic-Indic three": "٣".encode(),
    "fullwidth digits": "１２".encode(),
    "negative": b"-1",
    "zero": b"0",
    "20 digits": b"9" * 20,
    "5,000 digits": b"9" * 5000,
    "1e309": b"1e309",
    "NaN": b"NaN",
    "empty": b"",
    "space": b" ",
    "NUL": b"a\x00b",
    "10 KB": b"x" * 10240,
    "lone surrogate": b"\xed\xa0\x80",
    "not UTF-8": b"\xff\xfe",
    "a list": [b"1", b"2"],
    "unknown UUID": b"00000000-0000-4000-8000-000000000000",
    "not a UUID": b"not-a-uuid",
    "year 9999": b"9999-12-31T23:59",
    "year 1": b"0001-01-01T00:00",
    "impossible date": b"2026-13-45T25:61",
    "markup": b"<script>alert(1)</script>{{ x }}{% y %}",
    "path": b"../../../etc/passwd",
}
# The kinds that broke views before, or that parsers trip on: each
# parameter alone gets these.
SHARP = ["superscript two", "5,000 digits", "a list", "not a UUID", "NUL", "not UTF-8", "1e309", "year 9999"]
# Query parameters views are known to read: the recording must find them.
KNOWN_QUERY = {"after", "status", "page", "q", "preset", "contact", "list"}
# Path parameters that are not tenant A's objects.
PATH_GARBAGE = {
    "<str:token>": ["not-a-token", "²", "%ED%A0%80", "x" * 300],
    "<uidb64>": ["MQ", "²", "%FF"],
    "<token>": ["x", "²"],
}
# Routes whose POST ends what the walk stands on (an object, the session,
# or the session's organisation: a new one becomes the current one): walked
# last, each request in a session of its own.
DESTRUCTIVE = ("delete", "discard", "remove", "revoke", "leave", "reset-two-factor", "logout", "organisations/")

STATS: Counter = Counter()
FAILURES: list[str] = []
READ_KEYS: set[str] = set()


@pytest.fixture(scope="module", autouse=True)
def _summary() -> Iterator[None]:
    yield
    if STATS:
        print(
            f"\nfuzz: {STATS['requests']} requests, {len(FAILURES)} server errors "
            f"({STATS['urls']} URLs of {STATS['patterns']} patterns, {STATS['parameters']} parameters, "
            f"{len(GARBAGE)} kinds of garbage; owner, member, anonymous; GET and POST)"
        )


@contextmanager
def recording_reads() -> Iterator[set[str]]:
    """Every key read from a QueryDict (request.GET, request.POST) inside."""
    keys: set[str] = set()
    originals = {name: getattr(QueryDict, name) for name in ("get", "getlist", "__getitem__", "__contains__")}

    def spy(name: str):
        original = originals[name]

        def read(self, key, *args, **kwargs):
            if isinstance(key, str):
                keys.add(key)
            return original(self, key, *args, **kwargs)

        return read

    for name in originals:
        setattr(QueryDict, name, spy(name))
    try:
        yield keys
    finally:
        for name, original in originals.items():
            setattr(QueryDict, name, original)


@contextmanager
def catching_exceptions() -> Iterator[list[str]]:
    caught: list[str] = []

    def record(sender: object, request: object = None, **kwargs: object) -> None:
        caught.append("".join(traceback.format_exception(*sys.exc_info())[-3:]))

    got_request_exception.connect(record)
    try:
        yield caught
    finally:
        got_request_exception.disconnect(record)


def encode(params: dict[str, bytes | list[bytes]]) -> str:
    pairs = []
    for key, value in params.items():
        for item in value if isinstance(value, list) else [value]:
            pairs.append(f"{quote_from_bytes(key.encode(), safe='')}={quote_from_bytes(item, safe='')}")
    return "&".join(pairs)


def page_fields(response) -> dict[str, bytes | list[bytes]]:
    """The fields of the forms a page shows, with the values it proposes."""
    fields: dict[str, bytes | list[bytes]] = {}
    for context in response.context or []:
        # A view that renders its own template (the JavaScript catalogue) leaves a plain dict.
        for value in (context.flatten() if hasattr(context, "flatten") else context).values():
            if isinstance(value, forms.BaseForm):
                for name in value.fields:
                    proposed = value[name].value()
                    if isinstance(proposed, list | tuple):
                        fields[value.add_prefix(name)] = [str(v).encode() for v in proposed]
                    else:
                        fields[value.add_prefix(name)] = b"" if proposed in (None, False) else str(proposed).encode()
    return fields


class Walker:
    """Sends the garbage, each request through `client()`: the role's own
    session, or a new one for a route that ends the session it is in."""

    def __init__(self, client: Callable[[], Client], caught: list[str], role: str) -> None:
        self.client, self.caught, self.role = client, caught, role

    def request(self, method: str, url: str, params: dict[str, bytes | list[bytes]], note: str) -> HttpResponse:
        before = len(self.caught)
        client = self.client()
        client.raise_request_exception = False
        if method == "GET":
            query = encode(params)
            response = client.get(url + ("?" + query if query else ""))
        else:
            response = client.post(url, encode(params), content_type="application/x-www-form-urlencoded")
        STATS["requests"] += 1
        if response.status_code >= 500:
            error = self.caught[before] if len(self.caught) > before else ""
            FAILURES.append(f"{self.role} {method} {url} {note}: {response.status_code}\n{error}")
        return response

    def fuzz(self, method: str, url: str, baseline: dict, keys: set[str], level: "Level") -> None:
        """Each key alone with `level.each`, then all keys at once with
        `level.together`."""
        if not keys:
            return
        for key in sorted(keys):
            for name in level.each:
                self.request(method, url, {**baseline, key: GARBAGE[name]}, f"{key}={name}")
        together = level.together_get if method == "GET" and level.together_get is not None else level.together
        for name in together:
            self.request(method, url, dict.fromkeys(keys, GARBAGE[name]), f"all={name}")

    def post(self, url: str, baseline: dict, keys: set[str], level: "Level", *, read: bool) -> None:
        """The POST's fuzz; for a URL whose POST read no body (a 405, a
        member's 403, a view that redirects), one request with every key
        at the largest value: no code reads the values, so no other value
        could reach other code. Should that request read its body after
        all, the URL gets the whole fuzz."""
        if not read and keys:
            sent = self.request("POST", url, dict.fromkeys(keys, GARBAGE["10 KB"]), "all=10 KB, body unread")
            if not body_read(sent):
                return
        self.fuzz("POST", url, baseline, keys, level)


@dataclass(frozen=True)
class Level:
    each: list[str]
    together: list[str]
    # All of a GET's keys at once: a query's few keys (a cursor, a filter,
    # a page) are each tried with every value that broke views already.
    together_get: list[str] | None = None


# The owner reaches every page: each parameter gets the values that broke
# views before, and all of a form's fields every kind of garbage (a date
# field meets the impossible date) but six of the sharp ones, which each
# field already met alone. The member and the visitor walk the
# same code mostly, or are sent away early: a member's writes are refused
# before a form reads them, so its walk is the pages it may read.
OWNER = Level(each=SHARP, together=[name for name in GARBAGE if name not in SHARP[2:]], together_get=SHARP)
OTHERS = Level(each=SHARP[:2], together=SHARP[:4])


def routes() -> list[tuple[str, bool]]:
    """Every route but the staff admin's (it sends everyone else to its own
    login), with whether it ends the session or the object it is on."""
    found = []
    for route, _pattern in walk():
        if route.startswith("staff/") and route not in ("staff/", "staff/login/"):
            continue
        if route.startswith("api/v1/"):
            continue  # a session gets 401 there: the API has its own walk with keys (test_api_fuzz)
        found.append((route, route.startswith(OWN_ACCOUNT) or any(word in route for word in DESTRUCTIVE)))
    return sorted(found, key=lambda item: item[1])


def urls_of(route: str, ids: list) -> list[str]:
    urls = concrete_urls(route, ids) if "uuid:" in route or "<slug:" in route else ["/" + route]
    for name, values in PATH_GARBAGE.items():
        urls = [u.replace(name, v, 1) for u in urls for v in values] if name in route else urls
    return [u for u in urls if "<" not in u]


def body_read(response: HttpResponse) -> bool:
    """Whether anything read the request's body: request.POST or FILES
    (parsed even from an empty body), request.body, or the stream."""
    request = response.wsgi_request
    return request._read_started or hasattr(request, "_post") or hasattr(request, "_body")


def explore(client: Client, url: str, *, of_object: bool) -> tuple[dict, set[str], set[str], bool] | None:
    """The page's proposed fields, the keys its GET and its POST read,
    and whether the POST read its body at all; None for a URL of an
    object that is not this role's, or not of this route's kind (404 to
    both)."""
    with recording_reads() as get_keys:
        response = client.get(url)
    if response.status_code == 404:
        return None
    fields = page_fields(response) if response.status_code == 200 else {}
    with recording_reads() as post_keys:
        posted = client.post(url, encode(fields), content_type="application/x-www-form-urlencoded")
    if of_object and response.status_code == 405 and posted.status_code == 404:
        return None  # a POST-only URL of another kind of object
    return fields, get_keys, post_keys | set(fields), body_read(posted)


def walk_as(person: Person | None, caught: list[str], ids: list, level: Level) -> None:
    role = "anonymous" if person is None else person.user.email.split("@")[0]
    kinds = OneKind(ids)
    for route, ends_session in routes():
        pattern = dict(walk())[route]
        for n, url in enumerate(urls_of(route, ids)):
            if person is None and n and not is_public(pattern):
                break  # the login redirect comes before the view reads anything
            # Objects of another model than the first that answered are 404
            # (OneKind) or, where the role is refused before the lookup (a
            # member's 403), the same refusal; a failed import and a
            # waiting one are both walked.
            if kinds.skip(route, url):
                continue
            own = Client() if person is None else person.client
            walker = Walker((lambda: fresh(person)) if ends_session else (lambda: own), caught, role)
            explored = explore(walker.client(), url, of_object="<uuid:" in route)
            STATS["requests"] += 2
            if explored is None:
                continue
            fields, get_keys, post_keys, read = explored
            kinds.mark(route, url)
            STATS["urls"] += 1
            READ_KEYS.update(get_keys, post_keys)
            STATS["parameters"] = len(READ_KEYS)
            walker.fuzz("GET", url, {}, get_keys, level)
            walker.post(url, fields, post_keys - {"csrfmiddlewaretoken"}, level, read=read)


def fresh(person: Person | None) -> Client:
    """A session of its own for a route that ends the one it is in."""
    client = Client()
    if person is not None:
        client.force_login(person.user)
        session = client.session
        session[DEVICE_ID_SESSION_KEY] = person.device.persistent_id
        session.save()
    return client


@pytest.fixture
def walked(tenant_a, alice, tmp_path, settings) -> Iterator[tuple[list, list[str]]]:
    """Tenant A's objects to walk over, and the exceptions of the walk."""
    settings.IMPORTS_DIR = tmp_path / "imports"
    STATS["patterns"] = len(routes())
    before = len(FAILURES)
    with catching_exceptions() as caught:
        yield tenant_a_objects(tenant_a, alice, tmp_path), caught
    found = FAILURES[before:]
    assert not found, f"{len(found)} server errors:\n\n" + "\n\n".join(found[:20])


def test_no_parameter_makes_a_server_error_for_a_visitor(walked):
    walk_as(None, walked[1], walked[0], OTHERS)


def test_no_parameter_makes_a_server_error_for_the_owner(walked, alice):
    walk_as(alice, walked[1], walked[0], OWNER)
    assert KNOWN_QUERY <= READ_KEYS, KNOWN_QUERY - READ_KEYS  # the recording found what views read


def test_no_parameter_makes_a_server_error_for_a_member(walked, bob):
    walk_as(bob, walked[1], walked[0], OTHERS)


# ---------- The 500s the walk found, and one it cannot reach ----------


@pytest.mark.parametrize("value", ["not-a-uuid", "²", "x" * 10240, ""])
def test_switching_to_an_organisation_that_is_not_a_uuid_is_404(alice, value):
    response = alice.client.post(reverse("accounts:tenant_switch"), {"tenant": value})
    assert response.status_code == 404


@pytest.mark.parametrize("after", ["²", "٣", "9" * 5000, "9" * 19, "-1", "1.5"])
def test_a_letters_cursor_that_is_not_a_letter_id_is_404(alice, tenant_a, after):
    mailing = Mailing.objects.create(tenant=tenant_a, name="m", template=make_template(tenant_a))
    url = reverse("mailings:detail", args=[mailing.public_id])
    assert alice.client.get(url, {"after": after}).status_code == 404
    assert alice.client.get(url, {"after": "12"}).status_code == 200


@pytest.fixture
def rebinding(settings, monkeypatch) -> dict[str, bool]:
    """A host whose DNS answer is public while the form checks it and
    private (127.0.0.1) once the service checks it again before saving."""
    settings.DEPLOYMENT_MODE, settings.SERVERS_ALLOW_PRIVATE_HOSTS = "saas", False
    state = {"private": False}
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host != "rebind.example.com":
            return real(host, port, *args, **kwargs)
        address = "127.0.0.1" if state["private"] else "93.184.216.34"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port or 0))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    for name in ("server_save", "mailbox_save"):
        save = getattr(services, name)

        def turning(*args, _save=save, **kwargs):
            state["private"] = True
            return _save(*args, **kwargs)

        monkeypatch.setattr(services, name, turning)
    return state


@pytest.mark.parametrize(
    ("url", "data"),
    [
        ("servers:add", {**SERVER, "host": "rebind.example.com"}),
        ("servers:mailbox", {**MAILBOX, "host": "rebind.example.com"}),
    ],
)
def test_a_dns_answer_that_turns_private_between_the_form_and_the_save_is_an_error_on_the_form(
    alice, rebinding, url, data
):
    response = alice.client.post(reverse(url), data)
    assert rebinding["private"], "the form passed the host and the service checked it again"
    assert response.status_code == 400
    assert "loopback" in " ".join(response.context["form"].errors["host"])
    assert not SmtpServer.objects.exists() and not BounceMailbox.objects.exists()


def test_the_import_mappings_encoding_choice_meets_every_kind_of_garbage(alice, bob, settings, tmp_path):
    """The walk's own waiting import is started by the walk's first POST
    (its proposed mapping is valid), so the page's re-reading in another
    encoding is walked here: each field of the page with each garbage, the
    encoding and "Read again" together too, by the owner and a member."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from mailing.models import ContactImport

    settings.IMPORTS_DIR = tmp_path / "imports"
    content = "email,name,Ёлки\r\ndima@example.ru,Дмитрий,1\r\n".encode("mac_cyrillic")
    file = SimpleUploadedFile("people.csv", content, "text/csv")
    assert alice.client.post(reverse("contacts:import_upload"), {"file": file}).status_code == 302
    imp = ContactImport.objects.get()
    url = reverse("contacts:import_mapping", args=[imp.public_id])
    proposed = page_fields(alice.client.get(url))
    assert {"encoding", "col_0", "col_2", "contact_list", "new_list_name"} <= set(proposed)
    base = {**proposed, "new_list_name": b"", "reread": b"1"}  # no list named: the import never starts
    with catching_exceptions() as caught:
        for person in (alice, bob):
            walker = Walker(lambda person=person: person.client, caught, person.user.email)
            walker.fuzz("POST", url, base, set(base), OWNER)
            walker.fuzz("GET", url, {}, {"encoding", "reread"}, OWNER)
    failures = [f for f in FAILURES if url in f]
    assert not failures, "\n\n".join(failures[:5])
    imp.refresh_from_db()
    assert imp.status == ContactImport.Status.UPLOADED and imp.encoding in ("cp1251", "mac_cyrillic")
    assert imp.header[:2] == ["email", "name"]
