"""JSON bodies, bounded: DRF reads the request stream itself, past
Django's DATA_UPLOAD_MAX_MEMORY_SIZE, so the limit is ours to keep."""

import json

from django.conf import settings
from django.utils.translation import gettext as _
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser

from .problems import Problem


def _too_large() -> Problem:
    mb = settings.API_MAX_BODY_BYTES / 2**20
    return Problem(
        413, "too-large", _("Request too large"), _("The body may be at most %(mb)s MB.") % {"mb": f"{mb:g}"}
    )


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
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise ParseError(_("The body is not valid JSON (UTF-8): %(error)s") % {"error": exc}) from exc
