"""What the bounce mailbox tells an organisation's webhooks (README,
"### Events"): a letter's bounce is told when it is news (a delay warning,
the letter coming back, its address gone), never again for a report that
says the same of the letter in other words; a feedback loop's complaint is
told once per letter, as `letter.complained`. Reports recorded through the
real services, events received by a real local HTTP receiver."""

import uuid

import pytest

from mailing.bounces import parser, services
from mailing.models import BounceReport
from servers.models import BounceMailbox
from tests.accounts.webhook_helpers import make_endpoint
from tests.mailing.bounce_helpers import render, sent_letters
from tests.webhook_receiver import webhook_receiver

pytestmark = pytest.mark.django_db

BOUNCES = "bounces@acme.test"


def read(tenant, letter, *names: str) -> list[BounceReport | None]:
    """Each corpus report for `letter`, as a reader records it: a message
    of its own (its own Message-ID and place in the mailbox)."""
    mailbox = BounceMailbox.objects.filter(tenant=tenant).first() or BounceMailbox.objects.create(
        tenant=tenant, host="imap.acme.test", login=BOUNCES, email=BOUNCES
    )
    return [
        services.report_record(mailbox=mailbox, source_key=f"imap:INBOX:1:{uuid.uuid4()}", parsed=parser.parse(raw))
        for raw in (render(name, letter) for name in names)
    ]


@pytest.fixture
def outsider_hears(tenant_b):
    """An endpoint of tenant B listening to everything: it must hear nothing."""
    with webhook_receiver() as other:
        make_endpoint(tenant_b, other)
        yield other
    assert other.received == []


def test_a_second_hard_report_of_a_bounced_letter_is_not_told_again(tenant_a, receiver, committed, outsider_hears):
    make_endpoint(tenant_a, receiver, events=["letter.bounced"])
    [letter] = sent_letters(tenant_a, ["gone@example.org"])
    with committed():
        # The provider's DSN, then another report of other wording for the same letter.
        reports = read(tenant_a, letter, "postfix_user_unknown.eml", "exim_user_unknown.eml")
    assert [r.kind for r in reports] == ["hard", "hard"]  # both recorded, both on the mailing's bounces
    # Before the fix: two letter.bounced events for one letter.
    [event] = receiver.events()
    assert event["data"]["letter"]["id"] == str(letter.public_id) and event["data"]["bounce"]["kind"] == "hard"


def test_a_bounce_is_told_when_it_is_news_for_the_letter(tenant_a, receiver, committed, outsider_hears):
    """A delay warning (the letter may still arrive), the letter coming back
    (a full mailbox), the address gone (hard): three pieces of news. A
    repeated warning, a second hard report, a warning after the hard one:
    nothing the tenant has not been told."""
    make_endpoint(tenant_a, receiver, events=["letter.bounced"])
    [letter] = sent_letters(tenant_a, ["ann@example.org"])
    names = [
        "postfix_delayed_connection_timed_out.eml",
        "gmail_delayed.eml",
        "postfix_mailbox_full.eml",
        "yandex_mailbox_full.eml",
        "postfix_user_unknown.eml",
        "sendmail_user_unknown.eml",
        "yandex_delayed.eml",
    ]
    reports = []
    for name in names:
        with committed():  # each report read in a pass of its own
            reports += read(tenant_a, letter, name)
    assert [r.kind for r in reports] == ["soft"] * 4 + ["hard"] * 2 + ["soft"]
    told = [
        (e["data"]["bounce"]["kind"], e["data"]["letter"]["status"], e["data"]["suppressed"]) for e in receiver.events()
    ]
    # Before the fix: seven events, one per report.
    assert told == [("soft", "sent", False), ("soft", "bounced", False), ("hard", "bounced", True)]


def test_a_refused_letter_whose_address_then_turns_out_unknown_is_told_twice(tenant_a, receiver, committed):
    make_endpoint(tenant_a, receiver, events=["letter.bounced"])
    [letter] = sent_letters(tenant_a, ["ann@example.org"])
    with committed():
        read(tenant_a, letter, "postfix_client_blocked_spamhaus.eml", "postfix_user_unknown.eml")
        read(tenant_a, letter, "outlook_com_ip_on_block_list.eml")
    assert [e["data"]["bounce"]["kind"] for e in receiver.events()] == ["refused", "hard"]


def test_a_complaint_is_told_once_per_letter(tenant_a, receiver, committed, outsider_hears):
    make_endpoint(tenant_a, receiver, events=["letter.complained"])
    [letter] = sent_letters(tenant_a, ["jane.roe@example.org"])
    with committed():
        first, second = read(tenant_a, letter, "arf_mailru_fbl_abuse.eml", "arf_yandex_fbl_headers_only.eml")
        read(tenant_a, letter, "postfix_user_unknown.eml")  # a bounce: not for this endpoint
    assert (first.kind, second.kind) == ("complaint", "complaint")
    # Before the fix: no event at all.
    [event] = receiver.events()
    assert receiver.received[0].verified and event["type"] == "letter.complained"
    assert event["data"] == {
        "letter": {"id": str(letter.public_id), "email": "jane.roe@example.org", "status": "sent"},
        "mailing": {"id": str(letter.mailing.public_id), "name": letter.mailing.name},
        "complaint": {
            "feedback_type": "abuse",
            "user_agent": "Mail.Ru FBL/1.0",
            "received_at": first.received_at.isoformat(),
        },
        "suppressed": True,
    }


def test_a_complaint_is_not_told_to_an_endpoint_of_bounces_only(tenant_a, receiver, committed):
    make_endpoint(tenant_a, receiver, events=["letter.bounced"])
    [letter] = sent_letters(tenant_a, ["jane.roe@example.org"])
    with committed():
        read(tenant_a, letter, "arf_mailru_fbl_abuse.eml")
    assert receiver.received == []
