"""JSON bodies, bounded: DRF reads the request stream itself, past
Django's DATA_UPLOAD_MAX_MEMORY_SIZE, so the limit is ours to keep."""

import codecs
import json
import math
import unicodedata

from django.conf import settings
from django.utils.formats import localize
from django.utils.http import parse_header_parameters
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser

from .problems import Problem


def _too_large() -> Problem:
    mb = round(settings.API_MAX_BODY_BYTES / 2**20, 2)
    shown = localize(int(mb) if mb == int(mb) else mb)  # as the caller's language writes it: "1,5"
    return Problem(413, "too-large", _("Request too large"), _("The body may be at most %(mb)s MB.") % {"mb": shown})


class BoundedJSONParser(BaseParser):
    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        request = (parser_context or {}).get("request")
        limit = settings.API_MAX_BODY_BYTES
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0) if request is not None else 0
        except ValueError:
            declared = 0
        if declared > limit:
            raise _too_large()
        encoding = _encoding(media_type)
        if stream is None:
            return None
        raw = stream.read(limit + 1)
        if len(raw) > limit:
            raise _too_large()
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError as exc:
            shown = "UTF-8" if encoding == UTF8 else encoding
            detail = _("The body is not %(charset)s text (see byte %(position)s).") % {
                "charset": shown,
                "position": exc.start,
            }
            raise ParseError(detail) from exc
        except UnicodeError:  # a codec that names no byte (punycode): no charset a body is written in
            raise _unsupported(encoding) from None
        try:
            return _composed(
                json.loads(
                    text,
                    parse_constant=_no_constant,
                    parse_float=_finite,
                    parse_int=_integer,
                    object_pairs_hook=_once_each,
                )
            )
        except json.JSONDecodeError as exc:
            raise ParseError(_where(exc)) from exc
        except RecursionError as exc:
            raise ParseError(_("The body is not valid JSON: it is nested too deeply.")) from exc
        except ValueError as exc:  # the hooks' own words, below
            raise ParseError(_("The body is not valid JSON (UTF-8): %(error)s") % {"error": exc}) from exc


# UTF-8, a byte order mark before it left out: 1C sends one by default.
UTF8 = "utf-8-sig"


def _encoding(media_type: str | None) -> str:
    """The charset the Content-Type names, as DRF's own parser reads it
    (a program on Windows says windows-1251 and sends it), else UTF-8. One
    Python has no text codec for is refused: a bytes codec such as
    bz2_codec would unpack a small body into a large one."""
    _type, params = parse_header_parameters(media_type or "")
    charset = params.get("charset", "").strip()
    if not charset:
        return UTF8
    try:
        "".encode(charset)  # refuses the bytes-to-bytes codecs
        name = codecs.lookup(charset).name
    except (LookupError, UnicodeError, ValueError):
        raise _unsupported(charset) from None
    return UTF8 if name == "utf-8" else name


def _unsupported(charset: str) -> Problem:
    return Problem(
        415,
        "unsupported-media-type",
        _("Unsupported media type"),
        _("We cannot read the charset “%(charset)s”: send the body in UTF-8.") % {"charset": charset[:40]},
    )


# What Python's json says is wrong (always in English), in the caller's
# language; a message not named here is left out, the place still given.
JSON_ERRORS = {
    "Expecting value": gettext_lazy("a value was expected"),
    "Expecting ',' delimiter": gettext_lazy("a comma was expected"),
    "Expecting ':' delimiter": gettext_lazy("a colon was expected"),
    "Expecting property name enclosed in double quotes": gettext_lazy("a key in double quotes was expected"),
    "Unterminated string starting at": gettext_lazy("a string is not closed"),
    "Invalid control character at": gettext_lazy("a string holds a control character"),
    "Invalid \\escape": gettext_lazy("a string holds an invalid escape"),
    "Invalid \\uXXXX escape": gettext_lazy("a string holds an invalid escape"),
    "Extra data": gettext_lazy("something follows the JSON value"),
}


def _where(exc: json.JSONDecodeError) -> str:
    place = {"line": exc.lineno, "column": exc.colno}
    what = JSON_ERRORS.get(exc.msg)
    if what is None:
        return _("The body is not valid JSON: at line %(line)s, column %(column)s.") % place
    return _("The body is not valid JSON: %(what)s at line %(line)s, column %(column)s.") % {**place, "what": what}


# What Python's json reads but JSON (RFC 8259) has not: NaN and Infinity,
# numbers too large for a float (read as inf) or with more digits than
# Python converts, and a key twice in one object
# (the last would win, the first lost without a word). Refused as malformed.


def _no_constant(name: str) -> object:
    raise ValueError(_("%(value)s is not a number JSON allows.") % {"value": name})


def _composed(value: object) -> object:
    """Every string as NFC, keys too: a Mac or a Vietnamese keyboard sends
    "á" as "a" and a combining mark (and json.dumps escapes it so, out of
    reach of the text's own normalisation); stored so, a list name was a
    second one beside its look-alike and no search typed composed found it."""
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value)
    if isinstance(value, list):
        return [_composed(item) for item in value]
    if isinstance(value, dict):
        return _once_each([(_composed(key), _composed(item)) for key, item in value.items()])
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:  # more digits than Python converts (4,300)
        raise ValueError(_("A number has too many digits (%(digits)s).") % {"digits": len(text)}) from None


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        _no_constant(text)
    return value


def _once_each(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(_("The key “%(key)s” appears twice in one object.") % {"key": key[:100]})
        result[key] = value
    return result
