"""Reports whose words are not UTF-8, and returned headers that fold our
Message-ID, as Russian servers, old Exchange and Exim send them: appended
to a real Dovecot, read by the bounce reader, each tied to its letter with
its reason readable."""

import base64
from types import SimpleNamespace

import pytest

from mailing.bounces import parser, readers
from mailing.models import BounceReport, Letter, Suppression
from tests.mailing.bounce_helpers import SENDER, append, make_mailbox, sent_letters

K = BounceReport.Kind
M = BounceReport.MatchedBy
BOUNCES = "bounces@acme.test"
NOT_FOUND = "550 5.1.1 Пользователь не найден"
# What the parser-only tests need of a letter.
A_LETTER = SimpleNamespace(email="ivan@example.ru", public_id="0d3c5b6e-1111-4222-8333-944445555666")


def crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def postfix_dsn(letter: Letter, diagnostic: bytes, *, human: bytes = b"", human_charset: str = "") -> bytes:
    """A Russian Postfix's report whose Diagnostic-Code quotes the remote
    server's reply in its own 8-bit charset (no charset can be declared
    for a delivery-status field)."""
    charset = f"; charset={human_charset}" if human_charset else ""
    return crlf(
        b"From: MAILER-DAEMON@mx.example.ru (Mail Delivery System)\n"
        b"To: " + BOUNCES.encode() + b"\nSubject: Undelivered Mail Returned to Sender\nMIME-Version: 1.0\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="B1"\n\n'
        b"--B1\nContent-Type: text/plain"
        + charset.encode()
        + b"\nContent-Transfer-Encoding: 8bit\n\n"
        + (human or b"The mail system")
        + b"\n\n--B1\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.ru\n\n"
        b"Final-Recipient: rfc822; " + letter.email.encode() + b"\nAction: failed\nStatus: 5.1.1\n"
        b"Diagnostic-Code: smtp; " + diagnostic + b"\n\n"
        b"--B1\nContent-Type: text/rfc822-headers\n\n"
        b"From: " + SENDER.encode() + b"\nTo: " + letter.email.encode() + b"\n"
        b"Message-ID: <" + str(letter.public_id).encode() + b"@acme.test>\nSubject: Hello\n\n--B1--\n"
    )


def exim_text(letter: Letter, charset: str | None, encoding: str) -> bytes:
    """An Exim report in Russian with no delivery-status part, its body in
    `encoding` under whatever label the server wrote (or none)."""
    declared = f"Content-Type: text/plain; charset={charset}\n" if charset is not None else ""
    body = (
        "Это сообщение создано автоматически почтовой системой.\n\n"
        "Не удалось доставить сообщение одному или нескольким получателям:\n\n"
        f"  {letter.email}\n"
        f"    SMTP error from remote mail server after RCPT TO:<{letter.email}>:\n"
        f"    {NOT_FOUND}\n\n"
        "------ Это копия сообщения, включая все заголовки. ------\n\n"
        f"Message-ID: <{letter.public_id}@acme.test>\nFrom: {SENDER}\nSubject: Привет\n"
    )
    head = (
        "From: Mail Delivery System <Mailer-Daemon@mx.example.ru>\n"
        f"To: {BOUNCES}\nSubject: Mail delivery failed: returning message to sender\n"
        f"MIME-Version: 1.0\n{declared}Content-Transfer-Encoding: 8bit\n\n"
    )
    return crlf(head.encode() + body.encode(encoding))


# (charset label, the bytes' real encoding)
EXIM_LABELS = [
    ("win-1251", "cp1251"),
    ("windows1251", "cp1251"),
    ("x-cp1251", "cp1251"),
    ('"Windows-1251"', "cp1251"),
    ("koi8r", "koi8-r"),
    ("x-koi8-r", "koi8-r"),
    ("x-unknown-charset", "cp1251"),  # a label no one knows
    (None, "cp1251"),  # no charset at all, 8-bit bytes
    (None, "koi8-r"),
    ("us-ascii", "koi8-r"),  # the default that 8-bit bytes contradict
    ("utf-8", "cp1251"),  # declared UTF-8, written in Windows-1251
    ("iso-8859-1", "cp1251"),  # old Exchange: Western label on Cyrillic bytes
    ("windows-1251", "utf-8"),  # the reverse: a Cyrillic label on UTF-8
    ("utf-16", "cp1251"),  # a label that cannot decode these bytes at all
]


@pytest.mark.parametrize(("charset", "encoding"), EXIM_LABELS)
def test_a_russian_report_under_any_charset_label_keeps_its_words(charset, encoding):
    letter = A_LETTER
    parsed = parser.parse(exim_text(letter, charset, encoding))
    assert (parsed.kind, parsed.status) == (K.HARD, "5.1.1")
    assert parsed.diagnostic == NOT_FOUND


@pytest.mark.parametrize("encoding", ["cp1251", "koi8-r"])
def test_an_8bit_diagnostic_code_keeps_its_words(encoding):
    letter = A_LETTER
    parsed = parser.parse(postfix_dsn(letter, NOT_FOUND.encode(encoding)))
    assert parsed.diagnostic == NOT_FOUND


@pytest.mark.parametrize("label", ["win-1251", "windows1251", "koi8r", "x-cp1251"])
def test_an_encoded_word_subject_under_an_alias_label_is_read(label):
    letter = A_LETTER
    encoding = "koi8-r" if "koi8" in label else "cp1251"
    subject = f"=?{label}?B?{base64.b64encode('Недоставленное сообщение'.encode(encoding)).decode()}?="
    raw = exim_text(letter, "utf-8", "utf-8").replace(
        b"Mail delivery failed: returning message to sender", subject.encode()
    )
    assert parser.parse(raw).subject == "Недоставленное сообщение"


def test_random_8bit_bytes_under_every_label_never_break_the_parser():
    letter = A_LETTER
    noise = bytes(range(128, 256)) * 3
    for charset in [None, "utf-8", "koi8r", "win-1251", "utf-16", "x-bogus", "iso-2022-jp", "utf-7"]:
        raw = exim_text(letter, charset, "utf-8").replace("Пользователь не найден".encode(), noise)
        parsed = parser.parse(raw)
        assert parsed.kind == K.HARD and parsed.message_letter_ids == [str(letter.public_id)], charset


@pytest.mark.django_db
def test_8bit_reports_read_from_the_mailbox_bounce_their_letters_with_readable_reasons(tenant_a, dovecot_mailbox):
    cases = [("dsn", None, "cp1251"), ("dsn", None, "koi8-r"), *(("exim", c, e) for c, e in EXIM_LABELS)]
    letters = sent_letters(tenant_a, [f"r{i:02d}@example.ru" for i in range(len(cases))])
    for letter, (shape, charset, encoding) in zip(letters, cases, strict=True):
        if shape == "dsn":
            human = "Сообщение не доставлено".encode(encoding)
            raw = postfix_dsn(letter, NOT_FOUND.encode(encoding), human=human, human_charset="win-1251")
        else:
            raw = exim_text(letter, charset, encoding)
        append(dovecot_mailbox, raw)
    mailbox = make_mailbox(tenant_a, dovecot_mailbox)

    result = readers.read_mailbox(mailbox_id=mailbox.pk)

    assert result.status == "done", result.error
    for letter, case in zip(letters, cases, strict=True):
        letter.refresh_from_db()
        report = BounceReport.objects.get(tenant=tenant_a, letter=letter)
        # Before the fix: "550 5.1.1 ������������ �� ������" (or "Ïîëüçîâàòåëü").
        assert (report.kind, report.matched_by, report.diagnostic) == (K.HARD, M.MESSAGE_ID, NOT_FOUND), case
        assert letter.status == Letter.Status.BOUNCED and NOT_FOUND in letter.last_reply, case
        assert Suppression.objects.filter(tenant=tenant_a, email=letter.email).exists(), case


def test_a_utf8_report_quoting_a_windows_1251_reply_keeps_both():
    """Exim writes its own words in UTF-8 and quotes the remote server's
    reply as the server sent it: each line is read in its own charset."""
    raw = exim_text(A_LETTER, "utf-8", "utf-8").replace(NOT_FOUND.encode(), NOT_FOUND.encode("cp1251"))
    parsed = parser.parse(raw)
    assert parsed.diagnostic == NOT_FOUND
    assert parsed.recipients == [A_LETTER.email]


def test_latin1_german_stays_german_and_a_stray_byte_is_no_letter():
    german = "550 5.1.1 Empfänger unbekannt: Postfach existiert nicht"
    raw = exim_text(A_LETTER, "iso-8859-1", "utf-8").replace(NOT_FOUND.encode(), german.encode("latin-1"))
    assert parser.parse(raw).diagnostic == german
    stray = exim_text(A_LETTER, None, "utf-8").replace(NOT_FOUND.encode(), b"\x80550 5.1.1 User unknown")
    assert parser.parse(stray).diagnostic.endswith(": \ufffd550 5.1.1 User unknown")


# ---------- our Message-ID folded over two lines in the returned headers ----------


def _returned_headers(letter: Letter, fold: str, quote: str = "") -> str:
    """The original's headers with its Message-ID folded (`fold` starts the
    second line), each line prefixed with `quote`, nothing else of ours."""
    lines = [
        f"From: Acme <{SENDER}>",
        f"To: {letter.email}",
        "Subject: Hello there",
        "Message-ID:",
        f"{fold}<{letter.public_id}@acme.test>",
        "MIME-Version: 1.0",
    ]
    return "".join(f"{quote}{line}\n" for line in lines)


def folded_report(letter: Letter, shape: str) -> bytes:
    if shape == "message/rfc822":
        original = _returned_headers(letter, "\t") + "\nHello!\n"
    elif shape == "text/rfc822-headers":
        original = _returned_headers(letter, " ")
    dsn = (
        "--B1\nContent-Type: text/plain\n\nThe mail system\n\n"
        f"<{letter.email}>: host mx.example.org said: 550 5.1.1 User unknown\n\n"
        "--B1\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.org\n\n"
        f"Final-Recipient: rfc822; {letter.email}\nAction: failed\nStatus: 5.1.1\n"
        "Diagnostic-Code: smtp; 550 5.1.1 User unknown\n\n"
    )
    head = (
        f"From: MAILER-DAEMON@mx.example.org (Mail Delivery System)\nTo: {BOUNCES}\n"
        "Subject: Undelivered Mail Returned to Sender\nMIME-Version: 1.0\n"
    )
    if shape in ("message/rfc822", "text/rfc822-headers"):
        body = f'Content-Type: multipart/report; report-type=delivery-status; boundary="B1"\n\n{dsn}'
        body += f"--B1\nContent-Type: {shape}\n\n{original}\n--B1--\n"
    else:  # quoted in the body: qmail's "--- Below this line is a copy", a forward's "> "
        quote = "> " if shape == "quoted" else ""
        body = (
            "\nHi. This is the qmail-send program at mx.example.org.\n"
            "I'm afraid I wasn't able to deliver your message to the following addresses.\n\n"
            f"<{letter.email}>:\n550 5.1.1 User unknown\n\n--- Below this line is a copy of the message.\n\n"
            + _returned_headers(letter, "  ", quote)
        )
    return crlf((head + body).encode())


FOLDED = ["message/rfc822", "text/rfc822-headers", "inline", "quoted"]


@pytest.mark.parametrize("shape", FOLDED)
def test_a_folded_message_id_in_the_returned_headers_names_the_letter(shape):
    parsed = parser.parse(folded_report(A_LETTER, shape))
    assert parsed.message_letter_ids == [A_LETTER.public_id]


@pytest.mark.django_db
def test_reports_with_a_folded_message_id_bounce_their_letters(tenant_a, dovecot_mailbox):
    letters = sent_letters(tenant_a, [f"f{i}@example.org" for i in range(len(FOLDED))])
    for letter, shape in zip(letters, FOLDED, strict=True):
        append(dovecot_mailbox, folded_report(letter, shape))
    mailbox = make_mailbox(tenant_a, dovecot_mailbox)

    assert readers.read_mailbox(mailbox_id=mailbox.pk).status == "done"

    for letter, shape in zip(letters, FOLDED, strict=True):
        letter.refresh_from_db()
        report = BounceReport.objects.get(tenant=tenant_a, recipient=letter.email)
        # Before the fix: matched by recipient only (unconfirmed), the letter still "sent".
        assert (report.letter_id, report.matched_by, report.kind) == (letter.pk, M.MESSAGE_ID, K.HARD), shape
        assert letter.status == Letter.Status.BOUNCED, shape


# ---------- RFC 6533's utf-8 address type, escaped in a plain DSN ----------


def escaped_dsn(letter: Letter) -> bytes:
    """A plain (not global) DSN may only carry ASCII: RFC 6533 writes a
    non-ASCII address of the utf-8 type as \\x{HEX} escapes."""
    local, _at, domain = letter.email.rpartition("@")
    escaped = "".join(ch if ch.isascii() else f"\\x{{{ord(ch):04X}}}" for ch in local) + "@" + domain
    return crlf(
        (
            f"From: MAILER-DAEMON@mx.example.ru (Mail Delivery System)\nTo: {BOUNCES}\n"
            "Subject: Undelivered Mail Returned to Sender\nMIME-Version: 1.0\n"
            'Content-Type: multipart/report; report-type=delivery-status; boundary="B1"\n\n'
            "--B1\nContent-Type: text/plain\n\nThe mail system\n\n"
            "--B1\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.ru\n\n"
            f"Original-Recipient: utf-8; {escaped}\nFinal-Recipient: utf-8; {escaped}\n"
            "Action: failed\nStatus: 5.1.1\nDiagnostic-Code: smtp; 550 5.1.1 User unknown\n\n"
            f"--B1\nContent-Type: text/rfc822-headers\n\nMessage-ID: <{letter.public_id}@acme.test>\n"
            f"From: {SENDER}\n--B1--\n"
        ).encode()
    )


def test_an_escaped_utf8_final_recipient_is_the_address():
    letter = SimpleNamespace(email="иван@example.ru", public_id=A_LETTER.public_id)
    assert parser.parse(escaped_dsn(letter)).recipients == ["иван@example.ru"]


@pytest.mark.django_db
def test_a_report_naming_only_the_escaped_address_finds_its_letter(tenant_a, dovecot_mailbox):
    """Quoting nothing of ours, the address is all that ties the report to
    the letter (unconfirmed, shown, never acted on)."""
    [letter] = sent_letters(tenant_a, ["иван@example.ru"])
    raw = escaped_dsn(letter).replace(f"Message-ID: <{letter.public_id}@acme.test>".encode(), b"Subject: Hello")
    append(dovecot_mailbox, raw)
    mailbox = make_mailbox(tenant_a, dovecot_mailbox)

    assert readers.read_mailbox(mailbox_id=mailbox.pk).status == "done"

    [report] = BounceReport.objects.filter(tenant=tenant_a)
    # Before the fix the report named no recipient and matched nothing.
    assert (report.letter_id, report.matched_by, report.recipient) == (letter.pk, M.RECIPIENT, letter.email)


@pytest.mark.parametrize("header", ["Subject", "From"])
def test_an_encoded_word_cut_short_does_not_stop_the_reader(header):
    """A mailer that cuts a long subject at a fixed length leaves a base64
    encoded word of one character ("=?utf-8?B?0?="): the email package's
    decode_header raises HeaderParseError on it, which parse() let out
    (it never raises: a raise stops the mailbox at that message for good)."""
    letter = A_LETTER
    cut = "=?utf-8?B?0J3QtdC00L7RgdGC0LDQstC70LXQvdC90L7QtSDRgdC+0L7QsdGJ0LXQvdC40LU=?= =?utf-8?B?0?="
    raw = exim_text(letter, "utf-8", "utf-8")
    if header == "Subject":
        raw = raw.replace(b"Mail delivery failed: returning message to sender", cut.encode())
    else:
        raw = raw.replace(b"From: Mail Delivery System", b"From: " + cut.encode())
    parsed = parser.parse(raw)
    assert parsed.kind == K.HARD and parsed.message_letter_ids == [str(letter.public_id)]
    assert parsed.subject.startswith("Недоставленное сообщение") if header == "Subject" else parsed.sender


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("From", "Почтовая система <mailer-daemon@mx.example.ru>"),
        ("Subject", "Недоставленное сообщение"),
        ("Subject", "Thư không gửi được"),
    ],
)
def test_a_raw_utf8_header_does_not_throw_the_report_away(header, value):
    """Russian and Vietnamese mail systems write headers in raw UTF-8 (RFC
    6532 allows it). The email package hands such a value over as a Header
    object, on which flufl.bounce's detectors (and our In-Reply-To reading)
    broke; parse() then kept only the envelope: an unreadable report, tied
    to no letter."""
    letter = A_LETTER
    raw = exim_text(letter, "utf-8", "utf-8")
    old = {"From": b"Mail Delivery System <Mailer-Daemon@mx.example.ru>", "Subject": b"Mail delivery failed: "}[header]
    assert old in raw
    raw = raw.replace(old, value.encode() + (b" " if header == "Subject" else b""), 1)
    parsed = parser.parse(raw)
    assert parsed.kind == K.HARD and parsed.message_letter_ids == [str(letter.public_id)]
    assert value in (parsed.sender if header == "From" else parsed.subject)
