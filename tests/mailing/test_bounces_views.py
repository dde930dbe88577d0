"""The bounce pages: a mailing's bounces, the tenant's unmatched reports,
one report, the bounce mailbox card and form; outsiders get 404."""

import pytest
from django.urls import include, path, reverse

from config.urls import urlpatterns as project_urls
from mailing.bounces import parser, services
from mailing.models import BounceReport, Suppression
from servers.models import BounceMailbox

from .bounce_helpers import render, sent_letters

# Until config/urls.py includes the bounce pages, the tests do it themselves.
urlpatterns = [path("bounces/", include("mailing.urls_bounces")), *project_urls]
pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]


@pytest.fixture
def reports(tenant_a):
    """A hard bounce of a letter, a soft one, and an unmatched report."""
    mailbox = BounceMailbox(tenant=tenant_a, host="imap.acme.test", login="bounces@acme.test", reports_found=3)
    mailbox.save()
    hard, soft = sent_letters(tenant_a, ["hard@example.org", "soft@example.org"])
    made = {}
    for key, raw in {
        "hard": render("postfix_user_unknown.eml", hard),
        "soft": render("greylisting_delayed.eml", soft),
        "unmatched": render("gmail_account_does_not_exist.eml", recipient="stranger@example.org"),
    }.items():
        made[key] = services.report_record(mailbox=mailbox, source_key=key, parsed=parser.parse(raw))
    return made


def test_the_mailing_page_shows_its_bounces(alice, reports):
    mailing = reports["hard"].letter.mailing
    page = alice.client.get(reverse("mailings:detail", args=[mailing.public_id])).content.decode()
    assert "Bounces" in page and "1 hard" in page and "1 soft" in page
    assert "hard@example.org" in page and "User unknown" in page and "Greylisted" in page

    full = alice.client.get(reverse("bounces:mailing", args=[mailing.public_id]))
    assert full.status_code == 200
    assert [r.recipient for r in full.context["page"].object_list] == ["soft@example.org", "hard@example.org"]


def test_the_unmatched_page_lists_only_unmatched_reports(bob, reports):
    response = bob.client.get(reverse("bounces:unmatched"))
    assert response.status_code == 200
    assert list(response.context["page"].object_list) == [reports["unmatched"]]
    assert "stranger@example.org" in response.content.decode()


def test_a_report_page_shows_the_reason(bob, reports):
    response = bob.client.get(reverse("bounces:report", args=[reports["hard"].public_id]))
    assert response.status_code == 200
    assert "5.1.1" in response.content.decode()


def test_outsiders_get_404_on_every_bounce_page(charlie, reports):
    mailing = reports["hard"].letter.mailing
    for url in (
        reverse("bounces:report", args=[reports["hard"].public_id]),
        reverse("bounces:report", args=[reports["unmatched"].public_id]),
        reverse("bounces:mailing", args=[mailing.public_id]),
    ):
        assert charlie.client.get(url).status_code == 404, url
    response = charlie.client.get(reverse("bounces:unmatched"))
    assert list(response.context["page"].object_list) == []


def test_the_mailbox_card_shows_reading_state(alice, reports):
    BounceMailbox.objects.update(last_error="The mailbox refused the login or password (AUTHENTICATE failed).")
    page = alice.client.get(reverse("servers:list")).content.decode()
    assert "Reports found" in page and ">3" in page
    assert "Last read" in page and "not yet" in page
    assert "AUTHENTICATE failed" in page
    assert reverse("bounces:unmatched") in page


def test_the_mailbox_form_saves_pop3_and_deletion(alice, tenant_a):
    data = {"email": "bounces@acme.test", "protocol": "pop3", "host": "pop.acme.test", "port": "995",
            "security": "ssl", "login": "bounces@acme.test", "password": "pw", "folder": "INBOX",
            "delete_after_processing": "on", "enabled": "on"}  # fmt: skip
    assert alice.client.post(reverse("servers:mailbox"), data).status_code == 302
    mailbox = BounceMailbox.objects.get(tenant=tenant_a)
    assert (mailbox.protocol, mailbox.delete_after_processing) == ("pop3", True)


def test_unmatched_reports_change_nothing(tenant_a, reports):
    assert reports["unmatched"].letter is None
    assert not tenant_a.suppressions.filter(email="stranger@example.org").exists()
    assert BounceReport.objects.filter(tenant=tenant_a, letter__isnull=False).count() == 2


def test_the_mailbox_form_offers_the_tagged_return_address_on_by_default(alice, tenant_a):
    form = alice.client.get(reverse("servers:mailbox")).context["form"]
    assert form["plus_addressing"].value() is True
    data = {"email": "bounces@acme.test", "host": "imap.acme.test", "port": "993", "security": "ssl",
            "login": "bounces@acme.test", "password": "pw", "folder": "INBOX", "enabled": "on"}  # fmt: skip
    alice.client.post(reverse("servers:mailbox"), data)  # a mailbox that takes no plus-addresses: unticked
    assert BounceMailbox.objects.get(tenant=tenant_a).plus_addressing is False
    page = alice.client.get(reverse("servers:list")).content.decode()
    assert "bounces@acme.test (letters sent through a server that allows sender substitution)" in page


def test_a_complaint_shows_on_the_mailing_and_its_report_page_and_the_suppressions(alice, reports, tenant_a):
    mailbox = BounceMailbox.objects.get(tenant=tenant_a)
    letter = reports["hard"].letter.mailing.letters.get(email="soft@example.org")
    complaint = services.report_record(
        mailbox=mailbox, source_key="fbl", parsed=parser.parse(render("arf_mailru_fbl_abuse.eml", letter))
    )
    assert complaint.kind == BounceReport.Kind.COMPLAINT
    full = alice.client.get(reverse("bounces:mailing", args=[letter.mailing.public_id]))
    assert full.status_code == 200 and "Complaint (marked as spam)" in full.content.decode()
    page = alice.client.get(reverse("bounces:report", args=[complaint.public_id]))
    assert page.status_code == 200 and "Mail.Ru FBL" in page.content.decode()
    assert Suppression.objects.get(tenant=tenant_a, email="soft@example.org").reason == "complaint"
    # The summary counts bounced letters: the complaint's letter arrived.
    assert "1 hard" in alice.client.get(reverse("mailings:detail", args=[letter.mailing.public_id])).content.decode()
