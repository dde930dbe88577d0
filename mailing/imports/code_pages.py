"""Which 8-bit encoding wrote a CSV that is not UTF-8 (nor UTF-16, which
the upload rewrote in UTF-8 before).

The encodings our users' tools write read any file, or nearly: Windows-1251,
KOI8-R and KOI8-U, CP866 (DOS, 1C), Mac Cyrillic, and Windows-1258
(Vietnamese). So each reading is weighed as text its language could hold:

1. The evidence is the tokens with a non-ASCII character: letters and
   non-ASCII symbols with no space, digit or ASCII punctuation between
   them ("«Ромашка»" is one), the first EVIDENCE_ITEMS of them. ASCII reads
   the same in every one of them and says nothing.
2. A token the reading's language cannot have written is odd: a Latin word
   with a Cyrillic letter in it ("NguyЦn", Vietnamese read as Russian), a
   Cyrillic word with lower case before upper ("иВАН", Windows-1251 read as
   KOI8-R, whose cases are swapped), a letter Russian, Ukrainian and
   Belarusian lack (Serbian "Ќ", Mac Cyrillic read as Windows-1251), a
   Vietnamese word with two tone marks ("Èâàí", Russian read as
   Windows-1258), a symbol inside a word but an apostrophe or a dash
   ("M№ller"), a box-drawing character (KOI8 or DOS read as another), a
   non-ASCII character in an address of an ASCII domain (a damaged byte
   in any reading: a mailbox of a Latin domain is Latin), and a token made
   of pairs the language (almost) never writes. An international domain's
   letters are weighed as words: Excel on a Russian Windows writes "CSV"
   in Windows-1251 today, and "info@компания.рф" is an address we mail. A
   reading with more than a tenth of odd tokens is out (a foreign name or a
   typo is allowed).
3. Of the readings left, the likeliest wins: each pair of characters in its
   tokens is weighed by how often it comes in the language (letter_pairs,
   counted from our translations, Django's, and names, companies and
   cities), per pair, with a prior for the rarer encodings. Lower case is
   the most frequent, so Windows-1251 read as KOI8-R in capitals ("ИВАНОВ"
   as "ихюмнб") is told apart, and a closing quote never comes before a
   letter ("»ван" is Windows-1251's "Иван" read as Mac Cyrillic).

Ties go to the first in READINGS. Where two encodings make the same letters
of the bytes (capitals are the same bytes in CP866 and Mac Cyrillic), either
gives the same text."""

import codecs
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from itertools import chain, pairwise
from typing import BinaryIO, NoReturn

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from .limits import MAX_LINE_BYTES

# Python's codec: the language model that reads it, and how much rarer the
# encoding is than the usual one of its language (a log prior, in nats): a
# reading of a few letters that two encodings both make words of goes to the
# common one ("№" in Windows-1251 is "є" in Mac Cyrillic); more letters
# outweigh it.
READINGS = {
    "cp1251": ("cyrillic", 0.0),
    "koi8_u": ("cyrillic", -1.0),  # KOI8-R, and the Ukrainian letters on 8 of its box-drawing bytes
    "cp866": ("cyrillic", -1.5),
    "mac_cyrillic": ("cyrillic", -3.0),
    "cp1258": ("vietnamese", 0.0),
}
# The bytes where KOI8-U has Ukrainian letters and KOI8-R box drawing: a
# file without them is KOI8-R, which is what it is then called.
KOI8_U_ONLY = re.compile(b"[\xa4\xa6\xa7\xad\xb4\xb6\xb7\xbd]")
# What the mapping page calls the encoding it read the file in.
NAMES = {
    "utf-8": gettext_lazy("UTF-8"),
    "cp1251": gettext_lazy("Windows-1251"),
    "koi8_r": gettext_lazy("KOI8-R"),
    "koi8_u": gettext_lazy("KOI8-U (Ukrainian)"),
    "cp866": gettext_lazy("CP866 (DOS)"),
    "mac_cyrillic": gettext_lazy("Mac Cyrillic"),
    "cp1258": gettext_lazy("Windows-1258"),
}
EVIDENCE_ITEMS = 2000
# A non-ASCII character but a space: a no-break space, which any reading may
# make, tells nothing, and a run of them is skipped by the search, not in
# Python one by one (5 MB of them held a request for seconds).
NON_ASCII = re.compile(r"[^\x00-\x7f\s]")
# A line of valid UTF-8 with a character that is not ASCII (see utf8_line).
_UTF8_ASCII = rb"[\x00-\x09\x0b-\x7f]"
_UTF8_WIDE = (
    rb"(?:[\xc2-\xdf][\x80-\xbf]|\xe0[\xa0-\xbf][\x80-\xbf]|[\xe1-\xec\xee\xef][\x80-\xbf]{2}"
    rb"|\xed[\x80-\x9f][\x80-\xbf]|\xf0[\x90-\xbf][\x80-\xbf]{2}|[\xf1-\xf3][\x80-\xbf]{3}|\xf4[\x80-\x8f][\x80-\xbf]{2})"
)
_UTF8_TEXT = rb"%s*%s(?:%s|%s)*$" % (_UTF8_ASCII, _UTF8_WIDE, _UTF8_ASCII, _UTF8_WIDE)
UTF8_LINE = re.compile(rb"^" + _UTF8_TEXT, re.M)
# Such a line (group 1) and whether the next is one too (group 2): at a
# line's start, and after a "\n" (found first by a fast search, not tried
# at each byte: a quarter of the time on rows of contacts).
_UTF8_LINES = rb"(%s)(\n%s)?" % (_UTF8_TEXT, _UTF8_TEXT)
UTF8_LINES_HERE = re.compile(_UTF8_LINES, re.M)
UTF8_LINES_NEXT = re.compile(rb"\n" + _UTF8_LINES, re.M)
_BLANK_NON_ASCII = bytes(range(128)) + b" " * 128  # a table for bytes.translate
_NON_ASCII_BYTES = bytes(range(128, 256))
# A file with lines of UTF-8 and lines that are not is two exports, the
# other in a code page, where UTF-8 cannot read this many places of them: a
# code page's word is about one a letter ("Имя" in Windows-1251 is three),
# a damaged UTF-8 character one or two (a lead byte alone, then 0xFF).
DAMAGE_SPOTS = 3
# No language writes a word this long: such a token is odd, and neither
# walked back to its start, matched to its end nor weighed pair by pair (one
# 5 MB "word" held a request for seconds); the rest of it is more such tokens.
LONGEST_WORD = 64
# The bytes of a word in every reading: ASCII letters and the 8-bit half.
WORD_AT_END = re.compile(rb"[A-Za-z\x80-\xff]+\Z")
# A token: letters and non-ASCII symbols, no space, digit or ASCII
# punctuation (a cell's delimiter, an address's "@"); "«Ромашка»" is one.
TOKEN_CHAR = re.compile(r"[^\W\d_]|[^\x00-\x7f\w\s]")
TOKEN = re.compile(r"(?:[^\W\d_]|[^\x00-\x7f\w\s])+")
LATIN_RUN = re.compile("[a-z]+")
ADDRESS_EDGE = re.compile(r"[\s,;<>\"'()\[\]]")  # what ends an address in a cell
# Symbols a contact list holds: quotes, apostrophes, dashes, "№", money.
TYPOGRAPHIC = frozenset("«»„“”‘’‚ʼ–—…№•·°€₽₫©®™§±×")
INSIDE_WORDS = frozenset("’ʼ–—")
CYRILLIC_LETTERS = frozenset("абвгдеёжзийклмнопрстуфхцчшщъыьэюяґєіїў")
TONE_MARKS = frozenset("\u0300\u0301\u0303\u0309\u0323")
VIETNAMESE_MARKS = TONE_MARKS | frozenset("\u0302\u0306\u031b")
# Per pair of letters, in nats: a token below this is made of pairs the
# language (almost) never writes ("шш", a stray byte read as Cyrillic).
IMPLAUSIBLE = -8.0
# The characters of our users' languages as UTF-8 writes them: Cyrillic,
# Latin with its accents (Vietnamese too, precomposed or with combining
# marks), and the punctuation their files hold.
# A character neither ASCII nor of them, found in one search of the line (a
# match per character held a 50 MB file's upload for seconds).
NOT_OURS = re.compile(
    "[^\x00-\x7f\u00c0-\u024f\u0300-\u036f\u0400-\u04ff\u1e00-\u1eff"  # letters, combining marks
    "\u00a0\u00a7\u00a9\u00ab\u00ae\u00b0\u00b1\u00b7\u00bb"  # «», §, ©, ®, °, ±
    "\u02bc\u2010-\u2026\u2116\u2122\u20a0-\u20cf]"  # the Ukrainian apostrophe, dashes, quotes, №, ™, ₴ ₽ ₫ €
)


@dataclass
class Evidence:
    items: int = 0  # tokens with a non-ASCII character
    odd: int = 0  # of them, those the reading's language cannot have written
    fit: float = 0.0  # the log-likelihood of the tokens that are not odd, in nats
    pairs: int = 0  # the pairs of characters it was summed over
    first_odd_line: int = 0

    @property
    def acceptable(self) -> bool:
        return self.odd * 10 <= self.items

    def score(self, prior: float) -> float:
        """The log-likelihood per pair of characters, the prior included:
        the fewer the pairs, the more the prior counts."""
        return (self.fit + prior) / self.pairs if self.pairs else -math.inf


class LetterPairs:
    """How likely each character of a token is after the one before, in a
    language ("^" starts the token, "$" ends it). A pair never counted gets
    a share of how often its second character comes at all, the larger the
    more kinds of characters were seen after its first (Witten-Bell): after
    a closing quote, which was always seen last, a letter is very unlikely."""

    def __init__(self, table: str) -> None:
        self.pairs = {item[:2]: int(item[2:]) for item in table.split()}
        self.after: Counter[str] = Counter()  # how often each character comes first in a pair
        self.kinds: Counter[str] = Counter()  # how many different ones come after it
        second: Counter[str] = Counter()
        for pair, n in self.pairs.items():
            self.after[pair[0]] += n
            self.kinds[pair[0]] += 1
            second[pair[1]] += n
        total, size = sum(second.values()), len(second) + 1
        self.alone = {ch: (n + 1) / (total + size) for ch, n in second.items()}
        self.never = 1 / (total + size)  # a character never counted

    def log_likelihood(self, token: str) -> tuple[float, int]:
        padded = f"^{token}$"
        pairs = [padded[i : i + 2] for i in range(len(padded) - 1)]
        return sum(math.log(self._probability(pair)) for pair in pairs), len(pairs)

    def _probability(self, pair: str) -> float:
        first, second = pair
        alone = self.alone.get(second, self.never)
        if not self.after[first]:
            return alone
        kinds = self.kinds[first]
        return (self.pairs.get(pair, 0) + kinds * alone) / (self.after[first] + kinds)


@cache
def _model(language: str) -> LetterPairs:
    from . import letter_pairs  # written by scripts/letter_stats.py, which reads this module

    return LetterPairs(getattr(letter_pairs, language.upper()))


def past_bom(f: BinaryIO) -> int:
    """Puts `f` at its start, past a UTF-8 BOM if it has one, and returns
    that offset: a BOM is no evidence of an encoding nor text (some exports
    write one, then a code page's letters)."""
    f.seek(0)
    offset = len(codecs.BOM_UTF8) if f.read(len(codecs.BOM_UTF8)) == codecs.BOM_UTF8 else 0
    f.seek(offset)
    return offset


def utf8_line(raw: bytes) -> str | None:
    """The line read as UTF-8 where a code page's file has a line a later
    export wrote in UTF-8: valid UTF-8, its non-ASCII characters all of our
    users' languages (detection.decode_line); else None. A BOM before it
    is the later export's start (Excel's "CSV UTF-8" writes one, and files
    put together byte for byte keep it): no text, left out."""
    if raw.isascii():
        return None
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        return None
    return None if NOT_OURS.search(text) else text


def _without_utf8_lines(piece: bytes) -> bytes:
    """`piece` with the non-ASCII bytes of its whole lines that are UTF-8
    (utf8_line) made spaces, the same length: they are read as UTF-8, so
    they are no evidence of the code page (a file of two exports, the later
    one's rows in UTF-8, was refused: its UTF-8 rows read as the code page's
    letters were odd words, and UTF-8's "И" holds 0x98, no character of
    Windows-1251). ASCII reads the same in every reading and stays."""
    if piece.isascii():
        return piece
    out, done, at = [], 0, 0  # piece[:done] is in out; lines are looked for from `at`
    # A run of lines at a time, not a line: the first line UTF-8 could have
    # written is found by one search (a walk line by line held 50 MB of
    # short lines' upload for 6 to 15 s), and the lines of valid UTF-8 from
    # there by one decoding (a step a UTF-8 line held 20 MB of "Ж" lines
    # after a Windows-1251 header 5.5 s, against 0.27 s before the lines
    # were looked for).
    while True:
        here = UTF8_LINES_HERE.match(piece, at)
        for found in chain([here] if here else [], UTF8_LINES_NEXT.finditer(piece, at)):
            start, end = found.span(1)
            if found.group(2):  # a run of them, not a line of a file whose lines alternate
                at = _utf8_lines_end(piece, start, end)
                out += (piece[done:start], _blank_utf8_lines(piece[start:at]))
                done = at
                break
            if utf8_line(found.group(1)) is not None:
                out += (piece[done:start], found.group(1).translate(_BLANK_NON_ASCII))
                done = end
        else:
            return b"".join([*out, piece[done:]]) if out else piece


def _utf8_lines_end(piece: bytes, start: int, first_end: int) -> int:
    """Where the lines of valid UTF-8 from `start` end, the first of them
    ending at `first_end`: the end of `piece` or the start of the first
    line that is not. Read in windows that double from about the first
    line's length: an error's exception holds a copy of what was decoded,
    and lines that alternate between UTF-8 and the code page would copy the
    rest of the piece at each line."""
    at, size = start, 256 + 2 * (first_end - start)
    while True:
        end = min(at + size, len(piece))
        try:
            _, read = codecs.utf_8_decode(piece[at:end], "strict", end == len(piece))
        except UnicodeDecodeError as exc:
            return piece.rfind(b"\n", start, at + exc.start) + 1
        if end == len(piece):
            return end
        at, size = at + read, size * 2


def _blank_utf8_lines(run: bytes) -> bytes:
    """`run`, whole lines of valid UTF-8, with the non-ASCII bytes of those
    utf8_line reads made spaces: those with a character none of our users'
    languages writes are kept whole (found by one search of the run)."""
    text = run.decode("utf-8")
    out, done = [], 0  # run[:done] is in out
    char, byte = 0, 0  # text[:char] is run[:byte]
    while found := NOT_OURS.search(text, char):
        line_start = text.rfind("\n", 0, found.start()) + 1
        line_end = text.find("\n", found.start())
        line_end = len(text) if line_end < 0 else line_end
        start = byte + len(text[char:line_start].encode())
        end = start + len(text[line_start:line_end].encode())
        if utf8_line(run[start:end]) is None:  # not a BOM that starts it (the later export's)
            out += (run[done:start].translate(_BLANK_NON_ASCII), run[start:end])
            done = end
        char, byte = line_end, end
    return b"".join([*out, run[done:].translate(_BLANK_NON_ASCII)])


def legacy_encoding(f: BinaryIO, *, chunk_bytes: int) -> str:
    """The encoding whose reading of `f` is likeliest text (see the module's
    docstring); else the file is refused, naming the first line that reads
    as none of them. A file of UTF-8 lines whose others UTF-8 cannot read in
    fewer than DAMAGE_SPOTS places is UTF-8 with a damaged row: "utf-8"
    (its UTF-8 lines no evidence, the damaged one named the code page)."""
    evidence = {codec: Evidence() for codec in READINGS}
    undefined: dict[str, tuple[int, int]] = {}  # codec: (byte, position)
    lines, koi8_u = 0, False
    utf8_bytes, unreadable = 0, 0  # the non-ASCII bytes of UTF-8 lines; what UTF-8 cannot read in the others
    for start, weighed, chunk, at in line_pieces(f, chunk_bytes):
        utf8_bytes += _non_ascii_bytes(chunk) - _non_ascii_bytes(weighed)  # the pieces are the chunks' bytes
        if unreadable < DAMAGE_SPOTS:
            unreadable += weighed.decode("utf-8", "replace").count("\ufffd")
        # ASCII reads alike in every reading and is no evidence, nor are a
        # UTF-8 part's lines, blanked: a piece of them is not read five times.
        plain = weighed.isascii()
        koi8_u = koi8_u or (not plain and bool(KOI8_U_ONLY.search(weighed)))
        for codec, seen in evidence.items():
            try:
                text = "" if plain else weighed.decode(codec)  # a byte a character: positions in text are in the piece
            except UnicodeDecodeError as exc:
                undefined.setdefault(codec, (weighed[exc.start], start + exc.start))
                continue
            if codec == "cp1251" and chunk:  # a start with 0x98, never Windows-1251, is refused naming the byte
                refuse_binary(chunk, at)
            if codec not in undefined and seen.items < EVIDENCE_ITEMS:
                _weigh(text, READINGS[codec][0], seen, lines)
        lines += weighed.count(b"\n")
    if utf8_bytes and unreadable < DAMAGE_SPOTS:
        return "utf-8"  # a UTF-8 file with a damaged row, not a code page's text and UTF-8 lines
    left = [codec for codec, seen in evidence.items() if codec not in undefined and seen.acceptable]
    if not left:
        _refuse(evidence, undefined)
    best = max(left, key=lambda codec: (evidence[codec].score(READINGS[codec][1]), -list(READINGS).index(codec)))
    return "koi8_r" if best == "koi8_u" and not koi8_u else best


def _non_ascii_bytes(data: bytes) -> int:
    return len(data) - len(data.translate(None, _NON_ASCII_BYTES))


def line_pieces(f: BinaryIO, chunk_bytes: int) -> Iterator[tuple[int, bytes, bytes, int]]:
    """The file past its BOM in pieces of whole lines, as the detection and
    Read again weigh and read it: a line a chunk's end cut goes with the
    next chunk (_last_line), and the lines that are UTF-8 are blanked
    (_without_utf8_lines). Each piece with where it starts in the file, and
    the chunk just read with where that starts (b"" with the last piece)."""
    start, tail = past_bom(f), b""
    while chunk := f.read(chunk_bytes):
        piece = tail + chunk
        cut = _last_line(piece)
        yield start, _without_utf8_lines(piece[:cut]), chunk, start + len(tail)
        start, tail = start + cut, piece[cut:]
    yield start, _without_utf8_lines(tail), b"", start + len(tail)


def _last_line(piece: bytes) -> int:
    """Where the line at the end of `piece` starts, the next chunk may hold
    the rest of it: a line is weighed whole, or not at all where it is
    UTF-8 (_without_utf8_lines). A line longer than the runner reads is cut
    at its last word (_last_word)."""
    start = piece.rfind(b"\n") + 1
    return start if len(piece) - start <= MAX_LINE_BYTES else _last_word(piece)


def _last_word(piece: bytes) -> int:
    """Where the word at the end of `piece` starts, if it has one no longer
    than LONGEST_WORD: the next chunk may hold the rest of it (Windows-1258's
    "ễ" is "ê" and a combining tilde, a tilde alone is odd)."""
    found = WORD_AT_END.search(piece, max(0, len(piece) - LONGEST_WORD))
    return found.start() if found else len(piece)


def _refuse(evidence: dict[str, Evidence], undefined: dict[str, tuple[int, int]]) -> NoReturn:
    if "cp1251" in undefined and not evidence["cp1251"].odd:
        value, position = undefined["cp1251"]
        raise ValidationError(
            _(
                "The file is neither UTF-8 nor Windows-1251 (byte 0x%(value)s at "
                "position %(value2)s). Save it as “CSV UTF-8” and upload it again."
            )
            % {"value": f"{value:02X}", "value2": position}
        )
    raise ValidationError(
        _(
            "The letters on line %(line)s read as none of the encodings the import knows: UTF-8, UTF-16, "
            "Windows-1251, KOI8-R, KOI8-U, CP866 (DOS), Mac Cyrillic or Windows-1258 (Vietnamese). A "
            "Vietnamese file in TCVN3 (ABC) or VNI must be converted to Unicode first (Unikey: “Công cụ "
            "chuyển mã”). Save the file as “CSV UTF-8” and upload it again."
        )
        % {"line": evidence["cp1251"].first_odd_line or 1}
    )


def _weigh(text: str, language: str, evidence: Evidence, lines: int) -> None:
    """Weigh the tokens of `text` that hold a non-ASCII character (see the
    module's docstring). Only those are looked at: a large file of mostly
    ASCII costs a search, not a match per word."""
    if language == "vietnamese":
        text = unicodedata.normalize("NFC", text)  # Windows-1258 writes most tone marks as combining characters
    position = 0
    while evidence.items < EVIDENCE_ITEMS and (found := NON_ASCII.search(text, position)):
        position = found.end()
        start, floor = found.start(), max(0, found.start() - LONGEST_WORD)
        while start > floor and TOKEN_CHAR.match(text, start - 1):
            start -= 1
        evidence.items += 1
        match = TOKEN.match(text, start, start + LONGEST_WORD + 1)  # no further: the regex is slow on a long run
        # "²" alone makes no token; a non-ASCII byte in an address of an ASCII domain is damage
        if (
            match is None
            or match.end() - match.start() > LONGEST_WORD  # whether the walk back stopped at the floor or not
            or _in_address(text, match)
            or not _plausible(match.group(), language, evidence)
        ):
            evidence.odd += 1
            evidence.first_odd_line = evidence.first_odd_line or lines + text.count("\n", 0, start) + 1
        if match is not None:
            position = max(position, match.end())


def _in_address(text: str, match: re.Match) -> bool:
    """Whether the token is in an address whose domain is ASCII."""
    before = ADDRESS_EDGE.split(text[max(0, match.start() - 256) : match.start()])[-1]
    after = ADDRESS_EDGE.split(text[match.end() : match.end() + 256], maxsplit=1)[0]
    address = before + match.group() + after
    return "@" in address and address.rsplit("@", 1)[1].isascii()


def _plausible(token: str, language: str, evidence: Evidence) -> bool:
    """Whether the language could have written `token`; if so, its pairs
    are added to the evidence's fit."""
    if _symbol_inside(token) or (_odd_cyrillic(token) if language == "cyrillic" else _odd_vietnamese(token)):
        return False
    fit, pairs = _model(language).log_likelihood(as_weighed(token, language))
    if fit < IMPLAUSIBLE * pairs:
        return False
    evidence.fit += fit
    evidence.pairs += pairs
    return True


def as_weighed(token: str, language: str) -> str:
    """Lower case; in Cyrillic a run of Latin letters is one character, "L"
    ("«Acme»" is "«L»", a look-alike typed in, "Ивaн", is "ивLн")."""
    token = token.lower()
    return LATIN_RUN.sub("L", token) if language == "cyrillic" else token


def _symbol_inside(token: str) -> bool:
    """Quotes and "№" go around a word; inside one only an apostrophe or a
    dash does ("M№ller" is German read as CP866)."""
    core = token.strip("".join(TYPOGRAPHIC))
    return any(not ch.isalpha() and ch not in INSIDE_WORDS for ch in core)


def _odd_cyrillic(token: str) -> bool:
    """A Latin word with Cyrillic letters in it ("NguyЦn"; a Russian word
    with a Latin look-alike typed in, "Ивaн", is not odd), a character of
    neither alphabet nor typography, or lower case before upper ("иВАН")."""
    cyrillic = sum(ch.lower() in CYRILLIC_LETTERS for ch in token)
    latin = sum(ch.isascii() for ch in token)  # ASCII in a token is a letter
    if (cyrillic and latin >= cyrillic) or cyrillic + latin + sum(ch in TYPOGRAPHIC for ch in token) < len(token):
        return True
    return any(a.islower() and b.isupper() for a, b in pairwise(token))


def _odd_vietnamese(token: str) -> bool:
    """A character no Vietnamese word or typography has, VNI's "a"/"e" +
    accented letter, or more than one tone mark (a word is one syllable)."""
    tones = 0
    for i, ch in enumerate(token):
        if ch.isascii():
            if ch in "aeAE" and i + 1 < len(token) and not token[i + 1].isascii() and token[i + 1].isalpha():
                return True
        elif ch not in TYPOGRAPHIC and not _vietnamese_letter(ch):
            return True
        tones += sum(mark in TONE_MARKS for mark in unicodedata.normalize("NFD", ch))
    return tones > 1


def _vietnamese_letter(ch: str) -> bool:
    if ch in "đĐ":
        return True
    base, *marks = unicodedata.normalize("NFD", ch)
    return base in "aeiouyAEIOUY" and bool(marks) and set(marks) <= VIETNAMESE_MARKS


def refuse_binary(chunk: bytes, offset: int) -> None:
    """NUL bytes at the start make a binary file (UTF-16 was made UTF-8
    before): refused. Later ones are a damaged row, which the import rejects
    with its line, as it does whatever the encoding."""
    if offset <= len(codecs.BOM_UTF8) and b"\x00" in chunk:  # the first chunk, read past a BOM or not
        raise ValidationError(
            _(
                "This does not look like a text CSV file: it contains NUL bytes (the "
                "first at position %(index)s). Save it as CSV."
            )
            % {"index": offset + chunk.index(0)}
        )
