"""Stored data is shown escaped. A script payload goes into every text a
tenant, a contact list, a CSV file, a remote SMTP or IMAP server or a bounce
report can put on a page; then every page the resolver knows (plus the
public invitation and unsubscribe pages and the invitation email) is read,
filled with those objects.

- No text/html response carries a payload raw, nor an element the payload
  would make (a <script> running alert, an <img onerror>), which also
  catches an unquoted attribute; each field's escaped form does appear
  somewhere, so the pages really show it.
- The template's own HTML is raw by design only in the preview frame: that
  response carries a sandbox CSP without scripts, and the frame is sandboxed.
- JSON is served as JSON with nosniff, and the scripts that put it on the
  page never write HTML."""

import json
import re
import uuid
from collections import Counter
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.conf import settings
from django.core import mail
from django.utils.html import escape

from accounts import emails
from accounts.models import Invitation, Tenant
from accounts.tokens import make_invitation_token
from mailing import contacts, mailings, templates_services
from mailing.models import (
    BounceReport,
    ContactImport,
    ImportRejection,
    Letter,
    Mailing,
    MailingEvent,
    MailTemplate,
    Suppression,
)
from mailing.unsubscribe import unsubscribe_url
from servers.models import BounceMailbox, ConnectionTest, Health, SmtpServer
from tests.security.walk import OneKind, body, concrete_urls, tenant_routes
from tests.servers.factories import make_server

pytestmark = pytest.mark.django_db

PAYLOADS = {"script": "<script>alert(1)</script>", "attribute": '"><img src=x onerror=alert(1)>'}
HTML_WRITERS = re.compile(r"\.innerHTML|\.outerHTML|insertAdjacentHTML|document\.write")
STATS: Counter = Counter()


class Payloads:
    """The value of each field: its name, so that the escaped form found on
    a page names the field it came from, then every payload."""

    def __init__(self) -> None:
        self.by_field: dict[str, str] = {}

    def __call__(self, field: str) -> str:
        self.by_field[field] = f"{field}: {' '.join(PAYLOADS.values())}"
        return self.by_field[field]


class Executable(HTMLParser):
    """What a browser would run from the payloads: a script element whose
    text calls alert, an element with an onerror handler, an <img src=x>."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self.in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        if "onerror" in names or (tag == "img" and names.get("src") == "x"):
            self.found.append(f"<{tag} {attrs}>")
        self.in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self.in_script = False

    def handle_data(self, data: str) -> None:
        if self.in_script and "alert(1)" in data:
            self.found.append(f"<script>{data}</script>")


def executable(html: str) -> list[str]:
    parser = Executable()
    parser.feed(html)
    parser.close()
    return parser.found


def hostile_tenant(tenant: Tenant, alice, p: Payloads, tmp_path: Path) -> tuple[list[uuid.UUID], list[str]]:
    """Every object with payloads in its texts, made through the services
    where there is one; the public pages that show some of them."""
    Tenant.objects.filter(pk=tenant.pk).update(name=p("tenant.name"))
    alice.user.full_name = p("user.full_name")
    alice.user.save(update_fields=["full_name"])
    server = make_server(tenant, name=p("server.name"), sender_name=p("server.sender_name"))
    SmtpServer.objects.filter(pk=server.pk).update(health=Health.FAILING, health_error=p("server.health_error"))
    probe = ConnectionTest.objects.create(
        tenant=tenant,
        server=server,
        status=ConnectionTest.Status.FAILED,
        steps=[{"name": "Connect", "ok": False, "ms": 3, "detail": p("probe.step")}],
        error=p("probe.error"),
        hint=p("probe.hint"),
        finished_at=server.created_at,
    )
    mailbox = BounceMailbox.objects.create(
        tenant=tenant, host="imap.acme.test", login=p("mailbox.login"), last_error=p("mailbox.last_error")
    )
    contact_list = contacts.list_create(tenant=tenant, name=p("list.name"))
    field = contacts.custom_field_create(tenant=tenant, label=p("field.label"))
    contact = contacts.contact_create(
        tenant=tenant,
        email="ann@acme.org",
        first_name=p("contact.first_name"),
        last_name=p("contact.last_name"),
        fields={field.key: p("contact.custom")},
        lists=[contact_list],
    )
    contacts.suppression_add(
        tenant=tenant, email="gone@acme.org", reason=Suppression.Reason.MANUAL, note=p("suppression.note")
    )
    template = templates_services.template_save(
        template=MailTemplate(
            tenant=tenant,
            name=p("template.name"),
            subject=p("template.subject"),
            text_body=p("template.text_body") + " {{ unsubscribe_url }}",
            html_body="<p>{{ first_name }}</p>" + p("template.html_body"),
            sender_name=p("template.sender_name"),
        )
    )
    mailing = Mailing(tenant=tenant, name=p("mailing.name"), template=template)
    mailings.mailing_save(mailing=mailing, lists=[contact_list], servers=[server])
    mailings.mailing_start(mailing=mailing)
    MailingEvent.objects.filter(mailing=mailing).update(note=p("event.note"))
    letter = Letter.objects.get(mailing=mailing)
    Letter.objects.filter(pk=letter.pk).update(status=Letter.Status.FAILED, last_reply=p("letter.last_reply"))
    reports = [
        BounceReport.objects.create(
            tenant=tenant,
            mailbox=mailbox,
            source_key=f"imap:INBOX:1:{n}",
            letter=matched,
            kind=BounceReport.Kind.HARD,
            recipient=p(f"report{n}.recipient"),
            status="5.1.1",
            diagnostic=p(f"report{n}.diagnostic"),
            sender=p(f"report{n}.sender"),
            subject=p(f"report{n}.subject"),
            headers_excerpt=p(f"report{n}.headers"),
        )
        for n, matched in enumerate([letter, None])
    ]
    failed = ContactImport.objects.create(
        tenant=tenant,
        file_name=p("import.file_name"),
        file_path=str(tmp_path / "gone.csv"),
        status=ContactImport.Status.FAILED,
        error=p("import.error"),
        rejected=1,
    )
    ImportRejection.objects.create(contact_import=failed, line=2, reason=p("rejection.reason"), raw=p("rejection.raw"))
    upload = tmp_path / "waiting.csv"
    upload.write_text("Email,Column\n")
    waiting = ContactImport.objects.create(
        tenant=tenant,
        file_name=p("upload.file_name"),
        file_path=str(upload),
        encoding="utf-8",
        delimiter=",",
        header=["Email", p("upload.column")],
    )
    invitation = Invitation.objects.create(tenant=tenant, email="new@acme.org", invited_by=alice.user)
    objects = [server, probe, mailbox, contact_list, contact, template, mailing, *reports, failed, waiting]
    public = [
        f"/accounts/invitations/{make_invitation_token(invitation)}/",
        unsubscribe_url("", tenant.pk, contact.email),
    ]
    return [o.public_id for o in objects], public


@pytest.fixture(scope="module", autouse=True)
def summary() -> Iterator[None]:
    yield
    print(f"\nescaping: {STATS['pages']} pages x {len(PAYLOADS)} payloads, {STATS['unescaped']} unescaped")


def test_every_page_shows_the_payloads_escaped(alice, tenant_a, tmp_path):
    p = Payloads()
    ids, public = hostile_tenant(tenant_a, alice, p, tmp_path)
    shown: set[str] = set()
    pages = 0
    kinds = OneKind(ids)
    urls = [(route, u) for route, _ in tenant_routes() for u in concrete_urls(route, ids)] + [("", u) for u in public]
    for route, url in urls:
        if kinds.skip(route, url):
            continue
        response = alice.client.get(url)
        kinds.answered(route, url, response.status_code)
        kind = response.get("Content-Type", "")
        if response.status_code != 200 or not kind.startswith("text/html"):
            continue
        html = body(response).decode()
        if "/preview/html/" in url:
            continue  # the template's own HTML, in the sandboxed frame (next test)
        pages += 1
        raw = [name for name, payload in PAYLOADS.items() if payload in html]
        found = executable(html)
        if raw or found:
            STATS["unescaped"] += 1
            pytest.fail(f"{url} shows the {raw} payload unescaped: {found}")
        shown |= {field for field, value in p.by_field.items() if escape(value) in html}
    missing = set(p.by_field) - shown
    assert not missing, f"no page shows {sorted(missing)}: the test would not see them unescaped"
    assert pages >= 30
    STATS["pages"] = pages


def test_json_is_served_as_json_and_written_as_text(alice, tenant_a, tmp_path):
    p = Payloads()
    ids, _ = hostile_tenant(tenant_a, alice, p, tmp_path)
    encoded = [json.dumps(value)[1:-1].encode() for value in p.by_field.values()]
    carried: dict[str, bool] = {}  # route -> one of its answers carries a payload
    for route in [r for r, _ in tenant_routes() if r.endswith(".json")]:
        for url in concrete_urls(route, ids):
            response = alice.client.get(url)
            if response.status_code == 200:
                assert response["Content-Type"] == "application/json", url
                assert response["X-Content-Type-Options"] == "nosniff", url
                carried[route] = carried.get(route, False) or any(e in response.content for e in encoded)
    assert len(carried) >= 3 and all(carried.values()), carried
    scripts = sorted((Path(settings.BASE_DIR) / "static" / "js").glob("*.js"))
    assert scripts
    for script in scripts:
        assert not HTML_WRITERS.search(script.read_text()), f"{script.name} writes HTML"


def test_the_html_preview_runs_no_script(alice, tenant_a, tmp_path):
    p = Payloads()
    hostile_tenant(tenant_a, alice, p, tmp_path)
    template = MailTemplate.objects.get(tenant=tenant_a)
    page = alice.client.get(f"/templates/{template.public_id}/preview/").content.decode()
    frames = re.findall(r"<iframe\b[^>]*>", page)
    assert len(frames) == 1 and re.search(r'\ssandbox=""', frames[0]), frames
    assert "allow-scripts" not in frames[0]
    response = alice.client.get(f"/templates/{template.public_id}/preview/html/")
    html = response.content.decode()
    # The tenant's own markup is raw (it is the letter) ...
    assert p.by_field["template.html_body"] in html
    # ... the contact's data in it is escaped ...
    assert escape(p.by_field["contact.first_name"]) in html and p.by_field["contact.first_name"] not in html
    # ... and the browser runs none of it.
    policy = [d.strip() for d in response["Content-Security-Policy"].split(";")]
    assert "sandbox" in policy and "default-src 'none'" in policy, policy
    assert not any(d.startswith("script-src") for d in policy), policy
    assert "frame-ancestors 'none'" not in policy  # the preview page may frame it
    assert response["X-Frame-Options"] == "SAMEORIGIN"


def test_the_invitation_email_shows_the_tenant_name_escaped(alice, tenant_a, tmp_path):
    p = Payloads()
    hostile_tenant(tenant_a, alice, p, tmp_path)
    invitation = Invitation.objects.get(tenant=tenant_a)
    emails.invitation(invitation=invitation, base_url="http://testserver")
    html = mail.outbox[-1].alternatives[0][0]
    # The name as platform mail shows any name (cut short, no host names).
    shown = emails.neutralised(p.by_field["tenant.name"])
    assert "<" in shown and escape(shown) in html
    assert shown not in html and not executable(html)
