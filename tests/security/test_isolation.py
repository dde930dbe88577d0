"""Tenant isolation and roles on every URL. The walk takes the URL patterns
from the resolver (not a hand list) and fills each object parameter with
every object of tenant A, real ones: a failed import with rejected rows, a
connection test with its error, a suppressed address, a bounce report, a
running mailing on the dashboard.

- An outsider (charlie, of tenant B) and an anonymous visitor get 404 (or a
  login redirect) on every object URL, no page, JSON or CSV shows them A's
  data, and A's database rows are the same afterwards.
- A plain member (bob, of A) reads every page, and the JSON and CSV
  endpoints give him A's data (so the leak check above looks at real
  bodies). Every POST to a view that needs the manager role (the view's
  tenant_required(write_roles=...) says so, and so does the policy: owners
  and admins manage the servers and the team) is refused with 403 or 405 and
  changes nothing in A's rows. A new server or team view that forgets the
  role check fails here."""

from collections import Counter

import pytest
from django.test import Client

from accounts.models import MANAGER_ROLES

from .walk import (
    DATA_TYPES,
    MANAGER_AREAS,
    OneKind,
    concrete_urls,
    is_public,
    shows_secrets,
    tenant_a_objects,
    tenant_routes,
    tenant_state,
    write_roles,
)

pytestmark = pytest.mark.django_db
STATS: Counter = Counter()


def test_no_url_leaks_tenant_a_to_an_outsider_or_a_visitor(alice, charlie, tenant_a, tmp_path):
    ids = tenant_a_objects(tenant_a, alice, tmp_path)
    before = tenant_state(tenant_a)
    anonymous = Client()
    requests = leaks = 0
    routes = tenant_routes()
    for route, pattern in routes:
        for n, url in enumerate(concrete_urls(route, ids)):
            for method in ("get", "post"):
                response = getattr(charlie.client, method)(url)
                requests += 1
                object_url = any(str(i) in url for i in ids)
                if object_url and response.status_code not in (404, 405):
                    leaks += 1
                    pytest.fail(f"{method.upper()} {url} as an outsider answered {response.status_code}")
                if shows_secrets(response):
                    pytest.fail(f"{method.upper()} {url} as an outsider shows tenant A's data")
                if n and not is_public(pattern):
                    continue  # the login redirect comes before the view reads its parameters
                response = getattr(anonymous, method)(url)
                requests += 1
                assert not shows_secrets(response), url
                if not is_public(pattern):
                    assert response.status_code in (302, 404, 405), (url, response.status_code)
                    if response.status_code == 302:
                        assert response["Location"].startswith("/accounts/login/"), url
    assert tenant_state(tenant_a) == before  # nothing of A moved
    STATS.update(requests=requests, leaks=leaks, patterns=len(routes))


def test_a_member_reads_but_every_manager_write_is_refused(alice, bob, tenant_a, tmp_path):
    ids = tenant_a_objects(tenant_a, alice, tmp_path)
    server_ids = [s.public_id for s in tenant_a.smtp_servers.all()]
    write_data = {
        "name": "Changed by bob", "sender_email": "bob@acme.test", "sender_name": "Bob", "host": "8.8.4.4",
        "port": "465", "security": "ssl", "login": "bob@acme.test", "password": "pw", "enabled": "on",
        "accept_warning": "on", "protocol": "imap", "folder": "INBOX", "direction": "up",
        "order": [str(i) for i in reversed(server_ids)], "email": "eve@evil.test", "role": "owner",
        "send_to": "eve@evil.test",
    }  # fmt: skip
    before = tenant_state(tenant_a)
    requests = refused = 0
    data_endpoints: dict[str, bool] = {}  # route -> one of its URLs carried A's data
    routes = tenant_routes()
    # A URL naming another model's object than the route's is a 404 to the
    # member's GET and the same refusal to its POST (walk.OneKind); the
    # outsider's walk above tries every object.
    kinds = OneKind(ids)
    for route, pattern in routes:
        managed = route.startswith(MANAGER_AREAS)
        roles = write_roles(pattern.callback)
        assert roles in (None, MANAGER_ROLES), (route, roles)
        statuses = set()
        for url in concrete_urls(route, ids):
            if kinds.skip(route, url):
                continue
            response = bob.client.get(url)
            kinds.answered(route, url, response.status_code)
            requests += 1
            statuses.add(response.status_code)
            if response.status_code == 302:
                assert not response["Location"].startswith("/accounts/login/"), url
            if response.get("Content-Type", "").startswith(DATA_TYPES) and response.status_code == 200:
                data_endpoints[route] = data_endpoints.get(route, False) or shows_secrets(response)
            if not (managed or roles):
                continue  # members write content: contacts, templates, mailings
            response = bob.client.post(url, write_data)
            requests += 1
            if roles:
                assert response.status_code in (403, 405), f"POST {url} as a member answered {response.status_code}"
                refused += 1
            else:
                # A view of a manager area without the role check may only
                # read, and says so (require_safe): a POST is 405.
                assert response.status_code == 405, f"POST {url}: a write without manager_required?"
        assert statuses & {200, 302, 405} and not statuses & {403, 500}, (route, statuses)
        if managed or roles:
            assert tenant_state(tenant_a) == before, f"a member's POST to /{route} changed tenant A"
    assert tenant_state(tenant_a) == before  # nor did any GET
    # The JSON and CSV endpoints answered the member with A's data: the
    # outsider's walk compares real bodies.
    assert len(data_endpoints) >= 5 and all(data_endpoints.values()), data_endpoints
    assert refused
    STATS.update(requests=requests, refused=refused)
    print(
        f"isolation: {STATS['requests']} requests across {STATS['patterns'] or len(routes)} URL patterns "
        f"(outsider, anonymous, member), {STATS['leaks']} leaks, {STATS['refused']} member writes refused"
    )
