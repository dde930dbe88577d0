"""CSRF on every URL: the walk takes the URL patterns from the resolver (not
a hand list), fills each parameter with tenant A's own objects, and POSTs
without a token as alice, its owner, logged in and 2FA-verified, with the
CSRF checks on. Every POST is refused by the CSRF check (403) and changes
nothing. The only views exempt from the check are listed below with the
reason, and a new csrf_exempt view makes this test fail."""

import hashlib
import logging
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.apps import apps
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import URLPattern, resolve, reverse
from django_otp import DEVICE_ID_SESSION_KEY

from mailing.models import ContactImport, Suppression
from mailing.unsubscribe import unsubscribe_url
from tests.conftest import PASSWORD, Person
from tests.security.walk import ACTIONS, OneKind, tenant_a_objects, walk

pytestmark = pytest.mark.django_db

# Views that take a POST without a CSRF token, and why.
EXEMPT = {
    "u/<str:token>/": "RFC 8058 one-click unsubscribe: mailbox providers POST `List-Unsubscribe=One-Click` "
    "without a token; the signed link is the protection",
}
# The API (mailing/api) authenticates a request by its `Authorization:
# Bearer` key, which a browser never adds by itself, and ignores the session
# cookie (tests/api/test_auth.py): a forged cross-site POST carries no key.
API_ROUTES = {route for route, _ in walk() if route.startswith("api/")}
EXEMPT.update(dict.fromkeys(API_ROUTES, "the API: a key in a header, never a cookie"))
# Exempt from the middleware only to put the size limit in place before the
# body is read; the view checks the token itself (csrf_protect), so a POST
# without one must still be refused.
CHECKED_INSIDE = {"contacts/imports/new/"}

# Parameters that are not tenant A's objects: signed tokens of public
# pages, and the admin's own ids.
OTHER_FILLINGS = {
    "<slug:action>": ACTIONS,
    "<str:token>": ["not-a-token"],
    "<uidb64>": ["MQ"],
    "<token>": ["not-a-token"],
    "<path:object_id>": ["1"],
    "<path:content_type_id>": ["1"],
    "<int:pk>": ["1"],
    "<id>": ["1"],
}


TALLY = {"views": 0, "requests": 0}


@pytest.fixture(scope="module", autouse=True)
def _summary() -> Iterator[None]:
    yield
    print(
        f"\ncsrf: {TALLY['views']} POST views refused without a token ({TALLY['requests']} requests), "
        f"{len(EXEMPT)} exempt (listed: {', '.join(f'{route} — {why}' for route, why in EXEMPT.items())})"
    )


def csrf_client(person: Person) -> Client:
    """The person's logged-in, 2FA-verified session in a client that
    enforces CSRF like a browser request would meet it."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(person.user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = person.device.persistent_id
    session.save()
    return client


def concrete_urls(route: str, ids: list[uuid.UUID]) -> list[str]:
    """Every way to fill the route's parameters; a regex route (the admin's)
    takes the first of its alternatives."""
    route = re.sub(r"\(\?P<\w+>([^)]*)\)", lambda m: m.group(1).split("|")[0] if "|" in m.group(1) else "x", route)
    filled = [str(i) for i in ids]
    fillings = {"<uuid:public_id>": filled, "<anyuuid:public_id>": filled, **OTHER_FILLINGS}
    urls = ["/" + route.replace("^", "").replace("$", "")]
    for name, values in fillings.items():
        while any(name in u for u in urls):
            urls = [u.replace(name, v, 1) for u in urls for v in values]
    assert not any("<" in u for u in urls), f"a parameter the walk cannot fill: {route}"
    return urls


def fingerprint() -> dict[str, str]:
    """A digest of every row of every table."""
    return {
        model._meta.label: hashlib.sha256(
            repr(list(model._base_manager.order_by("pk").values_list())).encode()
        ).hexdigest()
        for model in apps.get_models()
    }


def csrf_rejections(caplog) -> int:
    return sum(r.name == "django.security.csrf" for r in caplog.records)


def posts(ids: list[uuid.UUID]) -> Iterator[tuple[str, URLPattern, str]]:
    for route, pattern in walk():
        if route not in EXEMPT:
            for url in concrete_urls(route, ids):
                yield route, pattern, url


def test_no_view_takes_a_post_without_a_csrf_token(alice, tenant_a, caplog, tmp_path):
    ids = tenant_a_objects(tenant_a, alice, tmp_path)
    client = csrf_client(alice)
    exempt = {route for route, p in walk() if getattr(p.callback, "csrf_exempt", False)}
    assert exempt == set(EXEMPT) | CHECKED_INSIDE, "a view was made exempt from CSRF: list it here with the reason"
    before = fingerprint()
    views, requests = set(), 0
    caplog.set_level(logging.WARNING, logger="django.security.csrf")
    # The CSRF check runs before the view, which alone reads the id: the
    # objects of one model stand for the others (walk.OneKind).
    kinds = OneKind(ids)
    for route, pattern, url in posts(ids):
        if kinds.skip(route, url):
            continue
        assert resolve(url).func is pattern.callback, f"{url} does not reach {route}"
        logged = csrf_rejections(caplog)
        response = client.post(url, {"name": "changed", "email": "x@evil.test", "confirm": "1"})
        kinds.answered(route, url, response.status_code)
        requests += 1
        if response.status_code == 405:
            continue
        assert response.status_code == 403, f"POST {url} without a CSRF token answered {response.status_code}"
        assert csrf_rejections(caplog) == logged + 1, f"POST {url}: a 403, but not the CSRF check's"
        assert b"This form has expired." in response.content
        views.add(route)
    assert fingerprint() == before, "a POST without a token changed the database"
    assert client.get(reverse("contacts:index")).status_code == 200  # still logged in: the walk was real
    TALLY.update(views=len(views), requests=requests)


def test_an_upload_without_a_token_is_refused_and_nothing_is_stored(alice, settings, tmp_path):
    settings.IMPORTS_DIR = tmp_path / "imports"
    file = SimpleUploadedFile("contacts.csv", b"email\nann@example.com\n", "text/csv")
    response = csrf_client(alice).post(reverse("contacts:import_upload"), {"file": file})
    assert response.status_code == 403 and b"This form has expired." in response.content
    assert not ContactImport.objects.exists() and not Path(settings.IMPORTS_DIR).exists()


def test_the_one_click_unsubscribe_post_needs_no_token(tenant_a):
    """The one exemption works as RFC 8058 needs (see also
    tests/mailing/test_unsubscribe.py)."""
    path = unsubscribe_url("https://postroute.test", tenant_a.pk, "ann@example.com").removeprefix(
        "https://postroute.test"
    )
    assert resolve(path).route in EXEMPT
    response = Client(enforce_csrf_checks=True).post(
        path, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 200
    assert Suppression.objects.filter(tenant=tenant_a, email="ann@example.com").exists()


def test_the_login_form_refuses_a_post_without_a_token(alice):
    url = reverse("accounts:login")
    credentials = {"email": alice.user.email, "password": PASSWORD}
    browser = Client(enforce_csrf_checks=True)
    response = browser.post(url, credentials)
    assert response.status_code == 403 and b"This form has expired." in response.content
    assert "_auth_user_id" not in browser.session
    # The same browser with the form's token signs in: only the token differed.
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', browser.get(url).content).group(1).decode()
    response = browser.post(url, {**credentials, "csrfmiddlewaretoken": token})
    assert response.status_code == 302 and browser.session["_auth_user_id"] == str(alice.user.pk)
