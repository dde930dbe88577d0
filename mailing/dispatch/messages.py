"""The exact message of a letter: the mailing's template snapshot rendered
with the letter's contact fields, From resolved for the sending server.

Built with the email package's classic (compat32) classes: the modern
policy parses and refolds every header and took 1.4 ms a letter, more than
the SMTP exchange itself; these take 0.3 ms. Three shortcuts halve that: a
header that is short plain ASCII is written as it is instead of through
email.header's folding, the text parts get their headers set directly
rather than through Charset's parameter parsing, and their quoted-printable
body is encoded by binascii (C) rather than email.quoprimime (Python). The
classic classes do not refuse line breaks in headers, so _safe() refuses
every character servers.validators forbids, for every header: the last
guard behind the forms and models, which refuse the same set. Longer
headers are folded here, at spaces only, to 78 characters; text that is not
ASCII (a Subject, a sender's display name) goes in encoded words of at most
75 characters on lines of at most 76 (RFC 2047 §2), cut after a space where
one fits: email.header makes a word as long as the line it may fill, and the
modern folder cuts a display name where its own parser then reads a space.

A batch makes its letters with one Builder, which finds what they share
once. What goes over the wire is Builder.wire(): the same headers and
parts as Builder.message() puts in a Message, written out directly, each
header folded by the policy method the email package's generator calls,
without building Message objects and running the generator over them (a
quarter of the cost of a letter). Its output is the Message's
as_bytes(policy=WIRE) byte for byte (a test compares over many generated
letters); the Message stays as that reference and as the form tests parse
back."""

import binascii
import re
import time
import unicodedata
from dataclasses import dataclass
from email.generator import BytesGenerator
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.policy import Compat32
from email.utils import formataddr, formatdate
from functools import lru_cache

from django.conf import settings
from django.utils.translation import gettext as _

from servers.models import SmtpServer
from servers.validators import first_unsafe, header_text

from .. import rendering
from ..addresses import ascii_domain
from ..models import Letter, Mailing
from ..sender import ResolvedSender, resolve_sender
from ..unsubscribe import link_around_token, make_token

LETTER_HEADER = "X-Postroute-Letter"


# The headers that hold the letter's addresses (and only them, with a
# display name already in encoded words).
ADDRESS_HEADERS = ("From", "To", "Reply-To")

# RFC 5322 §2.1.1: header lines are folded at 78 characters; a line holding
# an encoded word may not pass 76, nor the word 75 (RFC 2047 §2). Folding
# happens only at a space, so a value without one (the unsubscribe link)
# stays whole on its line, as providers parse it most reliably; RFC 5322
# allows up to 998 characters.
LINE_LENGTH = 78
WORDS_LINE_LENGTH = 76
WORD_LENGTH = 75
# A word of ASCII longer than this may not fit a line of 998 beside the
# header's name: such a text goes in encoded words too, cut anywhere.
LONGEST_WORD = 900
# "=?utf-8?b?" and "?=" around the base64 text of an encoded word.
WORD_OVERHEAD = 12
_WORD_PIECES = re.compile(r"\S*\s*")
_FOLD_PIECES = re.compile(r" *[^ ]+| +$")


@dataclass(frozen=True)
class Words:
    """Header text that goes in encoded words (RFC 2047): not ASCII, or
    ASCII that would be read as something else."""

    text: str


@dataclass(frozen=True)
class Mailbox:
    """An address with a display name that goes in encoded words; the
    address after it as it is (in UTF-8 if not ASCII, RFC 6532)."""

    name: str
    address: str


class _Policy(Compat32):
    """compat32, with short ASCII headers written as they are, longer ones
    folded at spaces only, and encoded words made short."""

    def fold_binary(self, name: str, value: object) -> bytes:
        if isinstance(value, str) and len(name) + len(value) + 2 <= LINE_LENGTH and value.isascii():
            return f"{name}: {value}{self.linesep}".encode("ascii")
        if isinstance(value, Words):
            return _in_words(name, value.text, "", self.linesep).encode("ascii")
        if isinstance(value, Mailbox):
            return _in_words(name, value.name, f"<{value.address}>", self.linesep).encode()
        if isinstance(value, str):
            # An address whose local part is not ASCII goes as it is, in
            # UTF-8 (RFC 6532), only to a server that offers SMTPUTF8: an
            # encoded word may not stand for an address (RFC 2047 §5).
            return _at_spaces(name, value, self.linesep).encode()
        return super().fold_binary(name, value)


def _at_spaces(name: str, value: str, linesep: str) -> str:
    """`name: value` folded before a space where a line would pass 78
    characters (unfolding gives it back as it was); the value's first piece
    stays beside the name, and a piece without a space stays whole."""
    lines, line = [], f"{name}:"
    for index, piece in enumerate(_FOLD_PIECES.findall(f" {value}")):
        if index and len(line) + len(piece) > LINE_LENGTH and piece[0] == " ":
            lines.append(line)
            line = ""
        line += piece
    return linesep.join([*lines, line]) + linesep


def _in_words(name: str, text: str, tail: str, linesep: str) -> str:
    """`name: ` and `text` in encoded words, each on its own line but the
    first, then `tail` (an address) after a space, on the last line when it
    fits there."""
    words = _encoded_words(text, first=WORDS_LINE_LENGTH - len(name) - 2)
    lines = [f"{name}: {words[0]}", *(f" {word}" for word in words[1:])]
    if tail:
        if len(lines[-1]) + 1 + len(tail) <= WORDS_LINE_LENGTH:
            lines[-1] += f" {tail}"
        else:
            lines.append(f" {tail}")
    return linesep.join(lines) + linesep


def _encoded_words(text: str, *, first: int) -> list[str]:
    """`text` as encoded words, the first at most `first` characters long,
    the others WORD_LENGTH. Cut after a space where one fits, so that a
    reader that puts a space between the words (the email package's own
    address parser does) shows at worst two spaces, not one inside a word;
    a longer word is cut between characters (never inside one's UTF-8)."""
    words: list[str] = []
    room, chunk, size = _payload(first), [], 0
    for piece in _WORD_PIECES.findall(text):
        length = len(piece.encode())
        if size + length > room and chunk:
            words.append(_word("".join(chunk)))
            room, chunk, size = _payload(WORD_LENGTH), [], 0
        if length <= room:
            chunk.append(piece)
            size += length
            continue
        for char in piece:
            if size + len(char.encode()) > room:
                words.append(_word("".join(chunk)))
                room, chunk, size = _payload(WORD_LENGTH), [], 0
            chunk.append(char)
            size += len(char.encode())
    if chunk or not words:
        words.append(_word("".join(chunk)))
    return words


def _payload(length: int) -> int:
    """How many bytes of text an encoded word of `length` characters holds."""
    return (length - WORD_OVERHEAD) // 4 * 3


def _word(text: str) -> str:
    return "=?utf-8?b?" + binascii.b2a_base64(text.encode(), newline=False).decode("ascii") + "?="


POLICY = _Policy(max_line_length=998)
WIRE = POLICY.clone(linesep="\r\n")  # what goes over SMTP
_fold = WIRE.fold_binary
# How the generator ends the lines of a body: every CR, LF or CRLF as CRLF.
_LINE_END = re.compile(rb"\r\n|\r|\n")


class HeaderInjection(ValueError):
    pass


def _safe(value: str) -> str:
    if (found := first_unsafe(value)) is not None:
        raise HeaderInjection(
            _("A header value may not contain U+%(ord)s (position %(value)s).")
            % {"ord": f"{ord(found[1]):04X}", "value": found[0] + 1}
        )
    return value


def _text_header(value: str) -> str | Words:
    value = _safe(value)
    return value if _plain(value) else Words(value)


def _plain(value: str) -> bool:
    """Whether `value` may go in a header as it is: text that reads as an
    encoded word ("=?utf-8?b?...?=") would be decoded by the mail client,
    and goes encoded, to be shown as written."""
    return value.isascii() and "=?" not in value and (len(value) <= LONGEST_WORD or _words_fit(value))


def _words_fit(value: str) -> bool:
    return max(map(len, value.split()), default=0) <= LONGEST_WORD


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
    email = ascii_domain(_safe(sender.email))
    name = unicodedata.normalize("NFC", _safe(sender.name))
    return _From(_mailbox(name, email), email.rpartition("@")[2] or "postroute.invalid")


def _mailbox(name: str, email: str) -> str | Mailbox:
    """formataddr((name, email)) for a name that may go as it is (quoted
    where needed); else the name for encoded words, folded short. The
    address as it is, also one that is not ASCII, which formataddr refuses
    (RFC 6532)."""
    if not name:
        return email
    if not _plain(name):
        return Mailbox(name, email)
    return formataddr((name, email)) if email.isascii() else formataddr((name, "")).removesuffix("<>") + f"<{email}>"


def needs_smtputf8(sender: ResolvedSender) -> bool:
    """Whether the letters' From or Reply-To holds a mailbox that is not
    ASCII, so that the headers go in UTF-8: only with SMTPUTF8."""
    return any(not ascii_domain(address).isascii() for address in (sender.email, sender.reply_to))


@lru_cache(maxsize=256)
def _reply_to(address: str) -> str:
    return _safe(ascii_domain(address))


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
        self.utf8 = needs_smtputf8(self.sender)
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
        headers = b"".join([_fold(name, value) for name, value in composed.headers])
        if len(composed.bodies) == 1:
            ((subtype, body),) = composed.bodies
            return _PART_HEADERS[subtype] + _MIME_VERSION + headers + b"\r\n" + _wire_body(body)
        # Drawn as the generator draws it. The generator also makes sure that
        # no line of the parts is the boundary: none can be, as the parts hold
        # only their fixed headers and quoted-printable text, where "==" never
        # occurs.
        boundary = BytesGenerator._make_boundary().encode("ascii")
        content_type = _fold("Content-Type", f'multipart/alternative; boundary="{boundary.decode("ascii")}"')
        parts = [_PART_HEADERS[subtype] + b"\r\n" + _wire_body(body) for subtype, body in composed.bodies]
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
            ("To", _safe(ascii_domain(letter.email))),
        ]
        if sender.reply_to:
            headers.append(("Reply-To", _reply_to(sender.reply_to)))
        public_id = str(letter.public_id)
        headers += [
            # Contact data must never make a letter refused: its controls become spaces.
            ("Subject", _text_header(header_text(rendering.render(self.subject, context, html=False)))),
            ("Date", _date()),
            ("Message-ID", f"<{public_id}@{sender_from.domain}>"),
            (LETTER_HEADER, public_id),
            # RFC 8058 one-click unsubscribe: mailbox providers POST to the URL.
            ("List-Unsubscribe", _safe(f"<{context['unsubscribe_url']}>")),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ]
        return _Letter(bodies, headers)


def build_message(letter: Letter, server: SmtpServer, mailing: Mailing | None = None, *, reply_to: str = "") -> Message:
    """One letter as a Message (a batch makes its letters with one Builder)."""
    return Builder(server, mailing or letter.mailing, reply_to=reply_to).message(letter)


def _quoted_printable(body: str) -> bytes:
    """A UTF-8 text in quoted-printable: readable in the raw message,
    unlike base64."""
    return binascii.b2a_qp(body.replace("\r\n", "\n").encode("utf-8"), istext=True)


def _part_headers(subtype: str) -> list[tuple[str, str]]:
    return [("Content-Type", f'text/{subtype}; charset="utf-8"'), ("Content-Transfer-Encoding", "quoted-printable")]


def _text_part(body: str, subtype: str) -> Message:
    part = Message(policy=POLICY)
    for name, value in _part_headers(subtype):
        part[name] = value
    part.set_payload(_quoted_printable(body).decode("ascii"))
    return part


def _wire_body(body: str) -> bytes:
    """The body's lines ended as the generator ends them; a text without a
    CR (the usual one) by a replace, a fifteenth of the regular expression's
    time."""
    encoded = _quoted_printable(body)
    return encoded.replace(b"\n", b"\r\n") if b"\r" not in encoded else _LINE_END.sub(b"\r\n", encoded)


_PART_HEADERS = {
    subtype: b"".join(_fold(name, value) for name, value in _part_headers(subtype)) for subtype in ("plain", "html")
}
_MIME_VERSION = _fold("MIME-Version", "1.0")
