"""Delivery reports as real mail systems send them, against the README's
"## Bounces" promises: an SMTPUTF8 (RFC 6533) report, 8-bit fields, a
refusal of our own sender, a vague mailbox status, a report that mixes a
failure and a delay, a report that names the IDNA form of an address,
report parts sent in base64 or quoted-printable, Exim's several failed
addresses, and a person's reply with a bounce pasted into it."""

import base64
import quopri
import uuid

import pytest
from django.utils import timezone

from mailing.bounces import matching, parser, services, tokens
from mailing.models import BounceReport, Letter, Suppression
from servers.models import BounceMailbox
from tests.mailing.bounce_helpers import SENDER, sent_letters

K = BounceReport.Kind
M = BounceReport.MatchedBy
BOUNCES = "bounces@acme.test"


def crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


def dsn_report(parts: str, *, host: str = "mail.acme.test", dated: bool = False) -> bytes:
    """A Postfix-shaped multipart/report to the bounce mailbox around
    `parts` (boundary B1), from the mail daemon of `host`."""
    date = f"Date: {timezone.now():%a, %d %b %Y %H:%M:%S +0000}\n" if dated else ""
    return crlf(
        f"From: MAILER-DAEMON@{host} (Mail Delivery System)\nTo: {BOUNCES}\n"
        f"Subject: Undelivered Mail Returned to Sender\n{date}MIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B1"\n\n' + parts
    )


def original(letter_id: str, recipient: str) -> str:
    return (
        f"Return-Path: <{SENDER}>\n"
        f"From: Acme <{SENDER}>\n"
        f"To: {recipient}\n"
        "Subject: Hello there\n"
        f"Message-ID: <{letter_id}@acme.test>\n"
        f"X-Postroute-Letter: {letter_id}\n"
    )


def record(tenant, raw: bytes) -> BounceReport:
    mailbox = BounceMailbox.objects.create(tenant=tenant, host="imap.acme.test", login=BOUNCES, email=BOUNCES)
    report = services.report_record(mailbox=mailbox, source_key=f"k-{uuid.uuid4()}", parsed=parser.parse(raw))
    assert report is not None
    return report


# ---------- 1. Postfix's SMTPUTF8 bounce (RFC 6533 global DSN) ----------


def postfix_global_dsn(letter_id: str, recipient: str, to: str) -> bytes:
    """What Postfix 3.x sends back for a letter that went out with SMTPUTF8
    (Postroute does so for a non-ASCII local part): report-type
    global-delivery-status, message/global-delivery-status,
    message/global-headers, all 8bit UTF-8."""
    return crlf(
        f"""Return-Path: <>
Delivered-To: {to}
From: MAILER-DAEMON@mail.acme.test (Mail Delivery System)
To: {to}
Subject: Undelivered Mail Returned to Sender
Date: Mon, 1 Jan 2024 10:00:00 +0300
Message-Id: <20240101070000.4XyZ@mail.acme.test>
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=global-delivery-status;
	boundary="4XyZ.1704092400/mail.acme.test"
Content-Transfer-Encoding: 8bit

This is a MIME-encapsulated message.

--4XyZ.1704092400/mail.acme.test
Content-Description: Notification
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

This is the mail system at host mail.acme.test.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

                   The mail system

<{recipient}>: host mx.xn--e1afmkfd.xn--p1ai[203.0.113.5] said: 550 5.1.1
    <{recipient}>: Recipient address rejected: User unknown in local
    recipient table (in reply to RCPT TO command)

--4XyZ.1704092400/mail.acme.test
Content-Description: Delivery report
Content-Type: message/global-delivery-status
Content-Transfer-Encoding: 8bit

Reporting-MTA: dns; mail.acme.test
X-Postfix-Queue-ID: 4XyZ
X-Postfix-Sender: rfc822; {to}
Arrival-Date: Mon,  1 Jan 2024 09:59:58 +0300 (MSK)

Final-Recipient: utf-8; {recipient}
Original-Recipient: utf-8;{recipient}
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.xn--e1afmkfd.xn--p1ai
Diagnostic-Code: smtp; 550 5.1.1 <{recipient}>: Recipient address rejected: User
    unknown in local recipient table

--4XyZ.1704092400/mail.acme.test
Content-Description: Undelivered Message Headers
Content-Type: message/global-headers
Content-Transfer-Encoding: 8bit

{original(letter_id, recipient)}
--4XyZ.1704092400/mail.acme.test--
"""
    )


def test_postfix_global_dsn_is_a_hard_bounce_not_an_auto_reply():
    letter_id = str(uuid.uuid4())
    parsed = parser.parse(postfix_global_dsn(letter_id, "иван@пример.рф", BOUNCES))
    # Before the fix: an auto-reply ("a read receipt") from MAILER-DAEMON@mail.acme.test.
    assert parsed.kind == K.HARD
    assert parsed.recipients == ["иван@пример.рф"]
    assert parsed.status == "5.1.1"
    assert letter_id in parsed.letter_ids


@pytest.mark.django_db
def test_postfix_global_dsn_bounces_the_letter_and_suppresses_the_address(tenant_a):
    [letter] = sent_letters(tenant_a, ["иван@пример.рф"])
    tagged = tokens.address(BOUNCES, letter.public_id)
    raw = postfix_global_dsn(str(letter.public_id), letter.email, tagged)
    assert [tokens.read(t) for t in parser.parse(raw).envelope_tokens] == [letter.public_id]
    report = record(tenant_a, raw)
    letter.refresh_from_db()
    # The returned headers' X-Postroute-Letter ties it first; the token would too.
    assert (report.letter_id, report.matched_by) == (letter.pk, M.HEADER)
    # Before the fix: an auto-reply, the letter stayed "sent", the address was not suppressed.
    assert report.kind == K.HARD
    assert letter.status == Letter.Status.BOUNCED
    assert Suppression.objects.filter(tenant=tenant_a, email__iexact=letter.email).exists()


# ---------- 2. A non-ASCII Final-Recipient in a plain DSN ----------


def test_utf8_final_recipient_in_a_dsn_does_not_throw_away_the_report():
    """An 8-bit header value in a delivery-status block comes back from the
    email package as a Header object, not a str. Before the fix reading it
    raised, and parse() kept only the envelope: no kind, no recipient, and
    not even the X-Postroute-Letter the report carries."""
    letter_id = str(uuid.uuid4())
    raw = dsn_report(
        f"""--B1
Content-Type: text/plain; charset=utf-8

<jane@пример.рф>: host mx.xn--e1afmkfd.xn--p1ai[203.0.113.5] said: 550 5.1.1
    User unknown (in reply to RCPT TO command)

--B1
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.provider.test

Final-Recipient: rfc822; jane@пример.рф
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 User unknown

--B1
Content-Type: text/rfc822-headers

{original(letter_id, "jane@xn--e1afmkfd.xn--p1ai")}
--B1--
""",
        host="mx.provider.test",
    )
    parsed = parser.parse(raw)
    assert parsed.kind == K.HARD
    assert parsed.letter_ids == [letter_id]
    assert parsed.recipients == ["jane@пример.рф"]


# ---------- 3. Our own sender refused: the recipient is not to blame ----------

POSTFIX_SENDER_DOMAIN_NOT_FOUND = """From: MAILER-DAEMON@mail.acme.test (Mail Delivery System)
To: {to}
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B1"

--B1
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mail.acme.test.

<{rcpt}>: host mx.example.org[203.0.113.5] said: 550 5.1.8
    <{sender}>: Sender address rejected: Domain not found (in reply to
    RCPT TO command)

--B1
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mail.acme.test

Final-Recipient: rfc822; {rcpt}
Original-Recipient: rfc822;{rcpt}
Action: failed
Status: 5.1.8
Remote-MTA: dns; mx.example.org
Diagnostic-Code: smtp; 550 5.1.8 <{sender}>: Sender address rejected: Domain
    not found

--B1
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

{orig}
--B1--
"""

EXIM_SENDER_VERIFY_FAILED = """From: Mail Delivery System <Mailer-Daemon@relay.provider.test>
To: {to}
Subject: Mail delivery failed: returning message to sender
X-Failed-Recipients: {rcpt}
Auto-Submitted: auto-replied

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  {rcpt}
    host mx.example.org [203.0.113.5]
    SMTP error from remote mail server after MAIL FROM:<{sender}> SIZE=2345:
    550-Verification failed for <{sender}>
    550-Unrouteable address
    550 Sender verify failed

------ This is a copy of the message, including all the headers. ------

{orig}
Hello.
"""


@pytest.mark.parametrize("shape", [POSTFIX_SENDER_DOMAIN_NOT_FOUND, EXIM_SENDER_VERIFY_FAILED])
def test_a_refusal_of_our_sender_address_is_refused_not_hard(shape):
    rcpt, letter_id = "jane.roe@example.org", str(uuid.uuid4())
    raw = crlf(shape.format(to=BOUNCES, rcpt=rcpt, sender=SENDER, orig=original(letter_id, rcpt)))
    parsed = parser.parse(raw)
    assert parsed.recipients == [rcpt]
    # Before the fix: hard ("Domain not found", "Unrouteable address" taken as the recipient's).
    assert parsed.kind == K.REFUSED


@pytest.mark.django_db
def test_a_sender_domain_refusal_does_not_suppress_the_recipient(tenant_a):
    [letter] = sent_letters(tenant_a, ["jane.roe@example.org"])
    raw = crlf(
        POSTFIX_SENDER_DOMAIN_NOT_FOUND.format(
            to=BOUNCES, rcpt=letter.email, sender=SENDER, orig=original(str(letter.public_id), letter.email)
        )
    )
    report = record(tenant_a, raw)
    letter.refresh_from_db()
    assert report.matched_by == M.HEADER and letter.status == Letter.Status.BOUNCED
    # Before the fix: the address was suppressed as a hard bounce.
    assert not Suppression.objects.filter(tenant=tenant_a, email=letter.email).exists()


# ---------- 4. "over quota" under X.2.0 ----------


def test_over_quota_under_the_undefined_mailbox_status_5_2_0_is_soft():
    rcpt = "jane.roe@example.org"
    raw = dsn_report(
        f"""--B1
Content-Type: text/plain

<{rcpt}>: host mx.example.org[203.0.113.5] said: 552 5.2.0 <{rcpt}>:
    user is over quota (in reply to RCPT TO command)

--B1
Content-Type: message/delivery-status

Reporting-MTA: dns; mail.acme.test

Final-Recipient: rfc822; {rcpt}
Action: failed
Status: 5.2.0
Diagnostic-Code: smtp; 552 5.2.0 <{rcpt}>: user is over quota

--B1--
"""
    )
    parsed = parser.parse(raw)
    assert parsed.status == "5.2.0"
    # README: "over quota" is soft "even under a 5xx"; before the fix, hard under 5.2.0.
    assert parsed.kind == K.SOFT


# ---------- 5. One recipient failed, another delayed ----------


@pytest.mark.django_db
def test_a_delayed_block_does_not_turn_the_failed_recipients_hard_bounce_soft(tenant_a):
    [letter] = sent_letters(tenant_a, ["jane.roe@example.org"])
    raw = dsn_report(
        f"""--B1
Content-Type: text/plain

<jane.roe@example.org>: host mx.example.org[203.0.113.5] said: 550 5.1.1
    <jane.roe@example.org>: User unknown (in reply to RCPT TO command)

<john.doe@example.net>: connect to mx.example.net[198.51.100.9]:25:
    Connection timed out

--B1
Content-Type: message/delivery-status

Reporting-MTA: dns; mail.acme.test

Final-Recipient: rfc822; jane.roe@example.org
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <jane.roe@example.org>: User unknown

Final-Recipient: rfc822; john.doe@example.net
Action: delayed
Status: 4.4.1
Diagnostic-Code: X-Postfix; connect to mx.example.net[198.51.100.9]:25: Connection
    timed out

--B1
Content-Type: text/rfc822-headers

{original(str(letter.public_id), letter.email)}
--B1--
"""
    )
    report = record(tenant_a, raw)
    letter.refresh_from_db()
    assert (report.letter_id, report.status) == (letter.pk, "5.1.1")
    # Before the fix: any "delayed" block made the whole report soft, and the letter stayed sent.
    assert report.kind == K.HARD
    assert letter.status == Letter.Status.BOUNCED


# ---------- 6. IDN recipient, report in punycode ----------


@pytest.mark.django_db
def test_a_report_naming_the_idna_form_of_the_address_is_unconfirmed_not_unmatched(tenant_a):
    """Postroute sends jane@пример.рф as jane@xn--e1afmkfd.xn--p1ai, so the
    remote server's report names that; quoting nothing of the letter, it
    should still be kept as unconfirmed for that letter."""
    [letter] = sent_letters(tenant_a, ["jane@пример.рф"])
    raw = dsn_report(
        """--B1
Content-Type: text/plain

Your message could not be delivered.

--B1
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.provider.test

Final-Recipient: rfc822; jane@xn--e1afmkfd.xn--p1ai
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 User unknown

--B1--
""",
        host="mx.provider.test",
        dated=True,
    )
    report = record(tenant_a, raw)
    # Before the fix: unmatched (the address was compared in one form only).
    assert (report.letter_id, report.matched_by) == (letter.pk, M.RECIPIENT)


# ---------- 7. Report parts sent in base64 or quoted-printable ----------

DSN_FIELDS = """Reporting-MTA: dns; gw.provider.test
Arrival-Date: Mon, 1 Jan 2024 09:59:58 +0300

Final-Recipient: rfc822; {rcpt}
Original-Recipient: rfc822; {rcpt}
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.example.org
Diagnostic-Code: smtp; 550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown in virtual mailbox table
"""


def encoded_report(rcpt: str, letter_id: str, encoding: str, dsn_type: str = "message/delivery-status") -> bytes:
    """A report whose delivery-status part and returned original travel in
    `encoding`, as some gateways send every part (RFC 2046 allows only
    7bit, 8bit or binary for message/*)."""
    encode = {"base64": base64.encodebytes, "quoted-printable": quopri.encodestring}[encoding]
    fields = encode(DSN_FIELDS.format(rcpt=rcpt).encode()).decode()
    orig = encode(f"{original(letter_id, rcpt)}\nHello.\n".encode()).decode()
    return dsn_report(
        f"""--B1
Content-Type: text/plain; charset=us-ascii

Delivery to the following recipients failed.

--B1
Content-Type: {dsn_type}
Content-Transfer-Encoding: {encoding}

{fields}
--B1
Content-Type: message/rfc822
Content-Transfer-Encoding: {encoding}

{orig}
--B1--
""",
        host="gw.provider.test",
    )


@pytest.mark.parametrize("encoding", ["base64", "quoted-printable"])
@pytest.mark.parametrize("dsn_type", ["message/delivery-status", "message/global-delivery-status"])
def test_a_delivery_status_part_in_base64_or_quoted_printable_is_read(encoding, dsn_type):
    rcpt, letter_id = "jane.roe@example.org", str(uuid.uuid4())
    parsed = parser.parse(encoded_report(rcpt, letter_id, encoding, dsn_type))
    # Before the fix: the encoded text was read as the fields: no recipient, no status, kind unknown
    # (quoted-printable: a soft line break left in the reply).
    assert (parsed.kind, parsed.recipients, parsed.status) == (K.HARD, [rcpt], "5.1.1")
    assert parsed.diagnostic.endswith("User unknown in virtual mailbox table")
    # Before the fix (base64): the returned original's headers were lost with its letter id.
    assert (parsed.letter_ids, parsed.message_letter_ids) == ([letter_id], [letter_id])


@pytest.mark.django_db
def test_a_base64_report_bounces_its_letter(tenant_a):
    [letter] = sent_letters(tenant_a, ["jane.roe@example.org"])
    report = record(tenant_a, encoded_report(letter.email, str(letter.public_id), "base64"))
    letter.refresh_from_db()
    # Before the fix: kind unknown and tied by nothing Postroute chose; the letter stayed sent.
    assert (report.kind, report.letter_id, report.matched_by) == (K.HARD, letter.pk, M.HEADER)
    assert letter.status == Letter.Status.BOUNCED
    assert Suppression.objects.filter(tenant=tenant_a, email=letter.email).exists()


# ---------- 8. Exim: several failed addresses, each with its own reply ----------

EXIM_TWO_ADDRESSES = """From: Mail Delivery System <Mailer-Daemon@mx.a.example>
To: {to}
Subject: Mail delivery failed: returning message to sender
X-Failed-Recipients: {rcpt}, jane@b.example
Auto-Submitted: auto-replied

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  {rcpt}
    host mx.example.org [203.0.113.5]
    SMTP error from remote mail server after end of data:
    550 5.7.1 Message rejected as spam by Content Filtering
  jane@b.example
    generated by {rcpt}
    host mx.b.example [198.51.100.7]
    SMTP error from remote mail server after RCPT TO:<jane@b.example>:
    550 5.1.1 User unknown

------ This is a copy of the message, including all the headers. ------

{orig}
Hello.
"""


def test_the_next_failed_address_and_its_reply_are_not_the_first_ones_reply():
    rcpt, letter_id = "jane.roe@example.org", str(uuid.uuid4())
    raw = crlf(EXIM_TWO_ADDRESSES.format(to=BOUNCES, rcpt=rcpt, orig=original(letter_id, rcpt)))
    parsed = parser.parse(raw)
    assert parsed.recipients[:1] == [rcpt] and parsed.status == "5.7.1"
    # Before the fix: the reply ran on into the next address's lines, and its
    # "User unknown" made a spam refusal hard (the address suppressed).
    assert parsed.diagnostic == "550 5.7.1 Message rejected as spam by Content Filtering"
    assert parsed.kind == K.REFUSED


# ---------- 9. A person's reply with a bounce pasted into it ----------


def human_reply_pasting_a_bounce(letter_id: str, author: str) -> bytes:
    """The recipient answers our letter from Outlook, whose replies do not
    quote with ">", and pastes the bounce they got for a colleague."""
    return crlf(
        f"""Return-Path: <{author}>
From: Jane Roe <{author}>
To: {BOUNCES}
Subject: RE: Hello there
Date: Mon, 1 Jan 2024 10:00:00 +0300
Message-ID: <reply-{letter_id}@example.org>
In-Reply-To: <{letter_id}@acme.test>
References: <{letter_id}@acme.test>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

Hello, your newsletter did not reach Bob, I got this when I forwarded it:

----- The following addresses had permanent fatal errors -----
<bob@example.org>
    (reason: 550 5.1.1 <bob@example.org>... User unknown)

Please write to him at bob.smith@example.org instead.

Jane
"""
    )


def test_a_bounce_pasted_into_a_persons_reply_is_not_a_report():
    parsed = parser.parse(human_reply_pasting_a_bounce(str(uuid.uuid4()), "jane.roe@example.org"))
    # Before the fix: flufl.bounce found bob@ in the pasted text, and the reply was a hard bounce.
    assert parsed.kind is None


@pytest.mark.django_db
def test_a_bounce_pasted_into_a_reply_neither_bounces_the_letter_nor_suppresses_its_author(tenant_a):
    [letter] = sent_letters(tenant_a, ["jane.roe@example.org"])
    mailbox = BounceMailbox.objects.create(tenant=tenant_a, host="imap.acme.test", login=BOUNCES, email=BOUNCES)
    raw = human_reply_pasting_a_bounce(str(letter.public_id), letter.email)
    assert services.report_record(mailbox=mailbox, source_key="k-1", parsed=parser.parse(raw)) is None
    letter.refresh_from_db()
    # Before the fix: tied to Jane's letter by its In-Reply-To, it bounced the letter and suppressed Jane.
    assert letter.status == Letter.Status.SENT
    assert not Suppression.objects.filter(tenant=tenant_a).exists()


# ---------- 10. A report that names thousands of addresses ----------


@pytest.mark.django_db
def test_a_report_naming_thousands_of_addresses_is_matched_in_a_few_queries(tenant_a, django_assert_max_num_queries):
    """Anyone can mail the bounce address: a 'report' of 5,000 failed
    addresses (130 kB) took one query per address to look for a letter
    sent to it, a minute and a half of the reader's time for 70,000."""
    [letter] = sent_letters(tenant_a, ["jane.roe@example.org"])
    listed = "".join(f"<u{i}@example.net>:\n" for i in range(5000))
    raw = crlf(
        "From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\nTo: box@acme.test\n"
        f"Subject: Undelivered Mail Returned to Sender\n\n{listed}<{letter.email}>:\n550 5.1.1 User unknown\n"
    )
    parsed = parser.parse(raw)
    assert len(parsed.recipients) == parser.MAX_RECIPIENTS
    with django_assert_max_num_queries(parser.MAX_RECIPIENTS + 3):
        matching.match(tenant_a.pk, parsed, timezone.now())


# ---------- 11. Several recipients, each with its own outcome ----------


def several_blocks(letter_id: str, blocks: list[tuple[str, str, str, str]]) -> bytes:
    """A Postfix report whose delivery-status part holds one block per
    (recipient, action, status, reply), the first failure first, and the
    returned original's headers for `letter_id`."""
    fields = "\n".join(
        f"Final-Recipient: rfc822; {rcpt}\nOriginal-Recipient: rfc822;{rcpt}\nAction: {action}\n"
        f"Status: {status}\nDiagnostic-Code: smtp; {reply}\n"
        for rcpt, action, status, reply in blocks
    )
    return dsn_report(
        f"""--B1
Content-Type: text/plain

This is the mail system at host mail.acme.test.

--B1
Content-Type: message/delivery-status

Reporting-MTA: dns; mail.acme.test

{fields}
--B1
Content-Type: text/rfc822-headers

{original(letter_id, "list@example.org")}
--B1--
"""
    )


BLOCKS = [
    ("gone@example.org", "failed", "5.1.1", "550 5.1.1 <gone@example.org>: User unknown"),
    ("full@example.net", "delayed", "4.2.2", "452 4.2.2 <full@example.net>: Mailbox full"),
    ("fine@example.com", "delivered", "2.0.0", "250 2.0.0 Ok: queued as 4XyZ"),
    ("relay@example.com", "relayed", "2.0.0", "250 2.0.0 Ok"),
    ("alias@example.com", "expanded", "2.0.0", "250 2.0.0 Ok"),
]


@pytest.mark.parametrize(
    ("address", "kind", "status", "bounced", "suppressed"),
    [
        ("gone@example.org", K.HARD, "5.1.1", True, True),
        ("full@example.net", K.SOFT, "4.2.2", False, False),
    ],
)
@pytest.mark.django_db
def test_each_recipient_of_a_report_has_its_own_status(tenant_a, address, kind, status, bounced, suppressed):
    [letter] = sent_letters(tenant_a, [address])
    report = record(tenant_a, several_blocks(str(letter.public_id), BLOCKS))
    letter.refresh_from_db()
    # Before the fix: every recipient took the first failure's 5.1.1: a delayed
    # letter was bounced and its address suppressed as unknown.
    assert (report.letter_id, report.kind, report.status) == (letter.pk, kind, status)
    assert address in report.diagnostic
    assert (letter.status == Letter.Status.BOUNCED) is bounced
    assert Suppression.objects.filter(tenant=tenant_a, email=address).exists() is suppressed


@pytest.mark.parametrize("address", ["fine@example.com", "relay@example.com", "alias@example.com"])
@pytest.mark.django_db
def test_a_recipient_the_report_says_was_delivered_is_left_alone(tenant_a, address):
    [letter] = sent_letters(tenant_a, [address])
    mailbox = BounceMailbox.objects.create(tenant=tenant_a, host="imap.acme.test", login=BOUNCES, email=BOUNCES)
    raw = several_blocks(str(letter.public_id), BLOCKS)
    services.report_record(mailbox=mailbox, source_key="k-1", parsed=parser.parse(raw))
    letter.refresh_from_db()
    # Before the fix: the letter that arrived was bounced and its address suppressed (5.1.1 of another).
    assert letter.status == Letter.Status.SENT
    assert not Suppression.objects.filter(tenant=tenant_a).exists()
    assert not BounceReport.objects.filter(letter=letter).exclude(kind=K.AUTO_REPLY).exists()


@pytest.mark.django_db
def test_a_report_naming_only_by_address_gives_that_address_its_own_status(tenant_a):
    """Tied by nothing of ours: the recipient the tenant mailed is the
    delayed one, whose report is an unconfirmed soft one, not a hard one."""
    [letter] = sent_letters(tenant_a, ["full@example.net"])
    raw = several_blocks(str(uuid.uuid4()), BLOCKS)
    report = record(tenant_a, raw)
    assert (report.letter_id, report.matched_by) == (letter.pk, M.RECIPIENT)
    assert (report.kind, report.status, report.recipient) == (K.SOFT, "4.2.2", "full@example.net")


def test_a_report_of_deliveries_only_is_not_a_bounce():
    raw = several_blocks(str(uuid.uuid4()), BLOCKS[2:])
    # Before the fix: kept as an unreadable report ("unknown") and filed away.
    assert parser.parse(raw).kind is None


# ---------- 12. Feedback-loop complaints ----------


@pytest.mark.django_db
def test_a_complaint_suppresses_its_own_tenants_address_once_and_no_other_tenants(tenant_a, tenant_b):
    from tests.mailing.bounce_helpers import render

    [letter] = sent_letters(tenant_a, ["jane.roe@example.org"])
    raw = render("arf_mailru_fbl_abuse.eml", letter)
    theirs = BounceMailbox.objects.create(tenant=tenant_b, host="imap.b.test", login="b@b.test", email="b@b.test")
    foreign = services.report_record(mailbox=theirs, source_key="k-1", parsed=parser.parse(raw))
    # Tenant B's mailbox: its letters only; A's letter is not touched, A's list neither.
    assert foreign is not None and foreign.letter_id is None
    assert not Suppression.objects.exists()

    mailbox = BounceMailbox.objects.create(tenant=tenant_a, host="imap.acme.test", login=BOUNCES, email=BOUNCES)
    first = services.report_record(mailbox=mailbox, source_key="imap:INBOX:1:7", parsed=parser.parse(raw))
    again = services.report_record(mailbox=mailbox, source_key="pop3:uidl-7", parsed=parser.parse(raw))
    letter.refresh_from_db()
    assert (first.kind, first.matched_by, again) == (K.COMPLAINT, M.HEADER, None)
    # Before the fix: an auto-reply, kept in the inbox; the address went on getting letters.
    [suppression] = Suppression.objects.filter(tenant=tenant_a)
    assert (suppression.email, suppression.reason) == (letter.email, Suppression.Reason.COMPLAINT)
    assert letter.status == Letter.Status.SENT


# ---------- 13. The same report delivered twice, without a Message-ID ----------


@pytest.mark.django_db
def test_a_report_without_a_message_id_delivered_twice_counts_once(tenant_a):
    """qmail-send writes its bounces without a Message-ID, and a mailbox
    may get one twice (a retried LMTP delivery, a forward and the
    original): each copy has its own Received line on top, and before the
    fix each was a report of its own, the letter's bounce counted twice."""
    from tests.mailing.bounce_helpers import render

    [letter] = sent_letters(tenant_a, ["jane.roe@example.org"])
    raw = render("qmail_user_unknown.eml", letter)
    without_id = b"".join(line for line in raw.splitlines(keepends=True)[:10] if b".qmail@" not in line)
    raw = without_id + b"".join(raw.splitlines(keepends=True)[10:])
    assert b".qmail@" not in raw
    copies = [
        f"Received: from mail.oldhost.test by mx{n}.acme.test with LMTP id {n}; {n} Jan 2025\r\n".encode() + raw
        for n in (1, 2)
    ]
    mailbox = BounceMailbox.objects.create(tenant=tenant_a, host="imap.acme.test", login=BOUNCES, email=BOUNCES)
    first = services.report_record(mailbox=mailbox, source_key="imap:INBOX:1:1", parsed=parser.parse(copies[0]))
    second = services.report_record(mailbox=mailbox, source_key="imap:INBOX:1:2", parsed=parser.parse(copies[1]))
    assert first is not None and first.kind == K.HARD
    assert second is None
    assert BounceReport.objects.filter(tenant=tenant_a).count() == 1
    # Two different reports without a Message-ID are two reports.
    other = parser.parse(raw.replace(b"User unknown", b"No such user"))
    assert services.report_record(mailbox=mailbox, source_key="imap:INBOX:1:3", parsed=other) is not None


# ---------- 14. A report without a From ----------


@pytest.mark.parametrize("name", ["qmail_user_unknown.eml", "exim_user_unknown.eml", "postfix_user_unknown.eml"])
def test_a_report_without_a_from_header_is_still_read(name):
    """Some gateways pass a bounce on with no From at all (the README's
    "no From and a report's subject"). flufl.bounce's Yale detector then
    took the first of no addresses (IndexError), and that failure threw
    the whole report away: an unreadable one, tied to no letter."""
    from tests.mailing.bounce_helpers import render

    letter_id = uuid.uuid4()
    raw = render(name, recipient="jane.roe@example.org")
    raw = b"".join(line for line in raw.splitlines(keepends=True) if not line.startswith(b"From: "))
    raw = raw.replace(b"{letter_id}", str(letter_id).encode())
    parsed = parser.parse(raw)
    assert (parsed.kind, parsed.recipients[:1], parsed.status) == (K.HARD, ["jane.roe@example.org"], "5.1.1")
    assert parsed.letter_ids or parsed.message_letter_ids


# ---------- 15. Several recipients in a report without a delivery-status part ----------

QMAIL_TWO_ADDRESSES = """From: MAILER-DAEMON@mail.oldhost.test
To: {to}
Subject: failure notice
Message-ID: <{nonce}.qmail@mail.oldhost.test>

Hi. This is the qmail-send program at mail.oldhost.test.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<gone@example.org>:
203.0.113.5 does not like recipient.
Remote host said: 550 5.1.1 <gone@example.org>: User unknown
Giving up on 203.0.113.5.

<{rcpt}>:
198.51.100.9 does not like recipient.
Remote host said: 552 5.2.2 <{rcpt}>: Mailbox full
Giving up on 198.51.100.9.

--- Below this line is a copy of the message.

{orig}
Hello.
"""


@pytest.mark.django_db
def test_each_recipient_of_a_text_only_report_has_its_own_status(tenant_a):
    """qmail (and Exim, and Sendmail without a DSN) list every failed
    address with its own reply: our letter's is the full mailbox, not the
    first address's unknown user."""
    [letter] = sent_letters(tenant_a, ["full@example.net"])
    raw = crlf(
        QMAIL_TWO_ADDRESSES.format(
            to=BOUNCES, rcpt=letter.email, nonce=uuid.uuid4().hex, orig=original(str(letter.public_id), letter.email)
        )
    )
    report = record(tenant_a, raw)
    letter.refresh_from_db()
    # Before the fix: hard 5.1.1 (gone@'s), and full@ suppressed as unknown.
    assert (report.letter_id, report.kind, report.status) == (letter.pk, K.SOFT, "5.2.2")
    assert "Mailbox full" in report.diagnostic
    assert letter.status == Letter.Status.BOUNCED  # it came back; the address is kept
    assert not Suppression.objects.filter(tenant=tenant_a).exists()


# ---------- 16. A report that names only the address a recipient forwards to ----------


def forward_refused(letter_id: str, sent_to: str, target: str) -> bytes:
    """Gmail's refusal of the address our recipient forwards to (a
    .forward, a sieve redirect), sent back by the forwarding server: one
    block, whose Final-Recipient is the target, without Original-Recipient."""
    return dsn_report(
        f"""--B1
Content-Type: text/plain

This is the mail system at host mail.corp.example.

<{target}>: host gmail-smtp-in.l.google.com[142.250.0.27] said: 550-5.1.1
    The email account that you tried to reach does not exist.

--B1
Content-Type: message/delivery-status

Reporting-MTA: dns; mail.corp.example

Final-Recipient: rfc822; {target}
Action: failed
Status: 5.1.1
Remote-MTA: dns; gmail-smtp-in.l.google.com
Diagnostic-Code: smtp; 550-5.1.1 The email account that you tried to reach does not exist.

--B1
Content-Type: text/rfc822-headers

{original(letter_id, sent_to)}
--B1--
""",
        host="mail.corp.example",
    )


@pytest.mark.django_db
def test_a_report_naming_only_the_forward_target_is_about_the_letter_it_is_tied_to(tenant_a):
    """The report is tied by what Postroute put on Ann's letter: it is
    about that letter, whose every copy comes back the same way while the
    forward stands (the address named may as well be an internal form of
    Ann's own mailbox, which no report tells apart). Ann's letter bounces
    and her address is suppressed; the target, which the tenant mails in
    a mailing of its own, keeps its address and its letter."""
    [ann] = sent_letters(tenant_a, ["ann@corp.example"], name="first")
    [jane] = sent_letters(tenant_a, ["jane.forward@gmail.example"], name="second")
    report = record(tenant_a, forward_refused(str(ann.public_id), ann.email, jane.email))
    ann.refresh_from_db()
    jane.refresh_from_db()
    assert (report.letter_id, report.matched_by, report.recipient) == (ann.pk, M.HEADER, ann.email)
    assert (report.kind, report.status) == (K.HARD, "5.1.1")
    assert (ann.status, jane.status) == (Letter.Status.BOUNCED, Letter.Status.SENT)
    assert list(Suppression.objects.filter(tenant=tenant_a).values_list("email", flat=True)) == [ann.email]


@pytest.mark.django_db
def test_a_report_naming_only_the_forward_target_and_nothing_of_ours_suppresses_no_one(tenant_a):
    """The same report quoting a letter Postroute did not send: tied to the
    target's own letter by its address alone, unconfirmed; Ann's letter is
    not found, and nothing is bounced or suppressed."""
    [ann] = sent_letters(tenant_a, ["ann@corp.example"], name="first")
    [jane] = sent_letters(tenant_a, ["jane.forward@gmail.example"], name="second")
    report = record(tenant_a, forward_refused(str(uuid.uuid4()), ann.email, jane.email))
    assert (report.letter_id, report.matched_by) == (jane.pk, M.RECIPIENT)
    assert not Letter.objects.filter(tenant=tenant_a, status=Letter.Status.BOUNCED).exists()
    assert not Suppression.objects.filter(tenant=tenant_a).exists()
