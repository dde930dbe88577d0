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

import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.apps import apps
from django.db import models
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from accounts.models import MANAGER_ROLES, Invitation, Membership, Tenant
from mailing import mailings
from mailing.models import BounceReport, ContactImport, ImportRejection, Mailing, Suppression
from servers.models import BounceMailbox, ConnectionTest
from tests.mailing.builders import make_list, make_template
from tests.servers.factories import make_server

pytestmark = pytest.mark.django_db

# Parameters that are not object ids: signed tokens of public pages, and
# the verb of a mailing action.
PUBLIC_PREFIXES = ("accounts/verify/", "accounts/invitations/", "accounts/password-reset/", "u/")
ACTIONS = ["start", "pause", "resume", "cancel", "schedule", "unschedule"]
# The walker's own account actions, which would end the walk's session.
OWN_ACCOUNT = ("accounts/logout/", "accounts/team/leave/", "accounts/security/reset-two-factor/")
# The policy (README, Onboarding): owners and admins change the servers, the
# bounce mailbox and the team; members may look at them and work with
# contacts, templates and mailings.
MANAGER_AREAS = ("servers/", "accounts/team/")

# Tenant A's data, each where only A may see it; the data endpoints carry
# most of them.
SECRETS = [
    b"A's mailing",
    b"A-waiting-mailing",
    b"alice@acme.test",
    b"a@x.test",
    b"8.8.8.8",
    b"A-server-name",
    b"A-probe-error",
    b"A-probe-step",
    b"A-import-error",
    b"A-rejected-row",
    b"A-column",
    b"suppressed-a@x.test",
    b"bounced-a@x.test",
    b"new@acme.test",
]
DATA_TYPES = ("application/json", "text/csv")
STATS: Counter = Counter()


def walk(patterns: list | None = None, prefix: str = "") -> Iterator[tuple[str, URLPattern]]:
    for p in patterns if patterns is not None else get_resolver().url_patterns:
        if isinstance(p, URLResolver):
            yield from walk(p.url_patterns, prefix + str(p.pattern))
        elif isinstance(p, URLPattern):
            yield prefix + str(p.pattern), p


def tenant_routes() -> list[tuple[str, URLPattern]]:
    return [(r, p) for r, p in walk() if not r.startswith((*PUBLIC_PREFIXES, *OWN_ACCOUNT, "staff/"))]


def tenant_a_objects(tenant_a: Tenant, alice, tmp_path: Path) -> list[uuid.UUID]:
    server = make_server(tenant_a, name="A-server-name")
    contact_list = make_list(tenant_a, "L", ["a@x.test"])
    template = make_template(tenant_a)
    mailing = Mailing(tenant=tenant_a, name="A's mailing", template=template)
    mailings.mailing_save(mailing=mailing, lists=[contact_list], servers=[server])
    # Running, so that the dashboard's JSON carries it.
    Mailing.objects.create(tenant=tenant_a, name="A-waiting-mailing", template=template, status=Mailing.Status.WAITING)
    mailbox = BounceMailbox.objects.create(tenant=tenant_a, host="8.8.8.8", login="b@acme.test")
    probe = ConnectionTest.objects.create(
        tenant=tenant_a,
        server=server,
        status=ConnectionTest.Status.FAILED,
        steps=[{"name": "Connect", "ok": False, "ms": 3, "detail": "A-probe-step"}],
        error="A-probe-error",
    )
    failed = ContactImport.objects.create(
        tenant=tenant_a,
        file_name="a.csv",
        file_path=str(tmp_path / "gone.csv"),
        status=ContactImport.Status.FAILED,
        error="A-import-error",
        rejected=1,
    )
    ImportRejection.objects.create(contact_import=failed, line=2, reason="no address", raw="A-rejected-row;x")
    upload = tmp_path / "waiting.csv"
    upload.write_text("Email,A-column\nb@x.test,1\n")
    waiting_import = ContactImport.objects.create(
        tenant=tenant_a,
        file_name="waiting.csv",
        file_path=str(upload),
        file_size=upload.stat().st_size,
        encoding="utf-8",
        delimiter=",",
        header=["Email", "A-column"],
    )
    Suppression.objects.create(tenant=tenant_a, email="suppressed-a@x.test", reason=Suppression.Reason.MANUAL)
    report = BounceReport.objects.create(
        tenant=tenant_a, mailbox=mailbox, source_key="imap:INBOX:1:1", kind="hard", recipient="bounced-a@x.test"
    )
    objects = [
        server,
        probe,
        mailbox,
        contact_list,
        contact_list.contacts.get(),
        failed,
        waiting_import,
        template,
        mailing,
        report,
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


def shows_secrets(response) -> bool:
    content = body(response)  # read once: a streamed body is gone after
    return any(s in content for s in SECRETS)


def is_public(pattern: URLPattern) -> bool:
    return getattr(pattern.callback, "login_required", True) is False


def write_roles(view: Callable) -> frozenset | None:
    """The roles the view's tenant_required lets write: the `write_roles`
    mark the decorator sets (as Django marks login_required views), found
    through every wrapper."""
    fn: Callable | None = view
    while fn is not None:
        if hasattr(fn, "write_roles"):
            return fn.write_roles
        fn = getattr(fn, "__wrapped__", None)
    return None


def _rows(model: type[models.Model], tenant: Tenant) -> list[dict] | None:
    names = {f.name: f for f in model._meta.concrete_fields}
    if "tenant" in names:
        lookup = "tenant"
    else:
        owned = [
            n
            for n, f in names.items()
            if f.is_relation and f.related_model and any(g.name == "tenant" for g in f.related_model._meta.fields)
        ]
        if not owned:
            return None
        lookup = f"{owned[0]}__tenant"
    return list(model.objects.filter(**{lookup: tenant}).order_by("pk").values())


def tenant_state(tenant: Tenant) -> dict[str, list[dict]]:
    """Every row of every model that belongs to the tenant (directly, or
    through a parent that does), with all its columns."""
    state = {"tenant": list(Tenant.objects.filter(pk=tenant.pk).values())}
    for model in apps.get_models(include_auto_created=True):
        if (rows := _rows(model, tenant)) is not None:
            state[model._meta.label] = rows
    return state


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
    for route, pattern in routes:
        managed = route.startswith(MANAGER_AREAS)
        roles = write_roles(pattern.callback)
        assert roles in (None, MANAGER_ROLES), (route, roles)
        statuses = set()
        for url in concrete_urls(route, ids):
            response = bob.client.get(url)
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
