"""Reports as an outsider meets them, read the way the bounce reader reads
them: a report of ten megabytes and one naming ten thousand recipients
through Dovecot; a refusal's reply in the organisation's language;
CommuniGate Pro's reports, which name the failed address in their own
sentence; MDaemon's with its whole session transcript; Oracle Messaging
Server's, whose reply is in X-Supplementary-Info; Zoho's, with a reply code
for a Status; and over POP3, a message with a line too long to read."""

import base64
import time
import uuid

import pytest
from django.utils import translation

from mailing.bounces import parser, readers, services, tokens
from mailing.models import BounceReport, Letter, Suppression
from servers.models import BounceMailbox
from tests.mailing.bounce_helpers import SENDER, append, folder_messages, make_mailbox, sent_letters

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
    mailbox, _ = BounceMailbox.objects.get_or_create(
        tenant=tenant, defaults={"host": "imap.acme.test", "login": BOUNCES, "email": BOUNCES}
    )
    return services.report_record(mailbox=mailbox, source_key=f"k-{uuid.uuid4()}", parsed=parser.parse(raw))


# ---------- a report of ten megabytes, one of ten thousand recipients ----------


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


@pytest.mark.django_db
def test_a_ten_megabyte_report_and_one_naming_ten_thousand_recipients_are_read_without_a_stall(
    tenant_a, dovecot_mailbox
):
    big, many = sent_letters(tenant_a, ["big@example.org", "many@example.org"])
    pdf = base64.encodebytes(b"%PDF-1.4 " * 1_200_000).decode()  # ten megabytes once encoded
    append(dovecot_mailbox, postfix_report(big.public_id, big.email, attachment=pdf))
    others = "".join(
        f"Final-Recipient: rfc822; r{i}@example.net\nAction: failed\nStatus: 5.1.1\n\n" for i in range(10_000)
    )
    append(dovecot_mailbox, postfix_report(many.public_id, many.email, blocks=others))
    mailbox = make_mailbox(tenant_a, dovecot_mailbox)

    started = time.monotonic()
    result = readers.read_mailbox(mailbox_id=mailbox.pk)

    assert result.status == "done" and result.reports == 2, result.error
    assert time.monotonic() - started < 60
    for letter in (big, many):
        letter.refresh_from_db()
        report = BounceReport.objects.get(letter=letter)
        assert (report.kind, report.matched_by, report.status) == (K.HARD, M.HEADER, "5.1.1")
        assert letter.status == Letter.Status.BOUNCED
    # Only the two letters' addresses, none of the ten thousand others.
    assert set(Suppression.objects.filter(tenant=tenant_a).values_list("email", flat=True)) == {big.email, many.email}
    assert len(folder_messages(dovecot_mailbox, "Postroute.Processed")) == 2


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


# ---------- CommuniGate Pro (common in Russia): "Failed to deliver to '<address>'" ----------


def communigate(to: str, recipient: str, module: str, reason: str) -> bytes:
    """CommuniGate Pro's report: text only, the address in quotes in its
    first sentence, the module's words on the lines after it."""
    return crlf(
        f"""Return-Path: <>
From: MAILER-DAEMON@mail.corp.example.ru
To: {to}
Subject: Undeliverable mail: Hello there
Message-ID: <{uuid.uuid4()}@mail.corp.example.ru>
MIME-Version: 1.0
Content-Type: text/plain; charset="utf-8"

Failed to deliver to '<{recipient}>'
{module} reports:
 {reason}
"""
    )


CGP = [
    ("LOCAL module(account jane)", "account is full (quota exceeded)", K.SOFT, ""),
    ("LOCAL module(account jane)", "mail receiving disabled", K.HARD, ""),
    ("Router", "unknown user account", K.HARD, ""),
    (
        "SMTP module(domain example.org)",
        "host mx.example.org [203.0.113.5] says:\n 550 5.1.1 <jane@example.org>: User unknown",
        K.HARD,
        "5.1.1",
    ),
    (
        "SMTP module(domain example.org)",
        "host mx.example.org says: 554 5.7.1 Message rejected as spam",
        K.REFUSED,
        "5.7.1",
    ),
]


@pytest.mark.parametrize(("module", "reason", "kind", "status"), CGP)
def test_communigates_report_names_its_recipient_and_keeps_the_modules_words(module, reason, kind, status):
    parsed = parser.parse(communigate(BOUNCES, "jane@example.org", module, reason))
    # Before the fix: no recipient (nor a reason, where no reply code stood), "mail receiving disabled" unknown.
    assert parsed.recipients == ["jane@example.org"]
    assert (parsed.kind, parsed.status) == (kind, status)
    assert reason.rpartition("says:")[2].strip() in parsed.diagnostic


@pytest.mark.django_db
def test_a_communigate_report_tied_by_the_token_keeps_its_reason_and_one_naming_a_recipient_is_shown(tenant_a):
    [letter] = sent_letters(tenant_a, ["jane@example.org"])
    tagged = tokens.address(BOUNCES, letter.public_id)
    report = record(tenant_a, communigate(tagged, letter.email, *CGP[0][:2]))
    letter.refresh_from_db()
    assert (report.kind, report.matched_by, report.recipient) == (K.SOFT, M.TOKEN, letter.email)
    # Before the fix: "Soft bounce: no reason given".
    assert letter.status == Letter.Status.BOUNCED and "account is full (quota exceeded)" in letter.last_reply
    # Without the token: shown as unconfirmed for its recipient (before the fix: unmatched, naming no one).
    loose = record(tenant_a, communigate(BOUNCES, letter.email, *CGP[1][:2]))
    assert (loose.letter_id, loose.matched_by, loose.recipient) == (letter.pk, M.RECIPIENT, letter.email)


# ---------- MDaemon (common in Russia): the whole session transcript ----------

MDAEMON_FAILED = "The attached message had PERMANENT fatal delivery errors!"
MDAEMON_WARNING = """The attached message had TEMPORARY non-fatal delivery errors.

--------------------------------------------------------------------------
THIS IS A WARNING MESSAGE ONLY - YOU DO NOT NEED TO RESEND YOUR MESSAGE
--------------------------------------------------------------------------

MDaemon is configured to automatically retry delivery at configured
intervals.  Subsequent attempts to deliver this message are pending."""


def mdaemon(to: str, recipient: str, message_id: str, lead: str, reply: str) -> bytes:
    """MDaemon's report as it writes it: text only, and its session with the
    remote server line by line, the greeting and the "250"s before the
    refusal and QUIT after it."""
    at = " Tue 2024-01-09 07:47:32: "
    return crlf(
        f"""Return-Path: <>
From: "MDaemon at mail.firma.example.ru" <MDaemon@mail.firma.example.ru>
To: {to}
Subject: {"Permanent" if lead == MDAEMON_FAILED else "Warning: Temporary"} Delivery Failure
Message-ID: <MDAEMON-F{uuid.uuid4().hex}.md5000@mail.firma.example.ru>
X-MDDSN-Message: Yes
Content-Type: text/plain; charset=us-ascii

--------------------------------------------------------------------------
MDaemon Delivery Status Notification - http://www.altn.com/dsn
--------------------------------------------------------------------------

{lead}

Failed address: {recipient}

--- Session Transcript ---
{at}Session 733250; child 0002
{at}Parsing message <mail.firma.example.ru\\pd90001015916.msg>
{at}*  From: {SENDER}
{at}*  To: {recipient}
{at}*  Subject: Hello there
{at}*  Size (bytes): 8303
{at}*  Message-ID: {message_id}
{at}Attempting SMTP connection to [mx.example.org:25]
{at}*  Connection established (192.168.0.15:60296 -> 203.0.113.5:25)
{at}<-- 220 mx.example.org ESMTP
{at}--> EHLO mail.firma.example.ru
{at}<-- 250-mx.example.org
{at}<-- 250-SIZE 20485760
{at}<-- 250 ENHANCEDSTATUSCODES
{at}--> MAIL From:<{SENDER}> SIZE=8303
{at}<-- 250 2.1.0 Ok
{at}--> RCPT To:<{recipient}>
{at}<-- {reply}
{at}--> QUIT
{at}<-- 221 2.0.0 Bye
--- End Transcript ---
"""
    )


USER_UNKNOWN = "550 5.1.1 <jane@example.org>: Recipient address rejected: User unknown in local recipient table"


def test_mdaemons_transcript_gives_the_refusal_not_the_greeting():
    parsed = parser.parse(mdaemon(BOUNCES, "jane@example.org", "<x@y.test>", MDAEMON_FAILED, USER_UNKNOWN))
    # Before the fix: status "220", the reason the greeting and the EHLO lines after it, kind unknown.
    assert (parsed.kind, parsed.status, parsed.diagnostic) == (K.HARD, "5.1.1", USER_UNKNOWN)


@pytest.mark.django_db
def test_mdaemons_permanent_failure_bounces_the_letter(tenant_a):
    [letter] = sent_letters(tenant_a, ["jane@example.org"])
    tagged = tokens.address(BOUNCES, letter.public_id)
    report = record(tenant_a, mdaemon(tagged, letter.email, "<x@y.test>", MDAEMON_FAILED, USER_UNKNOWN))
    letter.refresh_from_db()
    # Before the fix: an unreadable report, the letter still sent, the address kept.
    assert (report.kind, report.matched_by) == (K.HARD, M.TOKEN)
    assert letter.status == Letter.Status.BOUNCED and letter.last_reply == f"5.1.1 {USER_UNKNOWN}"
    assert Suppression.objects.filter(tenant=tenant_a, email=letter.email).exists()


@pytest.mark.django_db
def test_mdaemons_warning_leaves_the_letter_sent(tenant_a):
    [letter] = sent_letters(tenant_a, ["jane@example.org"])
    tagged = tokens.address(BOUNCES, letter.public_id)
    greylisted = "450 4.7.25 Client host rejected: cannot find your hostname, [198.51.100.7]"
    report = record(tenant_a, mdaemon(tagged, letter.email, "<x@y.test>", MDAEMON_WARNING, greylisted))
    letter.refresh_from_db()
    assert (report.kind, report.status, report.diagnostic) == (K.SOFT, "4.7.25", greylisted)
    # Before the fix: taken for a letter that came back, and the letter marked bounced while MDaemon still tries.
    assert not report.returned and letter.status == Letter.Status.SENT


@pytest.mark.django_db
def test_the_message_id_in_mdaemons_transcript_ties_the_report_to_its_letter(tenant_a):
    [letter] = sent_letters(tenant_a, ["jane@example.org"])
    ours = f"<{letter.public_id}@acme.test>"
    report = record(tenant_a, mdaemon(BOUNCES, letter.email, ours, MDAEMON_FAILED, USER_UNKNOWN))
    letter.refresh_from_db()
    # Before the fix: tied by the address alone, unconfirmed, and the letter left "sent".
    assert (report.letter_id, report.matched_by) == (letter.pk, M.MESSAGE_ID)
    assert letter.status == Letter.Status.BOUNCED


# ---------- Oracle (Sun Java System) Messaging Server: the reply in X-Supplementary-Info ----------


def oracle_messaging_dsn(letter_id: object, recipient: str, supplementary: str) -> bytes:
    """Its report: no Diagnostic-Code, the remote reply in its own
    X-Supplementary-Info field, "<host #status protocol; reply>"."""
    return crlf(
        f"""From: Internet Mail Delivery <postmaster@mail.example.net>
To: {BOUNCES}
Subject: Delivery Notification: Delivery has failed
Message-ID: <{uuid.uuid4()}@mail.example.net>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B3"

--B3
Content-Type: text/plain; charset=us-ascii

This report relates to a message you sent with the following header fields:

  Message-id: <{letter_id}@acme.test>
  Subject: Hello there

Your message cannot be delivered to the following recipients:

  Recipient address: {recipient}
  Reason: Remote SMTP server has rejected address

--B3
Content-Type: message/delivery-status

Reporting-MTA: dns;mail.example.net

Original-recipient: rfc822;{recipient}
Final-recipient: rfc822;{recipient}
Action: failed
Status: 5.0.0
Remote-MTA: dns;mx.example.org
X-Supplementary-Info: {supplementary}

--B3
Content-Type: text/rfc822-headers

{original_headers(letter_id, recipient)}
--B3--
"""
    )


SENDER_VERIFY = (
    "<mx.example.org #5.0.0 smtp; 550-Verification\n failed for <box@acme.test> 550-Unrouteable address 550 Sender\n"
    " verify failed>"
)


def test_the_reply_in_x_supplementary_info_is_the_reason():
    parsed = parser.parse(oracle_messaging_dsn(uuid.uuid4(), "jane@example.org", SENDER_VERIFY))
    # Before the fix: no reason, and a refusal of our own sender address taken for an unknown recipient.
    assert parsed.diagnostic == "550 Verification failed for <box@acme.test> Unrouteable address Sender verify failed"
    assert (parsed.kind, parsed.status) == (K.REFUSED, "5.0.0")
    unknown = oracle_messaging_dsn(
        uuid.uuid4(), "jane@example.org", "<mx.example.org #5.1.1 smtp; 550 5.1.1 No such user>"
    )
    assert (parser.parse(unknown).kind, parser.parse(unknown).diagnostic) == (K.HARD, "550 5.1.1 No such user")


@pytest.mark.django_db
def test_a_refusal_of_our_sender_in_x_supplementary_info_keeps_the_recipients_address(tenant_a):
    [letter] = sent_letters(tenant_a, ["jane@example.org"])
    report = record(tenant_a, oracle_messaging_dsn(letter.public_id, letter.email, SENDER_VERIFY))
    letter.refresh_from_db()
    assert (report.kind, report.matched_by) == (K.REFUSED, M.HEADER)
    # Before the fix: a hard bounce, and the recipient's good address suppressed.
    assert not Suppression.objects.filter(tenant=tenant_a, email=letter.email).exists()


# ---------- POP3: a message with a line longer than the client reads ----------


@pytest.mark.django_db
def test_a_message_with_a_line_too_long_for_pop3_does_not_stop_the_mailbox_for_good(tenant_a, dovecot_mailbox):
    """Anyone can mail the bounce address: one line of 1.2 MB (HTML in one
    line, a data: URI) is past what the POP3 client reads in a line."""
    [letter] = sent_letters(tenant_a, ["jane@example.org"])
    one_line = crlf(f"From: someone@example.net\nTo: {BOUNCES}\nSubject: Offer\nContent-Type: text/html\n\n<p>")
    append(dovecot_mailbox, one_line + b"x" * 1_200_000 + b"</p>\r\n")
    append(dovecot_mailbox, postfix_report(letter.public_id, letter.email))
    mailbox = make_mailbox(
        tenant_a, dovecot_mailbox, protocol=BounceMailbox.Protocol.POP3, port=dovecot_mailbox.pop3_port
    )

    result = readers.read_mailbox(mailbox_id=mailbox.pk)

    # Before the fix: "line too long" on this message at every run, and no report after it ever read.
    assert (result.status, result.reports, result.left_alone) == ("done", 1, 1), result.error
    letter.refresh_from_db()
    assert letter.status == Letter.Status.BOUNCED
    assert readers.read_mailbox(mailbox_id=mailbox.pk).status == "done"


# ---------- Zoho: "Status: 550", a Diagnostic-Code without its code ----------


def zoho_dsn(letter_id: object, recipient: str, reply: str) -> bytes:
    """Zoho Mail's report as it sends it: the reply code in Status, where
    RFC 3464 wants an enhanced code, and the reply's words alone in
    Diagnostic-Code."""
    return crlf(
        f"""From: Mail Delivery System <mailer-daemon@mx.zohomail.com>
To: {BOUNCES}
Subject: Undelivered Mail Returned to Sender
Message-ID: <{uuid.uuid4()}@mx.zohomail.com>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B4"

--B4
Content-Type: text/plain; charset=UTF-8

This message was created automatically by mail delivery software.
A message that you sent could not be delivered to one or more of its recipients. This is a permanent error.

{recipient}, ERROR CODE :550 - {reply}

--B4
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.zohomail.com
Arrival-Date: Wed, 28 May 2025 16:09:36 +0800

Original-Recipient: rfc822; {recipient}
Final-Recipient: rfc822; {recipient}
Status: 550
Action: failed
Last-Attempt-Date: 28 May 2025 08:11:19 GMT
Diagnostic-Code: {reply}
Remote-MTA: dns; mx.example.org

--B4
Content-Type: text/rfc822-headers

{original_headers(letter_id, recipient)}
--B4--
"""
    )


@pytest.mark.django_db
def test_zohos_report_keeps_its_reply_code_and_a_refusal_of_the_message_keeps_the_address(tenant_a):
    [letter] = sent_letters(tenant_a, ["jane@example.org"])
    report = record(tenant_a, zoho_dsn(letter.public_id, letter.email, "Message headers fail syntax check"))
    # Before the fix: no status, and the message's own fault taken for an unknown address (hard, suppressed).
    assert (report.kind, report.status, report.diagnostic) == (K.REFUSED, "550", "Message headers fail syntax check")
    assert not Suppression.objects.filter(tenant=tenant_a, email=letter.email).exists()
    parsed = parser.parse(
        zoho_dsn(uuid.uuid4(), "bob@example.org", "The email account that you tried to reach does not exist")
    )
    assert (parsed.kind, parsed.status) == (K.HARD, "550")


def test_a_plain_hard_bounce_that_mentions_the_message_headers_and_no_further_attempts_stays_hard():
    # The words added for Zoho's and MDaemon's reports are theirs only: a
    # report with no reply of its own, whose text says where the original's
    # headers are and that no subsequent attempts will be made, is still a
    # letter that came back to an unknown address.
    raw = crlf(
        """Return-Path: <>
From: postmaster@mx.acme.test
To: bounces@acme.test
Subject: Undeliverable: Hello there

Delivery to the following recipient failed permanently: it does not exist.

    jane@corp.test

No subsequent attempts to deliver this message will be made.
The original message headers are attached below.

From: Acme <news@acme.test>
To: jane@corp.test
Subject: Hello there
"""
    )
    report = parser.parse(raw)
    assert (report.kind, report.returned, report.recipients) == (K.HARD, True, ["jane@corp.test"])
