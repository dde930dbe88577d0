"""Understanding one message from the bounce mailbox: is it a delivery
report (and for which recipient, hard or soft, why), an auto-reply, or
something a human wrote that we must leave alone?

flufl.bounce finds the failed recipients in RFC 3464 DSNs and in the many
non-standard formats (Exim, qmail, Exchange...); the email package reads the
DSN fields and the returned original's headers, which tie the report to the
letter. Nothing here touches the database."""

from __future__ import annotations

import email
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from email.header import decode_header, make_header
from email.message import Message
from email.utils import parseaddr, parsedate_to_datetime

from flufl.bounce import all_failures

log = logging.getLogger(__name__)
# flufl.bounce logs every detector it tries at INFO: one line per detector
# per message would drown the worker's log.
logging.getLogger("flufl.bounce").setLevel(logging.WARNING)

HARD, SOFT, AUTO_REPLY, UNKNOWN = "hard", "soft", "auto_reply", "unknown"

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# Inline copies of the original are sometimes indented or quoted.
LETTER_HEADER_RE = re.compile(rf"^[ \t>]*X-Postroute-Letter:\s*({UUID})", re.IGNORECASE | re.MULTILINE)
# Our Message-IDs are <public_id@domain> (mailing.messages.build_message).
OUR_MESSAGE_ID_RE = re.compile(rf"<({UUID})@[^>\s]+>", re.IGNORECASE)
MESSAGE_ID_LINE_RE = re.compile(rf"^[ \t>]*(?:Message-ID|In-Reply-To|References):.*?<({UUID})@", re.I | re.M)
# Not inside an IP address or a version number such as 192.5.1.1.
ENHANCED_STATUS_RE = re.compile(r"(?<![\w.])([245])\.(\d{1,3})\.(\d{1,3})(?!\.?\d)")
SMTP_REPLY_RE = re.compile(r"\b([45])\d\d\b[ -]")

DAEMON_SENDERS = ("mailer-daemon", "postmaster", "mail delivery", "mail-daemon", "mdaemon")
REPORT_SUBJECTS = re.compile(
    r"undeliver|undelivered|delivery status notification|delivery failure|delivery has failed|"
    r"mail delivery failed|returned mail|failure notice|could not be delivered|delayed mail|"
    r"delivery delayed|warning: message|недоставленное|не доставлено|не может быть доставлено",
    re.IGNORECASE,
)
AUTO_REPLY_SUBJECTS = re.compile(
    r"^(out of (the )?office|automatic reply|auto[- ]?reply|autoreply|auto response|vacation|"
    r"абонент|автоответ|нет на месте|в отпуске)",
    re.IGNORECASE,
)
MAX_TEXT = 2000


@dataclass
class ParsedReport:
    """What the message says. `kind` None: not a report, leave it alone."""

    kind: str | None
    recipients: list[str] = field(default_factory=list)
    status: str = ""
    diagnostic: str = ""
    letter_ids: list[str] = field(default_factory=list)  # from X-Postroute-Letter
    message_letter_ids: list[str] = field(default_factory=list)  # from our Message-IDs
    message_id: str = ""
    sender: str = ""
    subject: str = ""
    received_at: datetime | None = None
    headers_excerpt: str = ""


@dataclass
class _Dsn:
    recipient: str
    action: str
    status: str
    diagnostic: str


def parse(raw: bytes) -> ParsedReport:
    """Never raises: a message that breaks the parser is an unreadable
    report if it looked like one, else left alone."""
    message = email.message_from_bytes(raw)
    try:
        return _parse(message)
    except Exception:  # a malformed message must not stop the mailbox
        log.exception("bounce message could not be parsed")
        kind = UNKNOWN if _looks_like_report(message) else None
        return ParsedReport(kind=kind, **_envelope(message))


def _parse(message: Message) -> ParsedReport:
    envelope = _envelope(message)
    dsns = _dsn_blocks(message)
    temporary, permanent = _failures(message)
    if dsns or temporary or permanent or _looks_like_report(message):
        return _report(message, envelope, dsns, temporary, permanent)
    if _is_auto_reply(message):
        sender = parseaddr(message.get("From", ""))[1]
        return ParsedReport(
            kind=AUTO_REPLY, recipients=[sender] if sender else [], message_letter_ids=_reply_ids(message), **envelope
        )
    return ParsedReport(kind=None, **envelope)


def _report(
    message: Message, envelope: dict, dsns: list[_Dsn], temporary: set[str], permanent: set[str]
) -> ParsedReport:
    failed = [d for d in dsns if d.action.startswith(("fail", "error", "delayed"))] or dsns
    recipients = _unique([d.recipient for d in failed if d.recipient] + sorted(permanent) + sorted(temporary))
    status = next((d.status for d in failed if d.status), "")
    diagnostic = next((d.diagnostic for d in failed if d.diagnostic), "")
    text = _body_text(message)
    if not status:
        status = _status_from_text(diagnostic or text)
    if not diagnostic:
        diagnostic = _diagnostic_from_text(text, recipients, status)
    delayed = any(d.action.startswith("delayed") for d in failed)
    original = _original_headers(message)
    return ParsedReport(
        kind=_kind(status, delayed=delayed, permanent=bool(permanent), temporary=bool(temporary)),
        recipients=recipients,
        status=status,
        diagnostic=diagnostic[:MAX_TEXT],
        letter_ids=_unique(LETTER_HEADER_RE.findall(f"{original}\n{text}")),
        message_letter_ids=_unique(MESSAGE_ID_LINE_RE.findall(f"{original}\n{text}")),
        **envelope,
    )


def _kind(status: str, *, delayed: bool, permanent: bool, temporary: bool) -> str:
    if status.startswith("5"):
        return HARD
    if status.startswith("4") or delayed or temporary:
        return SOFT
    return HARD if permanent else UNKNOWN


# ---------- what kind of message ----------


def _looks_like_report(message: Message) -> bool:
    if message.get_content_type() == "multipart/report":
        return True
    sender = _decoded(message.get("From", "")).lower()
    subject = _decoded(message.get("Subject", ""))
    from_daemon = any(word in sender for word in DAEMON_SENDERS)
    return (from_daemon and bool(REPORT_SUBJECTS.search(subject))) or (
        not message.get("From") and bool(REPORT_SUBJECTS.search(subject))
    )


def _is_auto_reply(message: Message) -> bool:
    auto_submitted = message.get("Auto-Submitted", "").strip().lower()
    precedence = message.get("Precedence", "").strip().lower()
    return (
        auto_submitted.startswith("auto-replied")
        or precedence == "auto_reply"
        or any(message.get(h) for h in ("X-Autoreply", "X-Autorespond", "X-Auto-Response-Suppress"))
        or bool(AUTO_REPLY_SUBJECTS.search(_decoded(message.get("Subject", ""))))
    )


def _failures(message: Message) -> tuple[set[str], set[str]]:
    temporary, permanent = all_failures(message)
    return {_text(a) for a in temporary if a}, {_text(a) for a in permanent if a}


# ---------- RFC 3464 fields ----------


def _dsn_blocks(message: Message) -> list[_Dsn]:
    blocks = []
    for part in message.walk():
        if part.get_content_type() != "message/delivery-status" or not part.is_multipart():
            continue
        for block in part.get_payload()[1:]:  # the first block is per-message
            blocks.append(_dsn(block))
    return [b for b in blocks if b.recipient or b.status]


def _dsn(block: Message) -> _Dsn:
    recipient = _address_field(block.get("Final-Recipient", "")) or _address_field(block.get("Original-Recipient", ""))
    status = ENHANCED_STATUS_RE.search(block.get("Status", ""))
    return _Dsn(
        recipient=recipient,
        action=block.get("Action", "").strip().lower(),
        status=status.group(0) if status else "",
        diagnostic=_diagnostic_code(block.get("Diagnostic-Code", "")),
    )


def _address_field(value: str) -> str:
    # "rfc822; user@example.com" (the type is optional in the wild)
    address = value.split(";", 1)[-1].strip()
    return parseaddr(address)[1] or address


def _diagnostic_code(value: str) -> str:
    text = " ".join(_decoded(value).split())
    return text.split(";", 1)[1].strip() if re.match(r"^[\w-]+;", text) else text


# ---------- the returned original ----------


def _original_headers(message: Message) -> str:
    """The headers of the returned letter, as text: from message/rfc822 or
    text/rfc822-headers parts. Inline copies are in the body text instead."""
    chunks = []
    for part in message.walk():
        content_type = part.get_content_type()
        if content_type == "message/rfc822" and part.is_multipart():
            original = part.get_payload(0)
            chunks.append("\n".join(f"{k}: {v}" for k, v in original.items()))
        elif content_type == "text/rfc822-headers":
            chunks.append(_part_text(part))
    return "\n".join(chunks)


def _reply_ids(message: Message) -> list[str]:
    refs = " ".join(message.get_all("In-Reply-To", []) + message.get_all("References", []))
    return _unique(OUR_MESSAGE_ID_RE.findall(refs))


# ---------- text ----------


def _body_text(message: Message) -> str:
    """The decoded text parts of the report itself (not of the attached
    original), where non-standard reports say who failed and why."""
    chunks = []
    for part in _own_parts(message):
        if part.get_content_maintype() == "text" and part.get_content_type() not in (
            "text/html",
            "text/rfc822-headers",
        ):
            chunks.append(_part_text(part))
    return "\n".join(chunks)


def _own_parts(message: Message) -> Iterator[Message]:
    if not message.is_multipart():
        yield message
        return
    for part in message.get_payload():
        if part.get_content_type() == "message/rfc822":
            continue
        yield from _own_parts(part)


def _part_text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return str(part.get_payload() or "")
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, errors="replace")
    except LookupError:
        return payload.decode("utf-8", errors="replace")


def _status_from_text(text: str) -> str:
    if found := ENHANCED_STATUS_RE.search(text):
        return found.group(0)
    if found := SMTP_REPLY_RE.search(text):
        return f"{found.group(1)}.0.0"
    return ""


def _diagnostic_from_text(text: str, recipients: list[str], status: str) -> str:
    """The paragraph that says why: from the line with the status code (or,
    without one, the line after the recipient) to the next blank line."""
    lines = text.splitlines()
    hit = _first_line(lines, lambda line: bool(status) and status in line)
    if hit is None and status.endswith(".0.0"):
        hit = _first_line(lines, lambda line: bool(SMTP_REPLY_RE.search(line + " ")))
    if hit is None:
        after = _first_line(lines, lambda line: any(r.lower() in line.lower() for r in recipients if r))
        hit = after + 1 if after is not None else None
    if hit is None:
        return ""
    paragraph = []
    for line in lines[hit : hit + 4]:
        if not line.strip() or line.lstrip().startswith("---"):
            break
        paragraph.append(" ".join(line.split()))
    return " ".join(paragraph)[:MAX_TEXT]


def _first_line(lines: list[str], test: Callable[[str], bool]) -> int | None:
    return next((i for i, line in enumerate(lines) if test(line)), None)


def _envelope(message: Message) -> dict:
    return {
        "message_id": (message.get("Message-ID") or "").strip()[:255],
        "sender": _decoded(message.get("From", ""))[:300],
        "subject": _decoded(message.get("Subject", ""))[:300],
        "received_at": _date(message.get("Date")),
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
    if value is None:
        return ""
    try:
        return " ".join(str(make_header(decode_header(str(value)))).split())
    except (UnicodeError, LookupError, ValueError):
        return " ".join(str(value).split())


def _text(value: bytes | str) -> str:
    return value.decode("ascii", errors="replace") if isinstance(value, bytes) else value


def _unique(items: list[str]) -> list[str]:
    seen: dict[str, None] = {}
    for item in items:
        seen.setdefault(item.strip().lower() if "@" not in item else item.strip(), None)
    return [item for item in seen if item]
