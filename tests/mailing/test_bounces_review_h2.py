"""Reports as an outsider meets them, read the way the bounce reader reads
them: a refusal's reply in the organisation's language."""

import uuid

import pytest
from django.utils import translation

from mailing.bounces import parser, services
from mailing.models import BounceReport, Letter
from servers.models import BounceMailbox
from tests.mailing.bounce_helpers import SENDER, sent_letters

K = BounceReport.Kind
M = BounceReport.MatchedBy
BOUNCES = "bounces@acme.test"


def crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


def original_headers(letter_id: object, recipient: str) -> str:
    return (
        f"From: Acme <{SENDER}>\nTo: {recipient}\nSubject: Hello there\n"
        f"Message-ID: <{letter_id}@acme.test>\nX-Postroute-Letter: {letter_id}\n"
    )


def record(tenant, raw: bytes) -> BounceReport | None:
    mailbox = BounceMailbox.objects.create(tenant=tenant, host="imap.acme.test", login=BOUNCES, email=BOUNCES)
    return services.report_record(mailbox=mailbox, source_key=f"k-{uuid.uuid4()}", parsed=parser.parse(raw))


# ---------- a report as Postfix writes it ----------


def postfix_report(letter_id: object, recipient: str, *, blocks: str = "", attachment: str = "") -> bytes:
    """Postfix's report of one failed recipient (and `blocks` more), the
    original returned whole with `attachment` in it."""
    return crlf(
        f"""Return-Path: <>
From: MAILER-DAEMON@mail.acme.test (Mail Delivery System)
To: {BOUNCES}
Subject: Undelivered Mail Returned to Sender
Message-Id: <{uuid.uuid4()}@mail.acme.test>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B1"

--B1
Content-Type: text/plain; charset=us-ascii

<{recipient}>: host mx.example.org[203.0.113.5] said: 550 5.1.1 <{recipient}>:
    Recipient address rejected: User unknown (in reply to RCPT TO command)

--B1
Content-Type: message/delivery-status

Reporting-MTA: dns; mail.acme.test

Final-Recipient: rfc822; {recipient}
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <{recipient}>: Recipient address rejected: User unknown

{blocks}
--B1
Content-Type: message/rfc822

{original_headers(letter_id, recipient)}MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="B2"

--B2
Content-Type: text/plain

Hello!
--B2
Content-Type: application/pdf; name="price.pdf"
Content-Transfer-Encoding: base64

{attachment}
--B2--

--B1--
"""
    )


# ---------- a refusal's reply, in the organisation's language ----------


@pytest.mark.django_db
@pytest.mark.parametrize(("language", "prefix"), [("en", "Refused: "), ("ru", "Отказ: "), ("vi", "Bị từ chối: ")])
def test_a_refused_letters_reply_is_in_the_organisations_language(tenant_a, language, prefix):
    [letter] = sent_letters(tenant_a, ["jane@example.org"])
    raw = postfix_report(letter.public_id, letter.email).replace(
        b"550 5.1.1 <jane@example.org>: Recipient address rejected: User unknown",
        b"550 5.7.1 Message rejected under suspicion of SPAM",
    )
    with translation.override(language):  # as the reader runs: languages.of_organisation
        report = record(tenant_a, raw.replace(b"Status: 5.1.1", b"Status: 5.7.1"))
    letter.refresh_from_db()
    assert report.kind == K.REFUSED and letter.status == Letter.Status.BOUNCED
    # Before the fix: "Refused: ..." in English whatever the language, beside "Soft bounce: ..." translated.
    assert letter.last_reply == f"{prefix}5.7.1 550 5.7.1 Message rejected under suspicion of SPAM"
