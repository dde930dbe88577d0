"""Keyset pages with an opaque cursor (the last row's id, encoded): as fast
on the thousandth page as on the first, and stable while rows are added.
A feed (bounces, unsubscribes since a cursor) always returns a cursor, so a
client that polls keeps the last one and asks for what came after it.

A cursor is signed for the resource and the organisation that gave it
(django.core.signing, with SECRET_KEY): sent to another endpoint, by
another organisation's key or altered, it is refused, where the bare id
was taken as a place in other rows and a client that mixed up its stored
cursors skipped rows silently.
A cursor of the first, unsigned form ("c1") is still read, so that a feed
cursor a client stored before keeps working; the next one it gets is signed."""

import base64
import binascii

from django.core import signing
from django.db.models import QuerySet
from django.utils.translation import gettext as _
from rest_framework.request import Request

from .problems import invalid

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_CURSOR = 128
LEGACY, SIGNED = "c1", "c2"


def _signer(request: Request) -> signing.Signer:
    resource = request.resolver_match.url_name if request.resolver_match else request.path
    return signing.Signer(salt=f"mailing.api.cursor:{request.auth.tenant_id}:{resource}")


def encode(request: Request, pk: int) -> str:
    text = f"{SIGNED}:{_signer(request).sign(str(pk))}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _id(text: str) -> int:
    if not (text.isascii() and text.isdigit() and len(text) <= 19):  # a bigint's digits
        raise ValueError(text)
    return int(text)


def decode(request: Request, cursor: str) -> int:
    try:
        if len(cursor) > MAX_CURSOR:
            raise ValueError(cursor)
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        tag, _sep, rest = text.partition(":")
        if tag == LEGACY:
            return _id(rest)
        if tag == SIGNED:
            return _id(_signer(request).unsign(rest))
        raise ValueError(cursor)
    except (ValueError, binascii.Error, UnicodeDecodeError, signing.BadSignature):
        raise invalid({"cursor": [_("This cursor is not valid: use a next_cursor from an earlier answer.")]}) from None


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
    after = decode(request, cursor) if cursor else 0
    limit = _limit(request)
    rows = list(queryset.filter(pk__gt=after).order_by("pk")[: limit + 1])
    more, rows = len(rows) > limit, rows[:limit]
    if feed:
        return rows, encode(request, rows[-1].pk if rows else after)
    return rows, encode(request, rows[-1].pk) if more else None
