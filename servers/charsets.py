"""Bytes a mail system wrote as readable text, whatever its charset label
says: a bounce report's parts (mailing.bounces) and a server's replies
(servers.errors.server_words).

Russian servers, old Exchange and Exim send 8-bit Windows-1251 or KOI8-R
under labels Python does not know (`win-1251`, `windows1251`, `x-cp1251`,
`koi8r`), under a wrong one (`us-ascii`, `utf-8`, `iso-8859-1`), or under
none at all (a Diagnostic-Code cannot declare one). Decoded as UTF-8 with
replacement, the remote server's reason ("Пользователь не найден") was
lost. The order here: the declared charset when it is a multi-byte one
that decodes the bytes (ISO-2022-JP is pure ASCII), then UTF-8 (valid
UTF-8 is almost never an accident), then, line by line for the lines that
are not UTF-8, a Cyrillic label as declared, Windows-1251 or KOI8-R as the
bytes look, a declared single-byte charset, and UTF-8 with U+FFFD for
what is left.
Never raises."""

import codecs
import re
from functools import lru_cache

# Cyrillic in a single byte: Windows-1251 or KOI8-R, which the heuristic tells apart.
CYRILLIC_8BIT = ("cp1251", "koi8_r")
# Labels that say nothing of the bytes: the email package's name for raw
# bytes, and the ASCII default that 8-bit bytes contradict.
NO_LABEL = {"unknown-8bit", "ascii", "x-unknown"}
# Labels in the wild that Python does not know, after _normalised().
ALIASES = (
    (re.compile(r"^(?:windows|win|cp|ms|ansi)(12\d\d|866|874|125\d)$"), r"cp\1"),
    (re.compile(r"^(?:dos|ibm)(866)$"), r"cp\1"),
    (re.compile(r"^koi8([ru]?)$"), r"koi8_\1"),
    (re.compile(r"^maccyrillic$"), "mac_cyrillic"),
)
# What a Russian word is made of: a Cyrillic letter next to a Latin one is
# a wrong reading (German "Müller" read as Windows-1251 is "Mьller").
CYRILLIC = re.compile(r"[\u0400-\u04ff]")
LATIN = re.compile(r"[a-zA-Z\u00c0-\u024f]")
WORD = re.compile(r"[^\W\d_]+")


def decode(data: bytes, charset: str | None) -> str:
    """`data` as text: see the module's docstring for the order. A report
    in UTF-8 may quote a remote reply in Windows-1251: the lines that are
    not UTF-8 are read in the 8-bit charset, the others stay UTF-8."""
    codec = codec_name(charset)
    multi_byte = bool(codec) and not _single_byte(codec) and _ascii_compatible(codec)
    if multi_byte and (text := _strict(data, codec)) is not None:
        return text
    if (text := _strict(data, "utf-8")) is not None:
        return text
    lines = [(line, _strict(line, "utf-8") or _flawed_utf8(line)) for line in data.splitlines(keepends=True)]
    eight_bit = _eight_bit_codec(b"".join(line for line, text in lines if text is None), codec)
    return "".join(text if text is not None else line.decode(eight_bit, errors="replace") for line, text in lines)


def _flawed_utf8(line: bytes) -> str | None:
    """A line of UTF-8 with a flaw (a character cut at a length limit, a
    stray byte): it holds valid UTF-8 beyond ASCII, which no 8-bit reading
    would make words of. Read as UTF-8, U+FFFD for the flaw."""
    text = line.decode("utf-8", errors="replace")
    return text if any(ord(ch) > 127 and ch != "\ufffd" for ch in text) else None


def _eight_bit_codec(data: bytes, declared: str) -> str:
    """A declared Cyrillic charset; else Windows-1251 or KOI8-R when the
    bytes read as Russian in one of them; else the declared single-byte
    charset (German in Latin-1); else UTF-8, whose U+FFFD marks a stray
    byte (Dovecot stores a NUL as 0x80) better than a guessed letter."""
    single_byte = bool(declared) and _single_byte(declared)
    if declared in CYRILLIC_8BIT or (single_byte and _cyrillic_only(declared)):
        return declared
    return _cyrillic_codec(data) or (declared if single_byte else "utf-8")


def codec_name(charset: str | None) -> str:
    """Python's codec for a charset label, including the aliases mail
    systems write; "" when the label is missing or unknown."""
    label = (charset or "").strip().strip("\"'").lower()
    if not label or label in NO_LABEL:
        return ""
    for candidate in (label, label.removeprefix("x-"), _aliased(_normalised(label))):
        try:
            name = codecs.lookup(candidate).name
        except LookupError:
            continue
        return "" if name in NO_LABEL else name
    return ""


def _normalised(label: str) -> str:
    return re.sub(r"[^a-z0-9]", "", label.removeprefix("x-"))


def _aliased(label: str) -> str:
    for pattern, replacement in ALIASES:
        if pattern.match(label):
            return pattern.sub(replacement, label)
    return label


def _strict(data: bytes, codec: str) -> str | None:
    try:
        return data.decode(codec)
    except (UnicodeError, LookupError, ValueError):
        return None


@lru_cache(maxsize=64)
def _single_byte(codec: str) -> bool:
    """A codec that reads every byte as one character, and so never fails
    on any bytes: its success says nothing of them."""
    try:
        return len(bytes(range(128, 256)).decode(codec, errors="replace")) == 128
    except (LookupError, ValueError, TypeError):
        return False


@lru_cache(maxsize=64)
def _ascii_compatible(codec: str) -> bool:
    """Whether ASCII stays ASCII (UTF-8, ISO-2022-JP, GB2312 do; UTF-16
    makes Chinese of any even number of bytes, which no text part is in)."""
    return _strict(b"Mail 550", codec) == "Mail 550"


@lru_cache(maxsize=64)
def _cyrillic_only(codec: str) -> bool:
    """A single-byte charset made for Cyrillic (ISO-8859-5, CP866, Mac):
    trusted as declared, as Windows-1251 and KOI8-R are."""
    high = bytes(range(192, 256)).decode(codec, errors="replace")
    return len(CYRILLIC.findall(high)) > 48


def _cyrillic_codec(data: bytes) -> str:
    """Windows-1251 or KOI8-R, whichever reads the bytes as Russian (mostly
    lower-case letters: each charset's lower case is the other's upper
    case); "" when neither makes Cyrillic words of them."""
    readings = {codec: data.decode(codec, errors="replace") for codec in CYRILLIC_8BIT}
    best = max(readings, key=lambda codec: sum(ch.islower() for ch in CYRILLIC.findall(readings[codec])))
    return best if _reads_as_cyrillic(readings[best]) else ""


def _reads_as_cyrillic(text: str) -> bool:
    """Most words with a Cyrillic letter are all Cyrillic, not Latin words
    with an accented letter read as Cyrillic, and there is at least one
    real word (a lone stray byte is no Russian)."""
    words = [w for w in WORD.findall(text) if CYRILLIC.search(w)]
    mixed = sum(1 for w in words if LATIN.search(w))
    return any(len(w) > 1 for w in words) and mixed * 4 <= len(words)
