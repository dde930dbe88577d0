"""Every API error in one shape: RFC 9457 problem details, served as
application/problem+json with type, title, status, detail and instance,
plus `errors` (field -> messages) when the input was refused."""

import re

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import Resolver404, resolve
from django.utils.formats import localize
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.response import Response

CONTENT_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:postroute:problem:"

# DRF's exception -> (our type, title).
TITLES = {
    exceptions.ParseError: ("malformed", gettext_lazy("Malformed request")),
    exceptions.AuthenticationFailed: ("unauthenticated", gettext_lazy("Not authenticated")),
    exceptions.NotAuthenticated: ("unauthenticated", gettext_lazy("Not authenticated")),
    exceptions.PermissionDenied: ("forbidden", gettext_lazy("Forbidden")),
    exceptions.NotFound: ("not-found", gettext_lazy("Not found")),
    exceptions.MethodNotAllowed: ("method-not-allowed", gettext_lazy("Method not allowed")),
    exceptions.NotAcceptable: ("not-acceptable", gettext_lazy("Not acceptable")),
    exceptions.UnsupportedMediaType: ("unsupported-media-type", gettext_lazy("Unsupported media type")),
    exceptions.Throttled: ("rate-limited", gettext_lazy("Too many requests")),
}


class Problem(exceptions.APIException):
    """An error of ours, with its type slug and, for refused input, the
    messages per field."""

    def __init__(
        self,
        status_code: int,
        slug: str,
        title: str,
        detail: str = "",
        errors: dict | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(detail or title)
        self.status_code = status_code
        self.slug, self.title, self.errors = slug, title, errors
        self.wait = retry_after  # the Retry-After header, as a throttle's


def invalid(errors: dict, detail: str = "") -> Problem:
    return Problem(422, "validation", _("Invalid input"), detail or _("Some fields are not valid."), errors)


def conflict(detail: str) -> Problem:
    return Problem(409, "conflict", _("Not possible now"), detail)


def from_service(exc: DjangoValidationError) -> Problem:
    """A service's refusal: per field when it names fields (the input is
    wrong), else a conflict with the current state (a draft that cannot be
    paused, nobody to send to)."""
    if hasattr(exc, "error_dict"):
        return invalid({field: [str(m) for m in msgs] for field, msgs in exc.message_dict.items()})
    return conflict(" ".join(exc.messages))


def _flatten(detail: object, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested errors as field paths: contacts.3.email -> messages."""
    if isinstance(detail, dict):
        out: dict[str, list[str]] = {}
        for key, value in detail.items():
            name = "" if key == "non_field_errors" else str(key)
            out.update(_flatten(value, f"{prefix}.{name}".strip(".") if name else prefix))
        return out
    if isinstance(detail, list) and detail and all(isinstance(d, (dict, list)) for d in detail):
        out = {}
        for i, value in enumerate(detail):
            out.update(_flatten(value, f"{prefix}.{i}".strip(".")))
        return out
    messages = [str(d) for d in detail] if isinstance(detail, list) else [str(detail)]
    return {prefix or "non_field_errors": messages} if messages else {}


def _throttled(wait: float | None) -> str:
    """DRF words the wait itself before translating it ("Expected available
    in 60 seconds." is in no catalogue): English in every language."""
    if wait is None:
        return _("Too many requests. Try again later.")
    seconds = _seconds(wait)
    # The key's limit or its organisation's (API_TENANT_RATE_LIMIT).
    return ngettext(
        "Too many requests. Try again in %(seconds)s second.",
        "Too many requests. Try again in %(seconds)s seconds.",
        seconds,
    ) % {"seconds": localize(seconds)}


def problem_body(*, status_code: int, slug: str, title: str, detail: str, instance: str, errors=None) -> dict:
    body = {
        "type": TYPE_PREFIX + slug,
        "title": str(title),
        "status": status_code,
        "detail": str(detail),
        "instance": instance,
    }
    if errors:
        body["errors"] = errors
    return {name: _encodable(value) for name, value in body.items()}


# Half a surrogate pair: JSON may escape one (\ud800), and a refusal that
# names the key or value it refuses would carry it, which no UTF-8 answer
# can (the renderer raised: a 500). And a NUL (\u0000), which the answer
# can carry but PostgreSQL cannot keep: the answer kept for an
# Idempotency-Key (a jsonb) failed to save, a 500.
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _encodable(value: object) -> object:
    """`value` with U+FFFD in place of each lone surrogate and NUL, keys
    included, as the bulk upsert names a key it cannot store."""
    if isinstance(value, str):
        return UNSTORABLE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_encodable(key): _encodable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_encodable(item) for item in value]
    return value


def exception_handler(exc: Exception, context: dict) -> Response | None:
    """DRF's hook: Django's 404 and 403 become DRF's first; anything else
    unknown is left to Django (a real 500, logged)."""
    from django.core.exceptions import PermissionDenied
    from django.http import Http404

    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, DjangoValidationError):
        exc = from_service(exc)
    if not isinstance(exc, exceptions.APIException):
        return None
    errors = None
    if isinstance(exc, Problem):
        slug, title, errors = exc.slug, exc.title, exc.errors
        detail = str(exc.detail)
    elif isinstance(exc, exceptions.ValidationError):
        slug, title = "validation", _("Invalid input")
        errors, detail = _flatten(exc.detail), _("Some fields are not valid.")
        exc.status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    else:
        slug, title = next(
            ((s, t) for cls, (s, t) in TITLES.items() if isinstance(exc, cls)), ("error", _("Request refused"))
        )
        detail = _detail(exc)
    request = context.get("request")
    body = problem_body(
        status_code=exc.status_code,
        slug=slug,
        title=str(title),
        detail=detail,
        instance=request.path if request is not None else "",
        errors=errors,
    )
    headers = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None) is not None:
        headers["Retry-After"] = str(_seconds(exc.wait))
    return Response(body, status=exc.status_code, headers=headers, content_type=CONTENT_TYPE)


def _seconds(wait: float) -> int:
    return max(1, int(wait + 0.999))


def _detail(exc: exceptions.APIException) -> str:
    """Our words where DRF's are missing from its Russian or Vietnamese
    catalogue, or half there (the throttle's "Expected available in…"),
    and the same words for a 404 as any other path under /api/."""
    if isinstance(exc, exceptions.NotFound):
        return _("There is no such resource.")
    if isinstance(exc, exceptions.UnsupportedMediaType):
        return _("Send the body as JSON, with “Content-Type: application/json”.")
    if isinstance(exc, exceptions.Throttled):
        return _throttled(exc.wait)
    return str(exc.detail)


@csrf_exempt  # a key's POST to a wrong path gets this problem, not the CSRF page
def not_found(request: HttpRequest, rest: str = "") -> JsonResponse:
    """Any /api/ path that names no resource (a bad id included, another
    version, a forgotten v1/). One that lacks only its final slash is told
    so: it was told there is no such resource, of one that is there."""
    detail = _("There is no such resource.")
    if not request.path_info.endswith("/") and _is_resource(request.path_info + "/"):
        detail = _("There is no such resource. The paths end with a slash: %(path)s") % {"path": request.path + "/"}
    return _answer(request, 404, "not-found", _("Not found"), detail)


def _is_resource(path: str) -> bool:
    try:
        match = resolve(path)
    except Resolver404:
        return False
    return match.namespace == "api" and not match.url_name.startswith("not_found")


def server_error(request: HttpRequest) -> HttpResponse:
    """Django's handler500. Under /api/ a problem document, as every other
    answer there: a client reads JSON, and got our HTML error page. Elsewhere
    the plain page, as before."""
    if not request.path_info.startswith("/api/"):
        return defaults.server_error(request)
    detail = _("We could not finish your request. The problem has been logged. Please try again in a few minutes.")
    return _answer(request, 500, "server-error", _("Something went wrong on our side."), detail)


def _answer(request: HttpRequest, status: int, slug: str, title: str, detail: str) -> JsonResponse:
    body = problem_body(status_code=status, slug=slug, title=title, detail=detail, instance=request.path)
    return JsonResponse(body, status=status, content_type=CONTENT_TYPE)
