"""Which encoding an upload is in: UTF-8 (with or without a BOM), UTF-16
(rewritten in UTF-8), else an 8-bit code page (code_pages)."""

import codecs
import os
import re
import secrets
from pathlib import Path
from typing import BinaryIO

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from . import code_pages
from .limits import CHUNK_BYTES

NOT_ASCII = re.compile(rb"[\x80-\xff]")
NON_ASCII_TEXT = re.compile(r"[^\x00-\x7f]")


def _detect_encoding(f: BinaryIO) -> str:
    """UTF-8 (with or without a BOM) when the file's first line with
    non-ASCII bytes after a BOM is valid UTF-8, else the 8-bit encoding
    whose reading makes the most likely text (code_pages). A UTF-8 file
    with a stray bad byte later on stays UTF-8 (in its first line of
    letters too, when no code page reads the file): that row is rejected,
    the rest is not garbled."""
    head = f.read(4)
    if head.startswith(b"PK\x03\x04") or head.startswith(b"\xd0\xcf\x11\xe0"):
        raise ValidationError(_("This is an Excel workbook, not a CSV file. In Excel choose Save As → “CSV UTF-8”."))
    # A UTF-8 BOM is no evidence: some exports write one, then a code page.
    offset = code_pages.past_bom(f)
    decoder = codecs.getincrementaldecoder("utf-8")()
    letters = False  # the first line of letters began in an earlier chunk, valid so far
    while chunk := f.read(CHUNK_BYTES):
        try:
            text = decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            valid = exc.object[: exc.start]
            if b"\n" in valid if letters else _first_non_ascii_line_valid(valid):
                return "utf-8"
            try:
                return code_pages.legacy_encoding(f, chunk_bytes=CHUNK_BYTES)
            except ValidationError:
                if valid.isascii() and not letters:
                    raise
                return "utf-8"  # no code page reads it, its first character is UTF-8: that line is damaged
        code_pages.refuse_binary(chunk, offset)
        if letters and "\n" in text:
            return "utf-8"
        if not letters and (first := NON_ASCII_TEXT.search(text)):
            if "\n" in text[first.start() :]:
                return "utf-8"
            letters = True  # the line goes on in the next chunk
        offset += len(chunk)
    return "utf-8"


def _first_non_ascii_line_valid(valid: bytes) -> bool:
    """Whether the bytes before the first invalid one hold a whole line with
    non-ASCII characters. Two letters of a code page are often one UTF-8
    character (Windows-1251's "Віктор" starts with "³" in UTF-8, "Пётр"
    with "ϸ"), the bytes after them invalid: the evidence is the first line
    with non-ASCII bytes, not its first character."""
    first = NOT_ASCII.search(valid)
    return first is not None and b"\n" in valid[first.start() :]


def unreadable_byte(f: BinaryIO, encoding: str) -> int | None:
    """The offset of the first byte `encoding` has no character for, or
    None when it reads the whole file. UTF-8 by the upload's rule: a bad
    byte after valid non-ASCII text is a damaged row, which the import
    rejects alone, not a file in another encoding. A code page's by the
    runner's rule: a line that is UTF-8 is read as UTF-8 (decode_line), so
    its bytes are none of the code page's (UTF-8's "И" is D0 98, and 0x98
    no character of Windows-1251)."""
    if encoding != "utf-8":
        return _unreadable_in_code_page(f, encoding)
    decoder = codecs.getincrementaldecoder(encoding)()
    offset = code_pages.past_bom(f)  # a BOM is no text: the runner skips it in any encoding
    non_ascii = False
    while True:
        chunk = f.read(CHUNK_BYTES)
        try:
            text = decoder.decode(chunk, final=not chunk)
        except UnicodeDecodeError as exc:
            if encoding == "utf-8" and (non_ascii or not exc.object[: exc.start].isascii()):
                return None
            # exc.object is what the decoder held back from the last chunk, then this one.
            return offset - (len(exc.object) - len(chunk)) + exc.start
        if not chunk:
            return None
        non_ascii = non_ascii or not text.isascii()
        offset += len(chunk)


def _unreadable_in_code_page(f: BinaryIO, encoding: str) -> int | None:
    for start, piece, _chunk, _at in code_pages.line_pieces(f, CHUNK_BYTES):
        try:
            piece.decode(encoding)  # a byte a character
        except UnicodeDecodeError as exc:
            return start + exc.start
    return None


def _utf16_to_utf8(path: Path) -> str | None:
    """Excel's "Unicode Text" (and other tools' UTF-16, with a BOM or not)
    is rewritten in UTF-8, chunk by chunk, in place of the upload: the
    runner reads lines by their b"\\n", which UTF-16 splits. A broken
    character stays a byte invalid in UTF-8, so its row alone is rejected.
    Returns "utf-8" when the file was UTF-16."""
    with path.open("rb") as f:
        head = f.read(CHUNK_BYTES)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        codec = "utf-16"  # which reads the BOM and drops it
    elif b"\x00" in head and _looks_like_utf16(head):
        codec = "utf-16-be" if head[0::2].count(0) > head[1::2].count(0) else "utf-16-le"
    else:
        return None
    decoder = codecs.getincrementaldecoder(codec)(errors="surrogatepass")
    converted = path.with_name(f"{secrets.token_hex(16)}.csv")
    fd = os.open(converted, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with path.open("rb") as source, os.fdopen(fd, "wb") as out:
            while chunk := source.read(CHUNK_BYTES):
                out.write(decoder.decode(chunk).encode("utf-8", "surrogatepass"))
            try:
                out.write(decoder.decode(b"", final=True).encode("utf-8", "surrogatepass"))
            except UnicodeDecodeError:
                out.write(b"\xff")  # an odd byte at the end: the last row is rejected
        converted.replace(path)
    finally:
        converted.unlink(missing_ok=True)
    return "utf-8"


def _looks_like_utf16(chunk: bytes) -> bool:
    """UTF-16 without a BOM: the NUL half of every ASCII character (the
    digits, "@", the delimiters) falls on even bytes (big-endian) or odd
    bytes (little-endian) only; a binary file has them anywhere."""
    head = chunk[:4096]
    even, odd = head[0::2].count(0), head[1::2].count(0)
    return max(even, odd) >= len(head) // 8 and min(even, odd) * 10 <= max(even, odd)


def decode_line(raw: bytes, encoding: str, errors: str = "strict") -> str:
    """One line of a file in `encoding`. A line of a code page's file that
    is UTF-8, its non-ASCII characters all of our users' languages, is read
    as UTF-8: a file put together from two exports (one in Windows-1251, a
    later one in UTF-8) kept the later rows' names garbled, with no word
    said. A code page's own text is almost never valid UTF-8 (two of its
    letters in a row are a lead byte and no continuation), and where it
    happens the characters UTF-8 makes are no language's ("ФЁ" in
    Windows-1251 is UTF-8's "Ԩ")."""
    if encoding not in ("utf-8", "ascii") and (text := code_pages.utf8_line(raw)) is not None:
        return text
    return raw.decode(encoding, errors)
