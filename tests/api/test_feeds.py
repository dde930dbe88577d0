"""Bounces and unsubscribes since a cursor: a CRM polls with the cursor of
its last answer and gets only what came after; unconfirmed bounce
reports and other tenants' rows never appear."""

import pytest

from mailing import contacts
from mailing import mailings as services
from mailing.models import BounceReport, Letter, Mailing, Suppression
from mailing.unsubscribe import make_token
from tests.mailing.builders import make_list, make_template
from tests.servers.factories import make_server

from .conftest import problem

pytestmark = pytest.mark.django_db


def started(tenant, emails: list[str]) -> Mailing:
    mailing = Mailing(tenant=tenant, name="m", template=make_template(tenant))
    services.mailing_save(mailing=mailing, lists=[make_list(tenant, "L", emails)], servers=[make_server(tenant)])
    services.mailing_start(mailing=mailing)
    return mailing


def report(letter: Letter, n: int, **fields) -> BounceReport:
    values = {"kind": "hard", "matched_by": "header", "status": "5.1.1", "recipient": letter.email, **fields}
    return BounceReport.objects.create(tenant=letter.tenant, letter=letter, source_key=f"imap:INBOX:1:{n}", **values)


def test_bounces_since_a_cursor(api, tenant_a, tenant_b):
    mailing = started(tenant_a, ["a@example.com", "b@example.com", "c@example.com"])
    a, b, c = Letter.objects.filter(mailing=mailing).order_by("email")
    report(a, 1)
    report(b, 2, matched_by="recipient")  # unconfirmed: never acted on
    report(b, 3, kind="auto_reply")
    report(started(tenant_b, ["t@example.com"]).letters.get(), 4)
    body = api.get("/api/v1/bounces/").json()
    assert [(r["email"], r["kind"], r["status"], r["mailing"]) for r in body["results"]] == [
        ("a@example.com", "hard", "5.1.1", str(mailing.public_id))
    ]
    cursor = body["next_cursor"]
    assert api.get("/api/v1/bounces/", {"cursor": cursor}).json() == {"results": [], "next_cursor": cursor}
    report(c, 5, kind="soft", status="4.2.2")
    later = api.get("/api/v1/bounces/", {"cursor": cursor}).json()
    assert [r["email"] for r in later["results"]] == ["c@example.com"] and later["next_cursor"] != cursor


def test_a_complaint_is_in_the_bounce_feed(api, tenant_a):
    """A recipient who marked the letter as spam (a feedback loop's report
    tied to it) is news a CRM must act on, as a bounce is: it comes with
    its kind; a complaint matched only by recipient and time does not."""
    mailing = started(tenant_a, ["a@example.com", "b@example.com"])
    a, b = Letter.objects.filter(mailing=mailing).order_by("email")
    report(a, 1, kind="complaint", status="")
    report(b, 2, kind="complaint", status="", matched_by="recipient")
    body = api.get("/api/v1/bounces/").json()
    assert [(r["email"], r["kind"]) for r in body["results"]] == [("a@example.com", "complaint")]


def test_unsubscribes_since_a_cursor(api, tenant_a, tenant_b):
    contacts.unsubscribe(token=make_token(tenant_a.pk, "ann@example.com"))
    Suppression.objects.create(tenant=tenant_a, email="manual@example.com", reason="manual")
    contacts.unsubscribe(token=make_token(tenant_b.pk, "theirs@example.com"))
    body = api.get("/api/v1/unsubscribes/", {"limit": 1}).json()
    assert [r["email"] for r in body["results"]] == ["ann@example.com"]
    contacts.unsubscribe(token=make_token(tenant_a.pk, "bob@example.com"))
    later = api.get("/api/v1/unsubscribes/", {"cursor": body["next_cursor"]}).json()
    assert [r["email"] for r in later["results"]] == ["bob@example.com"]


def test_a_feed_refuses_a_bad_cursor(api):
    problem(api.get("/api/v1/unsubscribes/", {"cursor": "bad!"}), 422)
