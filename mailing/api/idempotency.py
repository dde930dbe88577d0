"""Idempotency keys on the POSTs that create or start something: a client
that lost the answer sends the request again with the same
`Idempotency-Key` and gets the first answer back, nothing done twice.

The key is claimed with an INSERT before the work (a unique row per
tenant, API key and Idempotency-Key), so two copies racing each other do
the work once: the second sees the claim and gets 409 (a claim left by a
request that died is taken over after ABANDONED). The answer (not a
5xx) is then stored on the row for API_IDEMPOTENCY_HOURS; the same key
with another body is refused with 422. config.retention deletes rows past
their expiry."""

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from functools import wraps

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.exceptions import APIException
from rest_framework.response import Response

from accounts.models import ApiIdempotency

from .problems import CONTENT_TYPE, Problem

HEADER = "Idempotency-Key"
MAX_KEY = 255
# A claim still without an answer this long after it was made belongs to a
# request whose process died (no API request runs this long).
ABANDONED = timedelta(minutes=10)


def fingerprint(request) -> str:
    """The method, the path and the body. The path in small letters: ids
    are read in either case, and the POST paths hold nothing else that a
    case tells apart (an action is one of few words)."""
    body = json.dumps(request.data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    what = f"{request.method} {request.path.lower()}\n{body}"
    return hashlib.sha256(what.encode("utf-8", "surrogatepass")).hexdigest()


def _text(value: str) -> str:
    """The header as the client wrote it: a WSGI server gives its bytes
    read as latin-1, so a key in UTF-8 (Cyrillic, Vietnamese) came as
    other characters, some of them control ones, and counted its bytes.
    Bytes that are no UTF-8 stay as they came."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return value


def _checked(value: str) -> str:
    if not 0 < len(value) <= MAX_KEY or not value.isprintable():
        raise Problem(
            400,
            "idempotency-key-invalid",
            _("Invalid Idempotency-Key"),
            _("The Idempotency-Key header must be 1 to %(max)s printable characters.") % {"max": MAX_KEY},
        )
    return value


def _claim(request, value: str, print_: str) -> ApiIdempotency | Response:
    """The new row this request owns, or the stored answer to replay."""
    key = request.auth
    now = timezone.now()
    expires = now + timedelta(hours=settings.API_IDEMPOTENCY_HOURS)
    mine = {"tenant_id": key.tenant_id, "api_key": key, "key": value}
    ApiIdempotency.objects.filter(**mine, expires_at__lte=now).delete()
    try:
        with transaction.atomic():
            return ApiIdempotency.objects.create(**mine, fingerprint=print_, expires_at=expires)
    except IntegrityError:
        pass
    stored = ApiIdempotency.objects.filter(**mine).first()
    if stored is None:  # it expired and went between the two queries
        return ApiIdempotency.objects.create(**mine, fingerprint=print_, expires_at=expires)
    if stored.fingerprint != print_:
        raise Problem(
            422,
            "idempotency-key-reused",
            _("Idempotency-Key reused"),
            _("This Idempotency-Key was used for a different request. Use a new key for a new request."),
        )
    # A claim whose request died with its process: the first retry takes
    # it over (a conditional update, so only one of several does).
    abandoned = ApiIdempotency.objects.filter(pk=stored.pk, status=None, created_at__lt=now - ABANDONED)
    if abandoned.update(created_at=now):
        stored.created_at = now
        return stored
    if stored.status is None:
        raise Problem(
            409,
            "idempotency-key-in-use",
            _("Request in progress"),
            _("A request with this Idempotency-Key is still running. Try again in a moment."),
        )
    content_type = CONTENT_TYPE if stored.status >= 400 else None
    return Response(
        stored.body, status=stored.status, headers={"Idempotent-Replayed": "true"}, content_type=content_type
    )


PARAMETER = OpenApiParameter(
    HEADER,
    {"type": "string", "minLength": 1, "maxLength": MAX_KEY},
    OpenApiParameter.HEADER,
    description=gettext_lazy(
        "Sent again with the same body within a day, the first answer comes back and nothing is done again "
        "(Idempotent-Replayed: true); with another body, 422."
    ),
)


def idempotent(handler: Callable) -> Callable:
    """For a view's post(): honours the Idempotency-Key header if sent (and
    the schema says so: a client generated from it could not send one)."""

    @extend_schema(parameters=[PARAMETER])
    @wraps(handler)
    def wrapper(view, request, *args, **kwargs):
        value = request.headers.get(HEADER)
        if value is None:
            return handler(view, request, *args, **kwargs)
        claim = _claim(request, _checked(_text(value)), fingerprint(request))
        if isinstance(claim, Response):
            return claim
        try:
            response = handler(view, request, *args, **kwargs)
        except APIException as exc:
            response = view.handle_exception(exc)
        except BaseException:
            claim.delete()
            raise
        if response.status_code >= 500 or response.status_code == 429:
            claim.delete()  # not an answer to keep: the retry runs
        else:
            claim.status, claim.body = response.status_code, response.data
            claim.save(update_fields=["status", "body"])
        return response

    return wrapper
