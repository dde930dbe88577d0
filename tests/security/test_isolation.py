"""Tenant isolation on every URL: the walk takes the URL patterns from the
resolver (not a hand list), fills each object parameter with every object of
tenant A, and requests it as an outsider (charlie, of tenant B) and as an
anonymous visitor. A new URL without tenant scoping makes this test fail."""

import uuid

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from accounts.models import Invitation, Membership
from mailing import mailings
from mailing.models import Contact, ContactImport, Mailing
from servers.models import BounceMailbox, ConnectionTest
from tests.mailing.builders import make_list, make_template
from tests.servers.factories import make_server

pytestmark = pytest.mark.django_db

# Parameters that are not object ids: signed tokens of public pages, and
# the verb of a mailing action.
PUBLIC_PREFIXES = ("accounts/verify/", "accounts/invitations/", "accounts/password-reset/", "u/")
ACTIONS = ["start", "pause", "resume", "cancel", "schedule", "unschedule"]
# The outsider's own account actions, which would end the walk's session.
OWN_ACCOUNT = ("accounts/logout/", "accounts/team/leave/", "accounts/security/reset-two-factor/")


def walk(patterns=None, prefix=""):
    for p in patterns if patterns is not None else get_resolver().url_patterns:
        if isinstance(p, URLResolver):
            yield from walk(p.url_patterns, prefix + str(p.pattern))
        elif isinstance(p, URLPattern):
            yield prefix + str(p.pattern), p


def tenant_a_objects(tenant_a, alice) -> list[uuid.UUID]:
    server = make_server(tenant_a)
    contact_list = make_list(tenant_a, "L", ["a@x.test"])
    template = make_template(tenant_a)
    mailing = Mailing(tenant=tenant_a, name="A's mailing", template=template)
    mailings.mailing_save(mailing=mailing, lists=[contact_list], servers=[server])
    objects = [
        server,
        ConnectionTest.objects.create(tenant=tenant_a, server=server),
        BounceMailbox.objects.create(tenant=tenant_a, host="8.8.8.8", login="b@acme.test"),
        contact_list,
        Contact.objects.get(tenant=tenant_a),
        ContactImport.objects.create(tenant=tenant_a, file_name="a.csv", file_path="/nonexistent/a.csv"),
        template,
        mailing,
        Membership.objects.get(user=alice.user),
        Invitation.objects.create(tenant=tenant_a, email="new@acme.test"),
    ]
    return [o.public_id for o in objects]


def concrete_urls(route: str, ids: list[uuid.UUID]) -> list[str]:
    """Every way to fill the route's parameters with tenant A's objects."""
    fillings = {"<uuid:public_id>": [str(i) for i in ids], "<slug:action>": ACTIONS}
    urls = ["/" + route]
    for name, values in fillings.items():
        urls = [u.replace(name, v, 1) for u in urls for v in values] if name in route else urls
    return [u for u in urls if "<" not in u]


def body(response) -> bytes:
    if response.streaming:
        return b"".join(response.streaming_content)
    return response.content


def is_public(pattern: URLPattern) -> bool:
    return getattr(pattern.callback, "login_required", True) is False


def test_no_url_leaks_tenant_a_to_an_outsider_or_a_visitor(alice, charlie, tenant_a):
    ids = tenant_a_objects(tenant_a, alice)
    secrets = [b"A's mailing", b"alice@acme.test", b"a@x.test", b"8.8.8.8"]
    anonymous = Client()
    requests = leaks = 0
    routes = [(r, p) for r, p in walk() if not r.startswith((*PUBLIC_PREFIXES, *OWN_ACCOUNT, "staff/"))]
    for route, pattern in routes:
        for url in concrete_urls(route, ids):
            for method in ("get", "post"):
                response = getattr(charlie.client, method)(url)
                requests += 1
                object_url = any(str(i) in url for i in ids)
                if object_url and response.status_code not in (404, 405):
                    leaks += 1
                    pytest.fail(f"{method.upper()} {url} as an outsider answered {response.status_code}")
                if any(s in body(response) for s in secrets):
                    pytest.fail(f"{method.upper()} {url} as an outsider shows tenant A's data")
                response = getattr(anonymous, method)(url)
                requests += 1
                assert not any(s in body(response) for s in secrets), url
                if not is_public(pattern):
                    assert response.status_code in (302, 404, 405), (url, response.status_code)
                    if response.status_code == 302:
                        assert response["Location"].startswith("/accounts/login/"), url
    assert Mailing.objects.get(tenant=tenant_a).status == Mailing.Status.DRAFT  # nothing moved
    print(f"isolation: {requests} requests across {len(routes)} URL patterns, {leaks} leaks")
