"""The exact message of a letter: the mailing's template snapshot rendered
with the letter's contact fields, From resolved for the sending server.

Built with the email package's classic (compat32) classes: the modern
policy parses and refolds every header and took 1.4 ms a letter, more than
the SMTP exchange itself; these take 0.3 ms. Three shortcuts halve that: a
header that is short plain ASCII is written as it is instead of through
email.header's folding, the text parts get their headers set directly
rather than through Charset's parameter parsing, and their quoted-printable
body is encoded by binascii (C) rather than email.quoprimime (Python). The
classic classes do not refuse line breaks in headers, so servers.headers'
safe() refuses every character servers.validators forbids, for every
header: the last guard behind the forms and models, which refuse the same
set. The headers are folded by servers.headers (at spaces, to 78
characters; text that is not ASCII in encoded words of at most 75, cut
after a space where one fits), which the connection test's test letter
shares.

A batch makes its letters with one Builder, which finds what they share
once. What goes over the wire is Builder.wire(): the same headers and
parts as Builder.message() puts in a Message, written out directly, each
header folded by the policy method the email package's generator calls,
without building Message objects and running the generator over them (a
quarter of the cost of a letter). Its output is the Message's
as_bytes(policy=WIRE) byte for byte (a test compares over many generated
letters); the Message stays as that reference and as the form tests parse
back."""

import time
import unicodedata
from dataclasses import dataclass
from email.generator import BytesGenerator
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.utils import formatdate
from functools import lru_cache

from django.conf import settings

from servers.headers import (
    POLICY,
    Mailbox,
    Words,
    fold,
    mailbox,
    quoted_printable,
    safe,
    text_header,
    text_part_headers,
    wire_body,
)
from servers.headers import WIRE as WIRE  # the policy whose as_bytes() wire() equals
from servers.headers import HeaderInjection as HeaderInjection  # raised for an unsafe value
from servers.models import SmtpServer
from servers.selectors import ReportRoute
from servers.validators import header_text
from servers.wire import Role

from .. import rendering
from ..addresses import ascii_domain
from ..models import Letter, Mailing
from ..sender import ResolvedSender, resolve_sender
from ..unsubscribe import link_around_token, make_token

LETTER_HEADER = "X-Postroute-Letter"


@dataclass(frozen=True)
class _From:
    value: str | Mailbox  # the From header
    domain: str  # of the Message-ID


@lru_cache(maxsize=256)
def _from(sender: ResolvedSender) -> _From:
    """The same for every letter of a batch: made once (IDNA, formataddr).
    Checked before formataddr, which would hide a non-ASCII name's controls
    in an encoded word; international domains go as IDNA in every header
    and the Message-ID. A refusal is raised again for every letter."""
    email = ascii_domain(safe(sender.email))
    name = unicodedata.normalize("NFC", safe(sender.name))
    return _From(mailbox(name, email), email.rpartition("@")[2] or "postroute.invalid")


Sides = tuple[tuple[str, Role], ...]


def sender_side(sender: ResolvedSender, route: ReportRoute, mailing: Mailing) -> tuple[Sides, Sides]:
    """The addresses every letter of a batch shares, with their roles: the
    envelope sender (untagged: the address the tenant typed), the From and
    the Reply-To. One whose mailbox is not ASCII puts the headers in UTF-8
    (RFC 6532) and needs SMTPUTF8 (exchange.envelope checks them, in this
    order). In two parts: the server's and the tenant's settings (what a
    connection test checks, and a fix of them reaches), then the mailing's
    own, kept from its start (a substituted From, its Reply-To), which no
    change of the template reaches."""
    bounce = Role.BOUNCE if route.to_bounce_mailbox else Role.SENDER
    settings_side, own = [(route.address, bounce)], []
    (own if sender.substituted else settings_side).append((sender.email, Role.SENDER))
    (own if mailing.reply_to else settings_side).append((sender.reply_to, Role.REPLY_TO))
    return tuple(settings_side), tuple(own)


@lru_cache(maxsize=256)
def _reply_to(address: str) -> str:
    return safe(ascii_domain(address))


_second_and_date: tuple[int, str] = (-1, "")


def _date() -> str:
    """formatdate(), made once a second: it shows whole seconds."""
    global _second_and_date
    second, date = _second_and_date
    if (now := int(time.time())) != second:
        date = formatdate(now)
        # One tuple, replaced whole: safe across the worker's threads.
        _second_and_date = (now, date)
    return date


@dataclass(frozen=True)
class _Letter:
    """A letter's parts before serialization: (subtype, text) bodies in
    order, and the headers after the content headers."""

    bodies: list[tuple[str, str]]
    headers: list[tuple[str, str | Words | Mailbox]]


class Builder:
    """The letters of one batch (one mailing, one server): what is the same
    for all of them (the sender, where the unsubscribe link begins) is found
    once, the rest per letter."""

    def __init__(self, server: SmtpServer, mailing: Mailing, *, reply_to: str = "") -> None:
        """`reply_to`: where replies go when the template names no reply-to
        (mailing.sender.default_reply_to, looked up once per batch)."""
        self.mailing = mailing
        # Composed (NFC), as contacts are stored: text typed decomposed on a
        # Mac or a Vietnamese keyboard ("e" and two combining marks for "ễ")
        # is shown with marks beside the letters by older mail clients.
        self.subject, self.text_body, self.html_body = (
            unicodedata.normalize("NFC", source) for source in (mailing.subject, mailing.text_body, mailing.html_body)
        )
        self.sender = resolve_sender(server, mailing, reply_to=reply_to)
        self.link = link_around_token(settings.SITE_URL)

    def message(self, letter: Letter) -> Message:
        """The letter as the email package's Message."""
        composed = self._compose(letter)
        parts = [_text_part(body, subtype) for subtype, body in composed.bodies]
        if len(parts) > 1:
            message = MIMEMultipart("alternative", policy=POLICY)
            for part in parts:
                message.attach(part)
        else:
            message = parts[0]
            message["MIME-Version"] = "1.0"
        for name, value in composed.headers:
            message[name] = value
        return message

    def wire(self, letter: Letter) -> bytes:
        """self.message(letter).as_bytes(policy=WIRE), written directly:
        each header folded by the policy method the generator calls, in the
        same order, and the parts laid out as it lays them out."""
        composed = self._compose(letter)
        headers = b"".join([fold(name, value) for name, value in composed.headers])
        if len(composed.bodies) == 1:
            ((subtype, body),) = composed.bodies
            return _PART_HEADERS[subtype] + _MIME_VERSION + headers + b"\r\n" + wire_body(body)
        # Drawn as the generator draws it. The generator also makes sure that
        # no line of the parts is the boundary: none can be, as the parts hold
        # only their fixed headers and quoted-printable text, where "==" never
        # occurs.
        boundary = BytesGenerator._make_boundary().encode("ascii")
        content_type = fold("Content-Type", f'multipart/alternative; boundary="{boundary.decode("ascii")}"')
        parts = [_PART_HEADERS[subtype] + b"\r\n" + wire_body(body) for subtype, body in composed.bodies]
        return b"".join(
            [
                content_type,
                _MIME_VERSION,
                headers,
                b"\r\n--" + boundary + b"\r\n",
                (b"\r\n--" + boundary + b"\r\n").join(parts),
                b"\r\n--" + boundary + b"--\r\n",
            ]
        )

    def _context(self, letter: Letter) -> dict[str, str]:
        """The values the letter is rendered with: its contact fields and its
        unsubscribe link."""
        before, after = self.link
        context = {
            key: unicodedata.normalize("NFC", v) if isinstance(v, str) else v for key, v in letter.context.items()
        }
        return {**context, "unsubscribe_url": before + make_token(letter.tenant_id, letter.email) + after}

    def _compose(self, letter: Letter) -> _Letter:
        """What both forms are made of. The fields are checked in this
        order: a letter with several unsafe fields is refused for the same
        one."""
        sender, context = self.sender, self._context(letter)
        bodies = [("plain", rendering.render(self.text_body, context, html=False))]
        if self.html_body:
            html = rendering.strip_scripts(rendering.render(self.html_body, context, html=True))
            bodies.append(("html", html))
        sender_from = _from(sender)
        headers: list[tuple[str, str | Words | Mailbox]] = [
            ("From", sender_from.value),
            ("To", safe(ascii_domain(letter.email))),
        ]
        if sender.reply_to:
            headers.append(("Reply-To", _reply_to(sender.reply_to)))
        public_id = str(letter.public_id)
        headers += [
            # Contact data must never make a letter refused: its controls become
            # spaces. An empty placeholder at either end leaves no space there.
            ("Subject", text_header(header_text(rendering.render(self.subject, context, html=False)).strip(" "))),
            ("Date", _date()),
            ("Message-ID", f"<{public_id}@{sender_from.domain}>"),
            (LETTER_HEADER, public_id),
            # RFC 8058 one-click unsubscribe: mailbox providers POST to the URL.
            ("List-Unsubscribe", safe(f"<{context['unsubscribe_url']}>")),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ]
        return _Letter(bodies, headers)


def build_message(letter: Letter, server: SmtpServer, mailing: Mailing | None = None, *, reply_to: str = "") -> Message:
    """One letter as a Message (a batch makes its letters with one Builder)."""
    return Builder(server, mailing or letter.mailing, reply_to=reply_to).message(letter)


def _text_part(body: str, subtype: str) -> Message:
    part = Message(policy=POLICY)
    for name, value in text_part_headers(subtype):
        part[name] = value
    part.set_payload(quoted_printable(body).decode("ascii"))
    return part


_PART_HEADERS = {
    subtype: b"".join(fold(name, value) for name, value in text_part_headers(subtype)) for subtype in ("plain", "html")
}
_MIME_VERSION = fold("MIME-Version", "1.0")
