"""Keyset pages with an opaque cursor (the last row's id, encoded): as fast
on the thousandth page as on the first, and stable while rows are added.
A feed (bounces, unsubscribes since a cursor) always returns a cursor, so a
client that polls keeps the last one and asks for what came after it."""

import base64
import binascii

from django.db.models import QuerySet
from django.utils.translation import gettext as _
from rest_framework.request import Request

from .problems import invalid

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


def encode(pk: int) -> str:
    return base64.urlsafe_b64encode(f"c1:{pk}".encode()).decode().rstrip("=")


def decode(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        tag, _sep, number = text.partition(":")
        pk = int(number)
        if tag != "c1" or pk < 0 or len(cursor) > 40:
            raise ValueError(cursor)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise invalid({"cursor": [_("This cursor is not valid: use a next_cursor from an earlier answer.")]}) from None
    return pk


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    # ASCII digits only, and few: str.isdigit() passes "²" and "٣", which
    # int() refuses or reads, and int() refuses 4,300 digits and more.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= len(str(MAX_LIMIT))) or not 1 <= int(raw) <= MAX_LIMIT:
        raise invalid({"limit": [_("A whole number from 1 to %(max)s.") % {"max": MAX_LIMIT}]})
    return int(raw)


def page(request: Request, queryset: QuerySet, *, feed: bool = False) -> tuple[list, str | None]:
    """The rows after the request's cursor, in id order, and the next
    cursor: None at the end of a list; for a feed, the cursor to poll with."""
    cursor = request.query_params.get("cursor") or None
    after = decode(cursor) if cursor else 0
    limit = _limit(request)
    rows = list(queryset.filter(pk__gt=after).order_by("pk")[: limit + 1])
    more, rows = len(rows) > limit, rows[:limit]
    if feed:
        return rows, encode(rows[-1].pk) if rows else (cursor or encode(after))
    return rows, encode(rows[-1].pk) if more else None
