"""Understanding one message from a bounce mailbox: is it a delivery report
(for which recipient, why, and what the provider means by it), an
auto-reply, or something a human wrote that we must leave alone?

1. A report is found by its RFC 3464 delivery-status part (or RFC 6533's
   global one, for a letter sent with SMTPUTF8), by flufl.bounce (which
   knows the non-standard formats: Exim, qmail, Exchange...), or by a mail
   daemon's sender and subject.
2. The recipient comes from the delivery-status part, else flufl.bounce,
   else the report's own text (the lines where Exchange, Yahoo, qmail, Exim
   and Sendmail name it), never an address of ours or a help address.
3. The status and the diagnostic are the remote server's: the DSN fields,
   else its reply quoted in the text ("said: 550 5.1.1 ..."). A status code
   in a help sentence is not a reply, and none is invented: a bare "450"
   stays the reply code 450.
4. The kind is what the provider means (RFC 3463): an unknown address or
   domain is hard; a full mailbox (X.2.2) or a delay is soft; a refusal of
   the message, of our sender address or of our server (policy, spam,
   content, size) is *refused*: the letter failed, but nothing says the
   address is bad. A report naming several recipients says something of
   each (ParsedReport.about): its own block, or the reply after it.
   A feedback loop's report (RFC 5965 ARF) is a *complaint*.
5. What ties it to a letter: the X-Postroute-Letter header and the
   Message-ID of the returned original, and the envelope token in the
   address the report was sent to (mailing.bounces.tokens).

Nothing here touches the database."""

from __future__ import annotations

import email
import hashlib
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from email.errors import HeaderParseError
from email.header import Header, decode_header
from email.message import Message
from email.parser import BytesParser
from email.policy import Compat32
from email.utils import getaddresses, parseaddr, parsedate_to_datetime
from typing import TypeVar

from flufl.bounce._scan import _DETECTORS

from servers import charsets
from servers.errors import is_blacklisting, server_words

from ..addresses import address_forms
from . import tokens
from .html_text import html_text

log = logging.getLogger(__name__)
# flufl.bounce.all_failures, one detector at a time: its own loop lets the
# first detector that raises throw the whole verdict away.
DETECTORS = tuple(_DETECTORS)
# flufl.bounce logs every detector it tries at INFO: one line per detector
# per message would drown the worker's log.
logging.getLogger("flufl.bounce").setLevel(logging.WARNING)

HARD, SOFT, REFUSED, AUTO_REPLY, UNKNOWN = "hard", "soft", "refused", "auto_reply", "unknown"
COMPLAINT = "complaint"
# RFC 5965's feedback types a recipient's "this is spam" (or "phishing") sends.
COMPLAINT_TYPES = ("abuse", "fraud")
# RFC 3464's report and its RFC 6533 twin for mail sent with SMTPUTF8.
DSN_TYPES = ("message/delivery-status", "message/global-delivery-status")
# Attached originals (and their headers), whose text is not the report's.
ORIGINAL_TYPES = ("message/rfc822", "message/global")

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# The lines that fold a header of the returned original, as it was
# (indented) or quoted by a forward ("> " then the indent, or "> <id>"):
# mail systems fold a long Message-ID onto the next line.
_FOLDED = r"(?:\n(?:[ \t]*>)*(?:[ \t]*<|[ \t]{2,}|\t).*)*"
# Inline copies of the original are sometimes indented or quoted.
LETTER_HEADER_RE = re.compile(rf"^[ \t>]*X-Postroute-Letter:(?P<value>.*{_FOLDED})", re.IGNORECASE | re.MULTILINE)
LETTER_ID_RE = re.compile(rf"^\W*({UUID})", re.IGNORECASE)
# Our Message-IDs are <public_id@domain> (mailing.dispatch.messages.build_message).
OUR_MESSAGE_ID_RE = re.compile(rf"<({UUID})@[^>\s]+>", re.IGNORECASE)
# The time that starts each line of MDaemon's session transcript, which
# names the letter it tried: " Tue 2024-01-09 07:47:32: *  Message-ID: <...>".
_TRANSCRIPT_AT = r"[ \t]*[A-Z][a-z]{2} \d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?: "
MESSAGE_ID_FIELD_RE = re.compile(
    rf"^(?:[ \t>]*|{_TRANSCRIPT_AT}\*[ \t]+)(?:Message-ID|In-Reply-To|References):(?P<value>.*{_FOLDED})",
    re.IGNORECASE | re.MULTILINE,
)
MESSAGE_ID_IN_FIELD_RE = re.compile(rf"<({UUID})@", re.IGNORECASE)
# Not inside an IP address or a version number such as 192.5.1.1.
ENHANCED_STATUS_RE = re.compile(r"(?<![\w.])([245])\.(\d{1,3})\.(\d{1,3})(?!\.?\d)")
# The remote server's reply quoted in a report: a reply code (and its
# enhanced status) at the start of a line, or after the words that
# introduce a reply ("said:", "returned '", "reason:", "Ответ сервера:"), or
# in quotes: Exchange quotes it in every language, whatever words come
# before or after it ("Máy chủ từ xa đã trả về '550 ...'", "Der Remoteserver
# hat '550 ...' zurückgegeben"), or a session transcript's server line
# (MDaemon's "<-- 550 ...", Sendmail's "<<< 550 ..."). "see DSN 5.1.10
# Errors in ..." is a help sentence, not a reply.
_REPLY_LEAD = (
    r"(?:^[ \t>]*|(?:said|returned|reason|error|response|responded|reply|replied|answer|ответ\w*)\W{0,4}"
    r"|вернул\w*\W{0,4}|[:('\"‘“«]\s*|;\s*|(?:<--|<<<)[ \t]*)"
)
REPLY_RE = re.compile(
    _REPLY_LEAD + r"#?(?P<code>[245]\d\d)(?:[ -]#?(?P<status>[245]\.\d{1,3}\.\d{1,3}))?(?=[\s\-',;:)]|$)",
    re.IGNORECASE | re.MULTILINE,
)
# A line of MDaemon's session transcript: " Tue 2022-08-09 07:47:32: <-- 550 ...".
TRANSCRIPT_LINE_RE = re.compile(_TRANSCRIPT_AT)
# Exchange and qmail write the enhanced status alone: "#5.1.1 smtp;550 ...", "(#5.1.1)".
QUOTES = {"'": "'", '"': '"', "‘": "’", "“": "”", "«": "»"}
HASH_STATUS_RE = re.compile(r"(?:^[ \t]*|[\s(<'])#(?P<status>[245]\.\d{1,3}\.\d{1,3})(?![\d.]\d)", re.MULTILINE)

ADDRESS = r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+"
ALONE = rf"[ \t]*<?{ADDRESS}>?[ \t]*:?[ \t]*"  # a line that is only an address
# Where reports without a delivery-status part name the failed recipient:
# a line that is only the address (Exim, qmail, Yahoo, Sendmail, Yandex;
# Exchange's "jane@x (jane@x)"), a line that starts with "<address>:"
# (Postfix, qmail) or "<address>..." (Sendmail's transcript), or the
# sentence around it (CommuniGate Pro's "Failed to deliver to '<address>'").
RECIPIENT_RES = (
    re.compile(rf"^[ \t]*<?(?P<addr>{ADDRESS})>?(?:[ \t]*\(<?{ADDRESS}>?\))?[ \t]*:?[ \t]*$", re.MULTILINE),
    re.compile(rf"^[ \t]*<(?P<addr>{ADDRESS})>(?::|\.\.\.)", re.MULTILINE),
    re.compile(
        r"(?:message to|delivered to|delivery to|deliver to|recipient:|RCPT TO:|адресу|получателю)"
        rf"\s*['\"]?<?(?P<addr>{ADDRESS})>?",
        re.IGNORECASE,
    ),
)
# Addresses of mail systems and help desks, never a letter's recipient.
SERVICE_LOCAL_PARTS = re.compile(
    r"^(mailer-daemon|mail-daemon|postmaster|abuse|support|help|helpdesk|hostmaster|webmaster|noreply|no-reply"
    r"|donotreply|do-not-reply|root|mdaemon|security)$",
    re.IGNORECASE,
)

DAEMON_SENDERS = ("mailer-daemon", "postmaster", "mail delivery", "mail-daemon", "mdaemon")
REPORT_SUBJECTS = re.compile(
    r"undeliver|undelivered|delivery status notification|delivery failure|delivery has failed|"
    r"mail delivery failed|returned mail|failure notice|could not be delivered|delayed mail|"
    r"delivery delayed|warning: message|could not send message|недоставленное|недоставляемое|не доставлено|"
    r"не может быть доставлено|"
    r"не удалось доставить|không gửi được|không thể gửi",
    re.IGNORECASE,
)
AUTO_REPLY_SUBJECTS = re.compile(
    r"^(?:(?:re|aw|sv|ответ)\s*:\s*)?(out of (the )?office|automatic reply|auto[- ]?reply|autoreply|auto response|"
    r"autoresponse|vacation|away from (the )?office|abwesenheit|"
    r"абонент|автоответ|автоматический ответ|нет на месте|в отпуске|отпуск|отсутствую|"
    r"trả lời tự động|thư trả lời tự động|tự động trả lời|vắng mặt|thông báo vắng mặt|(?:tôi )?đang đi vắng"
    r"|đi vắng|đang nghỉ phép)",
    re.IGNORECASE,
)
AUTO_REPLY_HEADERS = ("X-Autoreply", "X-Autorespond", "X-Autogenerated", "X-Mail-Autoreply")

# What the words of a reply mean when the status alone does not say.
UNKNOWN_WORDS = re.compile(
    r"user unknown|unknown user|unknown recipient|no such (user|mailbox|recipient|address|account)"
    r"|does not exist|doesn'?t exist|not exist|user not found|recipient not found|recipientnotfound"
    r"|recipnotfound|address not found|couldn'?t be found|mailbox (not found|unavailable|disabled)"
    r"|invalid (mailbox|recipient|address)|account (has been )?disabled|mail receiving disabled|unrouteable address"
    r"|host or domain name not found|domain not found|host not found|no mx|doesn'?t have an? \S+ account"
    # Lotus Domino: "User jroe (jroe@x) not listed in Domino Directory" (or its
    # older "public Name & Address Book"): its directory, not a block list.
    r"|not listed in (?:the )?(?:domino directory|public name (?:&|and) address book)"
    r"|адрес не существует|нет такого пользователя|не существует|пользователь не найден|адрес не найден"
    r"|адресат не найден|получатель не найден|(?:такого|этого) (?:почтового )?ящика нет|ящик не найден"
    r"|không tồn tại|không tìm thấy (?:địa chỉ|người nhận|hộp thư)|(?:địa chỉ|hộp thư) không hợp lệ",
    re.IGNORECASE,
)
FULL_WORDS = re.compile(
    r"mailbox (is )?full|mailbox quota|over ?quota|quota exceeded|exceeded (its|the|his|her|their)? ?(storage|quota)"
    r"|storage (allocation|limit|quota)|insufficient (system )?storage|out of storage|not enough space"
    r"|ящик переполнен|переполнен|превышен\w* (лимит|размер|квот)|hộp thư (đã )?đầy",
    re.IGNORECASE,
)
POLICY_WORDS = re.compile(
    r"spam|blocked|block list|blacklist|blocklist|listed|policy|content|virus|malware|phishing|reputation"
    r"|rejected as|not authori[sz]ed|access denied|too (big|large)|size limit|message size|message headers? fail",
    re.IGNORECASE,
)
# Words of a reply that refuse our own sender address (Postfix, Exim's
# sender verify), whatever else they say of an address: "Domain not found"
# and "Unrouteable address" after them are about ours, not the recipient's.
SENDER_REFUSED_WORDS = re.compile(
    r"sender address rejected|sender verif(?:y|ication) failed|verification failed for <", re.IGNORECASE
)
DELAY_WORDS = re.compile(
    r"will be retried|will retry|not yet been delivered|delivery attempts will continue|still trying"
    r"|has been delayed|delayed|(?<!permanently )deferred|will keep trying|still undelivered"
    # MDaemon's warning: "non-fatal delivery errors ... Subsequent attempts to deliver this message are pending"
    r"|non-fatal delivery errors?|subsequent attempts to deliver (?:this message )?are pending"
    r"|отложен|пока не доставлено",
    re.IGNORECASE,
)
# A server that gave up retrying after days, in words and without a code:
# Exim's hosts unreachable for the whole retry time. Soft, as Postfix's
# "Action: failed" with 4.4.1: the domain was down, not the address unknown.
GAVE_UP_WORDS = re.compile(
    r"retry timeout exceeded|have been failing for a long time|retry time not reached", re.IGNORECASE
)
# A line that only announces the reason on the next one.
REASON_LABEL_RE = re.compile(r"^[ \t]*(?:because|reason|причина)[ \t]*:[ \t]*$", re.IGNORECASE)
# RFC 6533's escape of a non-ASCII character in a utf-8 address: \x{HEX}.
UTF8_ESCAPE_RE = re.compile(r"\\x\{([0-9A-Fa-f]{1,6})\}")
MAX_TEXT = 2000
MAX_REPLY_LINES = 6
# A report is about one letter's recipient (an alias's few at most); each
# one named costs the matching a query, and anyone can mail the bounce address.
MAX_RECIPIENTS = 20


class _TextHeaders(Compat32):
    """The email package's default, but a header written in raw 8-bit
    (UTF-8, as Russian and Vietnamese mail systems and RFC 6532 write
    them; or Windows-1251) comes back as text read in its charset, not as
    a Header object, on which flufl.bounce's detectors break (and the
    report with them)."""

    def header_fetch_parse(self, name: str, value: str) -> str:
        fetched = super().header_fetch_parse(name, value)
        return _header_text(fetched) if isinstance(fetched, Header) else fetched


READ_POLICY = _TextHeaders()


@dataclass
class Outcome:
    """What a delivery-status part says of one of its recipients. `kind`
    None: delivered, relayed or expanded, not a failure."""

    recipient: str
    original_recipient: str
    kind: str | None
    status: str
    diagnostic: str
    returned: bool


@dataclass
class ParsedReport:
    """What the message says. `kind` None: not a report, leave it alone."""

    kind: str | None
    recipients: list[str] = field(default_factory=list)
    status: str = ""  # the enhanced status (5.1.1), else the reply code (550), else empty
    diagnostic: str = ""
    letter_ids: list[str] = field(default_factory=list)  # from X-Postroute-Letter
    message_letter_ids: list[str] = field(default_factory=list)  # from our Message-IDs
    envelope_tokens: list[str] = field(default_factory=list)  # from the address it was sent to
    message_id: str = ""
    sender: str = ""
    subject: str = ""
    received_at: datetime | None = None
    headers_excerpt: str = ""
    # The letter came back, not delivered (a failed DSN block, a report that
    # is no delay warning), whatever its kind: a soft one too (a full
    # mailbox, a server that gave up retrying after days, "Action: failed"
    # with 4.4.1), which keeps the address but not the letter's "sent".
    returned: bool = False
    # One per recipient block of the delivery-status part: a report about
    # several recipients (an alias, a forward) says something of each.
    outcomes: list[Outcome] = field(default_factory=list)

    def about(self, address: str) -> ParsedReport:
        """The report as it concerns `address` (in any form): its own
        block's kind, status and reason when the report has one for it
        (kind None when that block says it was delivered), else the
        report's judgement as a whole."""
        forms = {form.lower() for form in address_forms(address)} if address else set()
        mine = [o for o in self.outcomes if {o.recipient.lower(), o.original_recipient.lower()} & forms]
        if not mine:
            return self
        delivered = [o for o in mine if o.kind is None]
        failed = [o for o in mine if o.returned]
        outcome = (delivered or failed or mine)[0]
        return replace(
            self,
            recipients=_unique([outcome.recipient, *self.recipients]),
            kind=outcome.kind,
            status=outcome.status,
            diagnostic=outcome.diagnostic,
            returned=outcome.returned,
        )


_Stored = TypeVar("_Stored", ParsedReport, Outcome)


@dataclass
class _Dsn:
    recipient: str
    action: str
    status: str
    diagnostic: str
    original_recipient: str = ""

    @property
    def failed(self) -> bool:
        return self.action.startswith(("fail", "error"))

    @property
    def succeeded(self) -> bool:
        # RFC 3464's delivered, relayed (to a system that sends no reports) and expanded (an alias or list).
        return self.action.startswith(("deliver", "relay", "expand"))


@dataclass
class _Reply:
    code: str
    status: str
    text: str


def parse(raw: bytes) -> ParsedReport:
    """Never raises: a message that breaks the parser is an unreadable
    report if it looked like one, else left alone (a raise would stop the
    mailbox at it for good)."""
    try:
        message = email.message_from_bytes(raw, policy=READ_POLICY)
    except Exception:  # MIME nested past the recursion limit: its headers still say what it is
        log.exception("bounce message could not be parsed")
        return _unreadable(BytesParser(policy=READ_POLICY).parsebytes(raw, headersonly=True))
    try:
        report = _storable(_parse(message))
    except Exception:  # a malformed message must not stop the mailbox
        log.exception("bounce message could not be parsed")
        report = _unreadable(message)
    report.message_id = report.message_id or _stand_in_id(raw, report)
    return report


def _stand_in_id(raw: bytes, report: ParsedReport) -> str:
    """For a message without a Message-ID (qmail-send writes its bounces
    so): one made of what every copy of it shares, its body, sender, date
    and subject, so that a copy delivered twice (each with its own
    Received lines on top) is known as seen (services.report_exists)."""
    body = re.split(rb"\r?\n\r?\n", raw, maxsplit=1)[-1]
    when = report.received_at.isoformat() if report.received_at else ""
    digest = hashlib.sha256("\n".join((report.sender, when, report.subject)).encode() + b"\n" + body)
    return f"<{digest.hexdigest()[:40]}@no-message-id.invalid>"


def _unreadable(message: Message) -> ParsedReport:
    kind = UNKNOWN if _looks_like_report(message) else None
    return _storable(ParsedReport(kind=kind, **_envelope(message)))


def _storable(report: _Stored) -> _Stored:
    """Every text as a PostgreSQL column can keep it: anyone can mail the
    bounce address, and a NUL (a raw byte, an encoded word, a base64 body)
    in a report that cannot be saved would stop the mailbox at it for good."""
    for name in (f.name for f in fields(report)):
        value = getattr(report, name)
        if isinstance(value, str):
            setattr(report, name, server_words(value))
        elif isinstance(value, list):
            setattr(report, name, [server_words(x) if isinstance(x, str) else _storable(x) for x in value])
    return report


def _parse(message: Message) -> ParsedReport:
    envelope = _envelope(message)
    if feedback := [part for part in message.walk() if part.get_content_type() == "message/feedback-report"]:
        return _feedback(message, feedback[0], envelope)
    dsns = _dsn_blocks(message)
    temporary, permanent = _failures(message)
    if dsns or temporary or permanent or _looks_like_report(message):
        return _report(message, envelope, dsns, temporary, permanent)
    if _is_auto_reply(message):
        sender = parseaddr(message.get("From", ""))[1]
        return ParsedReport(
            kind=AUTO_REPLY,
            recipients=[sender] if sender else [],
            message_letter_ids=_reply_ids(message),
            envelope_tokens=_tokens(message, ""),
            **envelope,
        )
    return ParsedReport(kind=None, **envelope)


def _report(
    message: Message, envelope: dict, dsns: list[_Dsn], temporary: set[str], permanent: set[str]
) -> ParsedReport:
    if dsns and all(d.succeeded for d in dsns):
        return ParsedReport(kind=None, **envelope)  # a success notice (NOTIFY=SUCCESS, "relayed")
    failed, delayed = _reported_blocks(dsns)
    text = _body_text(message)
    original = _original_headers(message)
    ours = _our_addresses(message, original)
    # The failed recipients first, then the delayed ones: each has its outcome.
    recipients = _unique([d.recipient for d in [*failed, *dsns] if d.recipient and not d.succeeded])
    recipients = recipients or _not_ours([*sorted(permanent), *sorted(temporary)], ours)
    recipients = (recipients or _text_recipients(text, ours))[:MAX_RECIPIENTS]
    status, diagnostic = _status_and_diagnostic(failed, text, recipients)
    quoted = f"{original}\n{text}"
    delay = DELAY_WORDS.search(text) or (temporary and not permanent)
    returned = any(d.failed for d in failed) if dsns else not delay
    return ParsedReport(
        returned=returned,
        kind=judge(status, diagnostic or text, delayed=delayed, permanent=bool(permanent), temporary=bool(temporary)),
        recipients=recipients,
        status=status,
        diagnostic=diagnostic[:MAX_TEXT],
        letter_ids=_unique(_field_ids(LETTER_HEADER_RE, LETTER_ID_RE, quoted)),
        # Exchange, Gmail and Exim's warnings refer to the original in their own headers too.
        message_letter_ids=_unique(
            _field_ids(MESSAGE_ID_FIELD_RE, MESSAGE_ID_IN_FIELD_RE, quoted) + _reply_ids(message)
        ),
        envelope_tokens=_tokens(message, quoted),
        outcomes=_outcomes(dsns, recipients, text, returned),
        **envelope,
    )


def _feedback(message: Message, part: Message, envelope: dict) -> ParsedReport:
    """A feedback loop's report (RFC 5965 ARF: Mail.ru's, Yandex's,
    Microsoft's FBL): a complaint when the recipient marked the letter as
    spam; anything else in that form (a DMARC failure report, RFC 6591's
    auth-failure, or a "not-spam") is no one's complaint: left alone."""
    fields = _report_fields(part)
    feedback_type = _header_text(fields.get("Feedback-Type")).strip().lower()
    if feedback_type not in COMPLAINT_TYPES:
        return ParsedReport(kind=None, **envelope)
    original = _original_headers(message)
    headers = email.message_from_string(original) if original else Message()
    named = [_header_text(v) for v in fields.get_all("Original-Rcpt-To", []) + headers.get_all("To", [])]
    found = [address for _name, address in getaddresses(named) if re.fullmatch(ADDRESS, address)]
    agent = " ".join(_header_text(fields.get("User-Agent")).split())
    return ParsedReport(
        kind=COMPLAINT,
        recipients=_not_ours(found, _our_addresses(message, original))[:MAX_RECIPIENTS],
        diagnostic=f"{feedback_type} ({agent})" if agent else feedback_type,
        letter_ids=_unique(_field_ids(LETTER_HEADER_RE, LETTER_ID_RE, original)),
        message_letter_ids=_unique(_field_ids(MESSAGE_ID_FIELD_RE, MESSAGE_ID_IN_FIELD_RE, original)),
        envelope_tokens=_tokens(message, original),
        **envelope,
    )


def _report_fields(part: Message) -> Message:
    """The fields of a message/feedback-report part, which the email
    package reads as a message of its own (headers and all) or leaves as
    text."""
    if (body := _encoded_body(part)) is not None:
        return email.message_from_string(charsets.decode(body, "utf-8").lstrip("\r\n"))
    if part.is_multipart():
        return part.get_payload(0)
    return email.message_from_string(str(part.get_payload()).lstrip("\r\n"))


def _outcomes(dsns: list[_Dsn], recipients: list[str], text: str, returned: bool) -> list[Outcome]:
    """What the report says of each recipient, when it names several (one:
    the report as a whole is about it): the delivery-status blocks, else
    the reply the text gives after each address (qmail, Exim, Sendmail)."""
    if len(dsns) > 1:
        return [_outcome(d, text) for d in dsns[:MAX_RECIPIENTS]]
    if dsns or len(recipients) < 2:
        return []
    outcomes = []
    for recipient in recipients:
        paragraph = _paragraph_after(text, [recipient])
        status, diagnostic = _status_and_diagnostic([], paragraph, [recipient])
        kind = judge(status, diagnostic, delayed=not returned)
        if kind != UNKNOWN:  # nothing the text says of this one: the report as a whole stands
            outcomes.append(Outcome(recipient, "", kind, status, diagnostic[:MAX_TEXT], returned))
    return outcomes


def _outcome(dsn: _Dsn, text: str) -> Outcome:
    """One block's own judgement: its status and its reply, else the
    report's text about that recipient (not another's reply)."""
    own_text = _paragraph_after(text, [dsn.recipient])
    status, diagnostic = _status_and_diagnostic([dsn], own_text, [dsn.recipient])
    kind = None if dsn.succeeded else judge(status, diagnostic, delayed=dsn.action.startswith("delayed"))
    return Outcome(
        recipient=dsn.recipient,
        original_recipient=dsn.original_recipient,
        kind=kind,
        status=status,
        diagnostic=diagnostic[:MAX_TEXT],
        returned=dsn.failed,
    )


def _reported_blocks(dsns: list[_Dsn]) -> tuple[list[_Dsn], bool]:
    """The blocks the report is about, and whether they are only delays:
    the failed recipients when there are any (a delay for another recipient
    of the same report does not soften their failure), else the delayed
    ones, else every block."""
    failed = [d for d in dsns if d.failed]
    delayed = [d for d in dsns if d.action.startswith("delayed")]
    return failed or delayed or dsns, not failed and bool(delayed)


# ---------- what the provider means ----------


def judge(status: str, words: str, *, delayed: bool = False, permanent: bool = False, temporary: bool = False) -> str:
    """The kind of a report from its status (enhanced or reply code) and
    the words of the remote server's reply (RFC 3463's classes and
    subjects; the words where the status is vague or missing)."""
    if delayed or status.startswith("4"):
        return SOFT
    if _mailbox_full(status, words):
        return SOFT  # X.2.2: persistent but transient; repeated ones suppress
    if not status and GAVE_UP_WORDS.search(words) and not UNKNOWN_WORDS.search(words):
        return SOFT
    if status.startswith("5") or permanent or (not status and UNKNOWN_WORDS.search(words)):
        return _permanent(status, words)
    if temporary or DELAY_WORDS.search(words):
        return SOFT
    return UNKNOWN


def _mailbox_full(status: str, words: str) -> bool:
    if status[1:] == ".2.2":
        return True
    # The sender's own sending quota is not the recipient's full mailbox.
    # X.2.0 is RFC 3463's "other or undefined mailbox status": as vague as X.0.0.
    vague = not ENHANCED_STATUS_RE.fullmatch(status) or status[1:] in (".0.0", ".2.0")
    return vague and bool(FULL_WORDS.search(words)) and "sending" not in words.lower()


def _permanent(status: str, words: str) -> str:
    subject = status[2:] if ENHANCED_STATUS_RE.fullmatch(status) else ""
    if subject in ("1.7", "1.8") or SENDER_REFUSED_WORDS.search(words):
        return REFUSED  # our own sender address was refused: the recipient is not to blame
    if UNKNOWN_WORDS.search(words):
        return HARD  # whatever the status says (Yandex: "550 5.7.1 No such user!")
    if subject.startswith("1.") or subject in ("2.0", "2.1", "4.1", "4.4"):
        return HARD  # the address, the mailbox or the domain
    if subject and subject != "0.0":
        return REFUSED  # the message, our server or the route, not the address
    if POLICY_WORDS.search(words) or is_blacklisting(550, words, at_recipient=True):
        return REFUSED
    return HARD


# ---------- what kind of message ----------


def _looks_like_report(message: Message) -> bool:
    if message.get_content_type() == "multipart/report":
        report_type = message.get_param("report-type", "delivery-status").lower()
        return report_type in ("delivery-status", "global-delivery-status")
    if message.get("X-Failed-Recipients") or message.get("X-MS-Exchange-Message-Is-Ndr") is not None:
        return True
    sender = _decoded(message.get("From", "")).lower()
    subject = _decoded(message.get("Subject", ""))
    from_daemon = any(word in sender for word in DAEMON_SENDERS)
    return (from_daemon and bool(REPORT_SUBJECTS.search(subject))) or (
        not message.get("From") and bool(REPORT_SUBJECTS.search(subject))
    )


def _from_a_person(message: Message) -> bool:
    """From an ordinary address, and not sent with the null sender that
    delivery reports go out with (RFC 5321's Return-Path: <>)."""
    if _header_text(message.get("Return-Path")).strip() == "<>":
        return False
    sender = _decoded(message.get("From", "")).lower()
    local = parseaddr(sender)[1].rpartition("@")[0]
    return bool(local) and not SERVICE_LOCAL_PARTS.match(local) and not any(w in sender for w in DAEMON_SENDERS)


def _is_auto_reply(message: Message) -> bool:
    """RFC 3834's Auto-Submitted (anything but "no"), the headers mail
    programs add to their automatic answers, a read receipt, or the
    subject of an out-of-office answer in English, Russian or Vietnamese.
    (X-Auto-Response-Suppress is a request Outlook puts on ordinary mail.)"""
    auto_submitted = message.get("Auto-Submitted", "").strip().lower()
    precedence = message.get("Precedence", "").strip().lower()
    return (
        (bool(auto_submitted) and auto_submitted != "no")
        or precedence == "auto_reply"
        or any(message.get(h) for h in AUTO_REPLY_HEADERS)
        # A read receipt: (global-)disposition-notification; delivery reports were taken before.
        or message.get_content_type() == "multipart/report"
        or bool(AUTO_REPLY_SUBJECTS.search(_decoded(message.get("Subject", ""))))
    )


def _failures(message: Message) -> tuple[set[str], set[str]]:
    """flufl.bounce's failed addresses, in mail a mail system sent: in what
    a person wrote they are a bounce pasted into it (Outlook quotes without
    ">"), and the reply would bounce the letter its author answered."""
    if _from_a_person(message):
        return set(), set()
    for detector in DETECTORS:
        try:
            temporary, permanent = detector().process(message)
        except Exception:  # one detector broken by odd input (Yale's on a report without a From) is no verdict
            log.debug("flufl.bounce detector %s could not read a message", detector.__name__, exc_info=True)
            continue
        if temporary or permanent:
            return _addresses_in(temporary), _addresses_in(permanent)
    return set(), set()


def _addresses_in(found: Iterable[bytes | str]) -> set[str]:
    """The addresses in what flufl.bounce's detectors cut out of a line,
    which may hold more of it (MDaemon's transcript: "To:<jane@x")."""
    return {match.group(0) for item in found if item and (match := re.search(ADDRESS, _text(item)))}


# ---------- RFC 3464 fields ----------


def _dsn_blocks(message: Message) -> list[_Dsn]:
    parts = [part for part in message.walk() if part.get_content_type() in DSN_TYPES]
    blocks = [_dsn(block) for part in parts for block in _recipient_blocks(part)]
    return [b for b in blocks if b.recipient or b.status]


def _recipient_blocks(part: Message) -> list[Message]:
    """The per-recipient blocks of a delivery-status part. The email
    package splits message/delivery-status into its blocks, the first
    per-message; it reads message/global-delivery-status as one message
    whose headers are the per-message block and whose body holds the rest
    (its UTF-8 bytes only come back whole with decode=True)."""
    if (body := _encoded_body(part)) is not None:
        return _blocks(charsets.decode(body, "utf-8"))  # the per-message block names no recipient
    if part.is_multipart() and part.get_content_type() == "message/delivery-status":
        return part.get_payload()[1:]
    if part.is_multipart():
        return _blocks(charsets.decode(part.get_payload(0).get_payload(decode=True), "utf-8"))
    return _blocks(charsets.decode(part.get_payload(decode=True), "utf-8"))[1:]


def _blocks(text: str) -> list[Message]:
    """Header blocks separated by blank lines, each as a message."""
    chunks = re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n"))
    return [email.message_from_string(chunk.strip("\n")) for chunk in chunks if chunk.strip()]


def _dsn(block: Message) -> _Dsn:
    recipient = _address_field(_header_text(block.get("Final-Recipient")))
    recipient = recipient or _address_field(_header_text(block.get("Original-Recipient")))
    status_field = _header_text(block.get("Status"))
    # Zoho writes the reply code there ("Status: 550"): kept as that, as a bare code in a reply is.
    status = ENHANCED_STATUS_RE.search(status_field) or re.match(r"\s*([245]\d\d)\b", status_field)
    return _Dsn(
        recipient=recipient,
        original_recipient=_address_field(_header_text(block.get("Original-Recipient"))),
        action=_header_text(block.get("Action")).strip().lower(),
        status=status.group(0).strip() if status else "",
        diagnostic=_diagnostic_code(block.get("Diagnostic-Code", "")) or _supplementary(block),
    )


def _supplementary(block: Message) -> str:
    """Oracle (Sun Java System) Messaging Server writes no Diagnostic-Code:
    the remote reply is in its X-Supplementary-Info, "<host #5.0.0 smtp; 550 ...>"."""
    text = " ".join(_decoded(block.get("X-Supplementary-Info", "")).split())
    if found := re.fullmatch(r"<[^;>]*#[245]\.\d{1,3}\.\d{1,3}[^;>]*;\s*(.*?)>?", text):
        text = found.group(1)
    return _collapse_reply(text)


def _address_field(value: str) -> str:
    # "rfc822; user@example.com" (the type is optional in the wild)
    address = _unescaped(value.split(";", 1)[-1].strip())
    found = parseaddr(address)[1] or address
    return found if re.fullmatch(ADDRESS, found) else ""


def _unescaped(address: str) -> str:
    """RFC 6533's utf-8 address type in a plain DSN, which may carry only
    ASCII: "\\x{0438}\\x{0432}@x" is "ив@x"."""
    return UTF8_ESCAPE_RE.sub(lambda m: _code_point(m.group(1)), address)


def _code_point(hex_digits: str) -> str:
    value = int(hex_digits, 16)
    return chr(value) if value <= 0x10FFFF and not 0xD800 <= value <= 0xDFFF else "\ufffd"


def _diagnostic_code(value: str) -> str:
    text = " ".join(_decoded(value).split())
    text = text.split(";", 1)[1].strip() if re.match(r"^[\w-]+;", text) else text
    return _collapse_reply(text)


# ---------- status and diagnostic ----------


def _status_and_diagnostic(failed: list[_Dsn], text: str, recipients: list[str]) -> tuple[str, str]:
    """The DSN's fields first (its Diagnostic-Code is the remote reply
    verbatim), else the reply quoted in the text."""
    status = next((d.status for d in failed if d.status), "")
    diagnostic = next((d.diagnostic for d in failed if d.diagnostic), "")
    reply = _reply_in(diagnostic) if diagnostic else None
    if status.endswith(".0.0") and reply and reply.status[:1] == status[:1]:
        status = reply.status or status  # "5.0.0" with "550 5.1.1 ..." in the reply says more
    if not diagnostic:
        reply = _reply_in(text, prefer=status)
        diagnostic = reply.text if reply else _paragraph_after(text, recipients)
    if not status and reply:
        status = reply.status or reply.code
    if not status and (found := HASH_STATUS_RE.search(text)):
        status = found.group("status")
    return status, diagnostic


def _reply_in(text: str, prefer: str = "") -> _Reply | None:
    """The first quoted server reply that refused (the first with the
    status `prefer`, when there is one), with the lines that continue it.
    A session transcript (MDaemon's) quotes the greeting and every "250 OK"
    before the refusal: none of them is why the letter failed."""
    replies = [r for r in REPLY_RE.finditer(text) if not r.group("code").startswith("2")]
    found = next((r for r in replies if prefer and r.group("status") == prefer), replies[0] if replies else None)
    if found is None:
        if (hashed := HASH_STATUS_RE.search(text)) is None:
            return None
        line_start = text.rfind("\n", 0, hashed.start()) + 1
        return _Reply("", hashed.group("status"), _continued(text, line_start))
    reply = _continued(text, found.start("code"))
    opened = text[: found.start("code")].rstrip(" \t#")[-1:]
    if closing := QUOTES.get(opened):  # "hat '550 ...' zurückgegeben": the reply ends at its quote
        reply = re.split(rf"{closing}(?!\w)", reply, maxsplit=1)[0]
    return _Reply(found.group("code"), found.group("status") or "", reply)


def _continued(text: str, start: int) -> str:
    """From `start` to the end of its paragraph: the indented or
    code-prefixed lines that follow (Postfix wraps, Gmail repeats 550-)."""
    first, *rest = text[start:].splitlines() or [""]
    lines = [first.strip().rstrip("'")]
    for line in rest[: MAX_REPLY_LINES - 1]:
        # A line that is only an address starts the next failed recipient (Exim indents it).
        if not line.strip() or line.lstrip().startswith(("---", "<<<", ">>>")) or re.fullmatch(ALONE, line):
            break
        if TRANSCRIPT_LINE_RE.match(line):  # the next step of MDaemon's session: "--> QUIT"
            break
        if not (line[:1].isspace() or re.match(r"[245]\d\d[ -]", line)):
            break
        lines.append(line.strip())
    reply = _collapse_reply(" ".join(lines))
    # "(reason: 550 Host unknown)": the bracket was opened before the reply.
    return reply[:-1] if reply.endswith(")") and reply.count(")") > reply.count("(") else reply


def _collapse_reply(text: str) -> str:
    """One line; a multi-line reply's repeated codes ("550-5.1.1 ... 550
    5.1.1 ...") once, at the start."""
    text = " ".join(text.split())
    first = re.match(r"[245]\d\d[ -](?:[245]\.\d{1,3}\.\d{1,3} )?", text)
    head = first.group(0).replace("-", " ", 1) if first else ""
    rest = re.sub(r"(?<=\s)[245]\d\d[ -](?:[245]\.\d{1,3}\.\d{1,3}\s+)?(?=\S)", "", text[len(head) :])
    return " ".join(f"{head}{rest}".split())


def _paragraph_after(text: str, recipients: list[str]) -> str:
    """Without a quoted reply: the lines after the failed address, up to a
    blank line."""
    lines = text.splitlines()
    wanted = [r.lower() for r in recipients if r]
    at = next((i for i, line in enumerate(lines) if any(r in line.lower() for r in wanted)), None)
    if at is None:
        return ""
    # The reason may follow the address on its line (Sendmail: "<jane@x>... Deferred: ...").
    rest = re.sub(ADDRESS, "", lines[at]).strip(" \t<>.:()")
    start = at if len(rest.split()) >= 2 else at + 1
    # Lotus Domino: a blank line and "because:" stand between the address and the reason.
    while start < len(lines) and start <= at + 3 and (not lines[start].strip() or REASON_LABEL_RE.match(lines[start])):
        start += 1
    paragraph = []
    for line in lines[start : start + 4]:
        if not line.strip() or line.lstrip().startswith("---"):
            break
        paragraph.append(" ".join(line.split()))
    return " ".join(paragraph)[:MAX_TEXT]


# ---------- recipients ----------


def _text_recipients(text: str, ours: set[str]) -> list[str]:
    found = [m.group("addr").rstrip(".") for pattern in RECIPIENT_RES for m in pattern.finditer(text)]
    return _not_ours(found, ours)


def _not_ours(addresses: Iterable[str], ours: set[str]) -> list[str]:
    """Never our own addresses (the report's addressee, the original's
    sender) nor a mail system's or help desk's."""
    kept = []
    for address in addresses:
        local = address.rpartition("@")[0]
        if address.lower() in ours or SERVICE_LOCAL_PARTS.match(local) or tokens.TOKEN_RE.search(address):
            continue
        kept.append(address)
    return _unique(kept)


def _our_addresses(message: Message, original: str) -> set[str]:
    names = ("To", "Cc", "Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "Return-Path", "From")
    values = [v for name in names for v in message.get_all(name, [])]
    headers = email.message_from_string(original) if original else None
    if headers is not None:
        values += [v for name in ("From", "Sender", "Reply-To", "Return-Path") for v in headers.get_all(name, [])]
    return {address.lower() for _name, address in getaddresses([_header_text(v) for v in values]) if "@" in address}


def _tokens(message: Message, quoted: str) -> list[str]:
    """Envelope tokens in the addresses the report was delivered to (the
    envelope sender of our letter), and in the returned original's
    Return-Path."""
    names = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To", "Return-Path")
    values = " ".join(str(v) for name in names for v in message.get_all(name, []))
    return _unique(t.lower() for t in tokens.TOKEN_RE.findall(f"{values}\n{quoted}"))


# ---------- the returned original ----------


def _original_headers(message: Message) -> str:
    """The headers of the returned letter, as text: from message/rfc822 or
    text/rfc822-headers parts, or their RFC 6533 twins message/global and
    message/global-headers. Inline copies are in the body text instead."""
    chunks = []
    for part in message.walk():
        content_type = part.get_content_type()
        if content_type in (*ORIGINAL_TYPES, "message/global-headers") and part.is_multipart():
            body = _encoded_body(part)
            original = part.get_payload(0) if body is None else email.message_from_bytes(body, policy=READ_POLICY)
            chunks.append("\n".join(f"{k}: {_header_text(v)}" for k, v in original.items()))
        elif content_type == "text/rfc822-headers":
            chunks.append(_part_text(part))
    return "\n".join(chunks)


def _encoded_body(part: Message) -> bytes | None:
    """The decoded body of a message/* part sent in base64 or
    quoted-printable, which RFC 2046 forbids and some report generators do
    all the same: the email package parses the encoded text as if it were
    the report's fields or the original's headers."""
    encoding = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    if encoding not in ("base64", "quoted-printable"):
        return None
    encoded = Message()
    encoded["Content-Transfer-Encoding"] = encoding
    encoded.set_payload(part.as_string().replace("\r\n", "\n").partition("\n\n")[2])
    return encoded.get_payload(decode=True)


def _field_ids(field_re: re.Pattern, id_re: re.Pattern, text: str) -> list[str]:
    """Our ids in the original's header fields `field_re` finds, however
    folded: a Message-ID on the line after "Message-ID:", or the second
    id of a References."""
    return [found for field in field_re.finditer(text) for found in id_re.findall(field.group("value"))]


def _reply_ids(message: Message) -> list[str]:
    refs = " ".join(message.get_all("In-Reply-To", []) + message.get_all("References", []))
    return _unique(OUR_MESSAGE_ID_RE.findall(refs))


# ---------- text ----------


def _body_text(message: Message) -> str:
    """The decoded text parts of the report itself (not of the attached
    original), where non-standard reports say who failed and why; the text
    of its HTML where it has no words but those (html_text)."""
    chunks, pages = [], []
    for part in _own_parts(message):
        if part.get_content_maintype() != "text" or part.get_content_type() == "text/rfc822-headers":
            continue
        if part.get_content_type() == "text/html":
            pages.append(part)
        else:
            chunks.append(_part_text(part))
    if not any(chunk.strip() for chunk in chunks):
        chunks = [html_text(_part_text(page)) for page in pages] or chunks
    return "\n".join(chunks)


def _own_parts(message: Message) -> Iterator[Message]:
    if not message.is_multipart():
        yield message
        return
    for part in message.get_payload():
        # A global DSN's blocks are one message's body here: not the report's text either.
        if part.get_content_type() in (*ORIGINAL_TYPES, "message/global-delivery-status"):
            continue
        yield from _own_parts(part)


def _part_text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return str(part.get_payload() or "").replace("\r\n", "\n")
    return charsets.decode(payload, part.get_content_charset()).replace("\r\n", "\n")


def _envelope(message: Message) -> dict:
    return {
        "message_id": _header_text(message.get("Message-ID")).strip()[:255],
        "sender": _decoded(message.get("From", ""))[:300],
        "subject": _decoded(message.get("Subject", ""))[:300],
        "received_at": _date(_header_text(message.get("Date"))),
        "headers_excerpt": _headers_excerpt(message),
    }


def _headers_excerpt(message: Message) -> str:
    wanted = ("From", "To", "Subject", "Date", "Message-ID", "Auto-Submitted", "X-Failed-Recipients")
    return "\n".join(f"{name}: {_decoded(message[name])}" for name in wanted if message.get(name))[:MAX_TEXT]


def _date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo else None


def _decoded(value: object) -> str:
    """A header with its encoded words decoded, under whatever charset
    label they name (`=?win-1251?B?...?=`), on one line."""
    text = _header_text(value)
    try:
        chunks = decode_header(text)
    except HeaderParseError:  # an encoded word cut short ("=?utf-8?B?0?="): the others still say something
        chunks = [chunk for word in _words(text) for chunk in _decoded_word(word)]
    except (UnicodeError, LookupError, ValueError):
        return " ".join(text.split())
    pieces, previous_encoded = [], None
    for chunk, charset in chunks:
        piece = chunk if isinstance(chunk, str) else charsets.decode(chunk, charset)
        encoded = charset is not None
        if previous_encoded is not None and encoded != previous_encoded and pieces:
            pieces.append(" ")  # an encoded word and plain text are separate words (RFC 2047)
        pieces.append(piece)
        previous_encoded = encoded
    return " ".join("".join(pieces).split())


ENCODED_WORD_RE = re.compile(r"=\?[^?\s]+\?[bqBQ]\?[^?\s]*\?=")


def _words(text: str) -> list[str]:
    """The header's encoded words and the plain text between them."""
    return [piece for piece in re.split(f"({ENCODED_WORD_RE.pattern})", text) if piece.strip()]


def _decoded_word(word: str) -> list[tuple[bytes | str, str | None]]:
    try:
        return decode_header(word)
    except (HeaderParseError, UnicodeError, LookupError, ValueError):
        return [(word, None)]


def _header_text(value: object) -> str:
    """A header value as text. A value with raw 8-bit bytes (UTF-8 in a
    global DSN, or from a careless mailer) comes back from the email
    package as a Header, whose str() loses those bytes."""
    if value is None:
        return ""
    if not isinstance(value, Header):
        return str(value)
    chunks = decode_header(value)
    return "".join(c if isinstance(c, str) else charsets.decode(c, charset) for c, charset in chunks)


def _text(value: bytes | str) -> str:
    return value.decode("ascii", errors="replace") if isinstance(value, bytes) else value


def _unique(items: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for item in items:
        seen.setdefault(item.strip().lower() if "@" not in item else item.strip(), None)
    return [item for item in seen if item]


def feedback_of(diagnostic: str) -> tuple[str, str]:
    """A complaint's feedback type and its reporter's User-Agent, as
    _feedback keeps them in the report's diagnostic: "abuse (Mail.Ru FBL/1.0)"."""
    feedback_type, _, agent = diagnostic.partition(" (")
    return feedback_type, agent.removesuffix(")")
