"""JSON bodies, bounded: DRF reads the request stream itself, past
Django's DATA_UPLOAD_MAX_MEMORY_SIZE, so the limit is ours to keep."""

import json
import math

from django.conf import settings
from django.utils.formats import localize
from django.utils.translation import gettext as _
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
        if stream is None:
            return None
        raw = stream.read(limit + 1)
        if len(raw) > limit:
            raise _too_large()
        try:
            return json.loads(
                raw.decode("utf-8"), parse_constant=_no_constant, parse_float=_finite, object_pairs_hook=_once_each
            )
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise ParseError(_("The body is not valid JSON (UTF-8): %(error)s") % {"error": exc}) from exc


# What Python's json reads but JSON (RFC 8259) has not: NaN and Infinity,
# numbers too large for a float (read as inf), and a key twice in one object
# (the last would win, the first lost without a word). Refused as malformed.


def _no_constant(name: str) -> object:
    raise ValueError(_("%(value)s is not a number JSON allows.") % {"value": name})


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        _no_constant(text)
    return value


def _once_each(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(_("The key “%(key)s” appears twice in one object.") % {"key": key})
        result[key] = value
    return result
