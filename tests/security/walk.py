"""The URL walk the security tests share: every URL pattern from the
resolver, filled with real objects of tenant A (tests/security)."""

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from django.apps import apps
from django.db import models
from django.urls import URLPattern, URLResolver, get_resolver

from accounts import api_keys
from accounts.models import Invitation, Membership, Tenant, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from mailing import mailings
from mailing.models import BounceReport, ContactImport, ImportRejection, Mailing, Suppression
from servers.models import BounceMailbox, ConnectionTest
from tests.mailing.builders import make_list, make_template
from tests.servers.factories import make_server

# Parameters that are not object ids: signed tokens of public pages, and
# the verb of a mailing action.
PUBLIC_PREFIXES = ("accounts/verify/", "accounts/invitations/", "accounts/password-reset/", "u/")
ACTIONS = ["start", "pause", "resume", "cancel", "schedule", "unschedule"]
# The walker's own account actions, which would end the walk's session.
OWN_ACCOUNT = ("accounts/logout/", "accounts/team/leave/", "accounts/security/reset-two-factor/")
# The policy (README, Onboarding): owners and admins change the servers, the
# bounce mailbox, the team and the webhooks; members may look at them and work with
# contacts, templates and mailings.
MANAGER_AREAS = ("servers/", "accounts/team/", "accounts/organisation/webhooks/")

SUPPRESSED = "suppressed-a@x.test"
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
    b"unsubscribed-a@x.test",
    b"A-hook-url",
    b"A-hook-error",
    b"A-hook-answer",
]
DATA_TYPES = ("application/json", "text/csv")


def walk(patterns: list | None = None, prefix: str = "") -> Iterator[tuple[str, URLPattern]]:
    for p in patterns if patterns is not None else get_resolver().url_patterns:
        if isinstance(p, URLResolver):
            yield from walk(p.url_patterns, prefix + str(p.pattern))
        elif isinstance(p, URLPattern):
            yield prefix + str(p.pattern), p


def tenant_routes() -> list[tuple[str, URLPattern]]:
    """The routes a session reaches; the API's answer to keys instead
    (api_routes, walked by tests/security/test_api_isolation.py)."""
    skipped = (*PUBLIC_PREFIXES, *OWN_ACCOUNT, "staff/", API_ROOT)
    return [(r, p) for r, p in walk() if not r.startswith(skipped)]


API_PREFIX = "api/v1/"
# Everything under it answers to keys, or is the API's public reference, or
# its 404 problem for a path outside v1.
API_ROOT = "api/"


def api_routes() -> list[tuple[str, URLPattern]]:
    """Every API resource route; the catch-all that answers 404 to any
    other path is not one."""
    return [(r, p) for r, p in walk() if r.startswith(API_PREFIX) and "<path:rest>" not in r]


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
    Suppression.objects.create(tenant=tenant_a, email=SUPPRESSED, reason=Suppression.Reason.MANUAL)
    report = BounceReport.objects.create(
        tenant=tenant_a, mailbox=mailbox, source_key="imap:INBOX:1:1", kind="hard", recipient="bounced-a@x.test"
    )
    endpoint = WebhookEndpoint(tenant=tenant_a, url="https://hooks.acme.example/A-hook-url", events=["letter.bounced"])
    endpoint.set_secret("whsec_A-hook-secret")
    endpoint.save()
    delivery = WebhookDelivery.objects.create(
        endpoint=endpoint, event_id=uuid.uuid4(), event_type="letter.bounced", created=endpoint.created_at
    )
    WebhookAttempt.objects.create(delivery=delivery, number=1, status_code=500, error="A-hook-error",
                                  response_body="A-hook-answer")  # fmt: skip
    objects = [
        endpoint,
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
        api_keys.api_key_create(tenant=tenant_a, by=alice.user, name="A-key", scopes=["read"])[0],
    ]
    return [o.public_id for o in objects]


def concrete_urls(route: str, ids: list[uuid.UUID]) -> list[str]:
    """Every way to fill the route's parameters with tenant A's objects."""
    fillings = {
        "<uuid:public_id>": [str(i) for i in ids],
        "<anyuuid:public_id>": [str(i) for i in ids],  # the API's: capitals too
        "<slug:action>": ACTIONS,
        "<path:email>": [SUPPRESSED],
    }
    urls = ["/" + route]
    for name, values in fillings.items():
        urls = [u.replace(name, v, 1) for u in urls for v in values] if name in route else urls
    return [u for u in urls if "<" not in u]


def kinds_of(ids: list[uuid.UUID]) -> dict[str, str]:
    """The model of each of tenant A's objects, by public id."""
    kinds = {}
    for model in apps.get_models():
        if any(field.name == "public_id" for field in model._meta.concrete_fields):
            for public_id in model.objects.filter(public_id__in=ids).values_list("public_id", flat=True):
                kinds[str(public_id)] = model._meta.label
    return kinds


class OneKind:
    """A route's id is of one model (its view looks it up in one table):
    once a URL of the route answers other than 404, the URLs naming
    objects of other models are skipped, as they answer 404 before the
    view reads anything. Those of its model are still walked."""

    def __init__(self, ids: list[uuid.UUID]) -> None:
        self.kinds = kinds_of(ids)
        self.found: dict[str, str] = {}

    def of(self, url: str) -> str | None:
        return next((kind for public_id, kind in self.kinds.items() if public_id in url), None)

    def skip(self, route: str, url: str) -> bool:
        kind, of = self.found.get(route), self.of(url)
        return kind is not None and of is not None and of != kind

    def answered(self, route: str, url: str, status: int) -> None:
        if status != 404:
            self.mark(route, url)

    def mark(self, route: str, url: str) -> None:
        """The URL is of the route's kind."""
        if (of := self.of(url)) is not None:
            self.found.setdefault(route, of)


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
