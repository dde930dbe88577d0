"""Who a log line is about: the request id (the proxy's X-Request-ID, or a
new one), the tenant, the mailing and the server, kept in context variables
that a logging filter copies onto every record. A task started by a request
carries the request's id and tenant in its message headers, so a worker's
lines join the request's."""

import contextvars
import inspect
import logging
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

from celery import signals
from django.conf import settings
from django.core.signals import request_finished
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse

FIELDS = ("request_id", "tenant_id", "mailing_id", "server_id")
_context: contextvars.ContextVar[dict[str, str | int | None]] = contextvars.ContextVar("log_context", default={})  # noqa: B039 - never mutated, only replaced

# A proxy's id is taken only when it looks like one (a log line is no place
# for whatever a client puts in a header).
_VALID_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def current() -> dict[str, str | int | None]:
    return _context.get()


@contextmanager
def bound(**ids: str | int | None) -> Iterator[None]:
    """Add ids (mailing_id=..., server_id=...) to every line logged inside."""
    token = _context.set({**_context.get(), **{k: v for k, v in ids.items() if k in FIELDS}})
    try:
        yield
    finally:
        _context.reset(token)


def new_id() -> str:
    return uuid.uuid4().hex


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        ids = _context.get()
        for name in FIELDS:
            if not hasattr(record, name):
                setattr(record, name, ids.get(name))
        return True


class RequestIdMiddleware:
    """Early in the chain: the id is known to every later middleware's lines
    and goes back to the client in the same header. It stays set until the
    response is finished, for the handler's own "Not Found" lines written
    after the last middleware returned."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.header = "HTTP_" + settings.REQUEST_ID_HEADER.upper().replace("-", "_")

    def __call__(self, request: HttpRequest) -> HttpResponse:
        given = request.META.get(self.header, "")
        request_id = given if _VALID_ID.fullmatch(given) else new_id()
        _context.set({"request_id": request_id})
        response = self.get_response(request)
        response[settings.REQUEST_ID_HEADER] = request_id
        return response

    def process_view(self, request: HttpRequest, *args: object) -> None:
        # The tenant middleware has run by now.
        tenant = getattr(request, "tenant", None)
        if tenant is not None:
            _context.set({**_context.get(), "tenant_id": tenant.pk})


@receiver(request_finished)
def _forget_request(**kwargs: object) -> None:
    _context.set({})


# Celery: the ids travel in the message headers, and a task's own ids
# (mailing_id, server_id, tenant_id arguments) are added on the worker.


@signals.before_task_publish.connect
def _add_headers(headers: dict | None = None, **kwargs: object) -> None:
    if headers is None:
        return
    ids = _context.get()
    for name in ("request_id", "tenant_id"):
        if ids.get(name) is not None and name not in headers:
            headers[name] = ids[name]


_tokens: dict[str, contextvars.Token] = {}


@signals.task_prerun.connect
def _enter_task(task_id: str = "", task: object = None, args: tuple = (), kwargs: dict | None = None, **_: object):
    request = getattr(task, "request", None)
    headers = getattr(request, "headers", None) or {}
    ids: dict[str, str | int | None] = {}
    for name in ("request_id", "tenant_id"):
        value = getattr(request, name, None) or headers.get(name)
        if value is not None:
            ids[name] = value
    ids.setdefault("request_id", _context.get().get("request_id") or task_id)
    ids.update(_ids_from_arguments(task, args, kwargs or {}))
    _tokens[task_id] = _context.set({**_context.get(), **ids})


@signals.task_postrun.connect
def _leave_task(task_id: str = "", **_: object) -> None:
    token = _tokens.pop(task_id, None)
    if token is not None:
        with suppress(ValueError):  # set in another context (never on a worker)
            _context.reset(token)


def _ids_from_arguments(task: object, args: tuple, kwargs: dict) -> dict[str, int]:
    run = getattr(task, "run", None)
    if run is None:
        return {}
    try:
        bound_args = inspect.signature(run).bind_partial(*args, **kwargs).arguments
    except (TypeError, ValueError):
        return {}
    return {k: v for k, v in bound_args.items() if k in FIELDS and v is not None}
