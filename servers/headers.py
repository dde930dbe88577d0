"""Headers (and text bodies) as letters carry them over SMTP: the dispatcher's
letters (mailing.dispatch.messages) and the connection test's test letter
are written by the same code, so that a test letter shows what the
mailings will send.

Built on the email package's classic (compat32) policy: the modern one
parses and refolds every header, and the dispatcher cannot afford it on
every letter. A header that is short plain ASCII is written as it is.
Longer headers are folded here, at spaces only, to 78 characters; text
that is not ASCII (a Subject, a sender's display name) goes in encoded
words of at most 75 characters on lines of at most 76 (RFC 2047 §2), cut
after a space where one fits: email.header makes a word as long as the
line it may fill, and the modern folder cuts a display name at any
character, so that a reader drops the space between two words
("ограниченнойответственностью") or the email package's own parser splits
one in two. The classic classes do not refuse line breaks in headers:
safe() refuses every character servers.validators forbids."""

import binascii
import re
from dataclasses import dataclass
from email.policy import Compat32
from email.utils import formataddr

from django.utils.translation import gettext as _

from .validators import first_unsafe

# RFC 5322 §2.1.1: header lines are folded at 78 characters; a line holding
# an encoded word may not pass 76, nor the word 75 (RFC 2047 §2). Folding
# happens only at a space, so a value without one (the unsubscribe link)
# stays whole on its line, as providers parse it most reliably; RFC 5322
# allows up to 998 characters.
LINE_LENGTH = 78
WORDS_LINE_LENGTH = 76
WORD_LENGTH = 75
# A word of ASCII longer than this, with the spaces before it (and, ending
# the text, after it), may not fit a line of 998 beside the header's name:
# such a text goes in encoded words too, cut anywhere.
LONGEST_WORD = 900
# "=?utf-8?b?" and "?=" around the base64 text of an encoded word.
WORD_OVERHEAD = 12
_WORD_PIECES = re.compile(r"\S*\s*")
# What _at_spaces folds before: a word with the spaces before it, the last
# one with those after it too, so that no line is only spaces (obsolete
# syntax, RFC 5322 §4.2: a Subject ending in an empty placeholder's space).
_FOLD_PIECES = re.compile(r" *[^ ]+(?: +$)?| +$")


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
# `name: value` as its header line(s) over SMTP, CRLF ended: the method the
# email package's generator calls for each header of a Message.
fold = WIRE.fold_binary


class HeaderInjection(ValueError):
    pass


def safe(value: str) -> str:
    """`value`, refused (HeaderInjection) if it holds a character that may
    not go into a header."""
    if (found := first_unsafe(value)) is not None:
        raise HeaderInjection(
            _("A header value may not contain U+%(ord)s (position %(value)s).")
            % {"ord": f"{ord(found[1]):04X}", "value": found[0] + 1}
        )
    return value


def text_header(value: str) -> str | Words:
    """A text header's value (a Subject): as it is where it may go so, else
    in encoded words."""
    value = safe(value)
    return value if plain(value) else Words(value)


def plain(value: str) -> bool:
    """Whether `value` may go in a header as it is: text that reads as an
    encoded word ("=?utf-8?b?...?=") would be decoded by the mail client,
    and goes encoded, to be shown as written."""
    return value.isascii() and "=?" not in value and (len(value) <= LONGEST_WORD or _words_fit(value))


def _words_fit(value: str) -> bool:
    """Whether every line _at_spaces would write fits under 998: a run of
    spaces goes on one line with the word after it."""
    return max(map(len, _FOLD_PIECES.findall(f" {value}")), default=0) <= LONGEST_WORD


def mailbox(name: str, email: str) -> str | Mailbox:
    """formataddr((name, email)) for a name that may go as it is (quoted
    where needed); else the name for encoded words, folded short. The
    address as it is, also one that is not ASCII, which formataddr refuses
    (RFC 6532). Both already checked (safe())."""
    if not name:
        return email
    if not plain(name):
        return Mailbox(name, email)
    return formataddr((name, email)) if email.isascii() else formataddr((name, "")).removesuffix("<>") + f"<{email}>"


def quoted_printable(body: str) -> bytes:
    """A UTF-8 text in quoted-printable: readable in the raw message,
    unlike base64."""
    return binascii.b2a_qp(body.replace("\r\n", "\n").encode("utf-8"), istext=True)


# How the generator ends the lines of a body: every CR, LF or CRLF as CRLF.
_LINE_END = re.compile(rb"\r\n|\r|\n")


def wire_body(body: str) -> bytes:
    """quoted_printable(body) with its lines ended as the generator ends
    them; a text without a CR (the usual one) by a replace, a fifteenth of
    the regular expression's time."""
    encoded = quoted_printable(body)
    return encoded.replace(b"\n", b"\r\n") if b"\r" not in encoded else _LINE_END.sub(b"\r\n", encoded)


def text_part_headers(subtype: str) -> list[tuple[str, str]]:
    """The content headers of a text part in quoted-printable UTF-8."""
    return [("Content-Type", f'text/{subtype}; charset="utf-8"'), ("Content-Transfer-Encoding", "quoted-printable")]
