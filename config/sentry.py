"""Errors to Sentry, when SENTRY_DSN is set: Django's and Celery's, with
the request id as a tag. No SMTP or IMAP password and no letter body may
leave: request bodies are never sent, local variables neither, and
before_send blanks every value under a sensitive key anywhere in the
event. Nor may the tenants' contacts' addresses (PostgreSQL names the
duplicate in a unique violation, a log line its recipient): every address
in any text of the event becomes ADDRESS."""

import re
from typing import Any

import sentry_sdk
from sentry_sdk.integrations.celery import CeleryIntegration
from sentry_sdk.integrations.django import DjangoIntegration

from . import requestids

SENSITIVE = re.compile(
    r"pass|secret|token|key|auth|cookie|session|csrf|dsn|body|html|text|content|context|subject|message_data",
    re.IGNORECASE,
)
FILTERED = "[Filtered]"
# An address as it appears in a message, a query string (%40) or a
# PostgreSQL detail, in any script (иван@пример.рф).
EMAIL = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+(?:@|%40)[\w-]+(?:\.[\w-]+)+")
ADDRESS = "[address]"


def scrub(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: FILTERED if isinstance(k, str) and SENSITIVE.search(k) else scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    return value


def without_addresses(value: Any) -> Any:
    """Every string anywhere in value, with its email addresses replaced."""
    if isinstance(value, str):
        return EMAIL.sub(ADDRESS, value)
    if isinstance(value, dict):
        return {k: without_addresses(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [without_addresses(v) for v in value]
    return value


def before_send(event: dict, hint: dict) -> dict:
    for name in ("request", "extra", "contexts", "breadcrumbs"):
        if name in event:
            event[name] = scrub(event[name])
    request = event.get("request")
    if isinstance(request, dict):
        request.pop("data", None)  # a POST body: a template's body, a password form
    for exception in (event.get("exception") or {}).get("values", []):
        for frame in (exception.get("stacktrace") or {}).get("frames", []):
            frame.pop("vars", None)
    ids = requestids.current()
    if ids.get("request_id"):
        event.setdefault("tags", {})["request_id"] = ids["request_id"]
    return without_addresses(event)


def init(*, dsn: str, environment: str, traces_sample_rate: float, **options: Any) -> None:
    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        integrations=[DjangoIntegration(), CeleryIntegration()],
        traces_sample_rate=traces_sample_rate,
        send_default_pii=False,
        include_local_variables=False,
        max_request_body_size="never",
        before_send=before_send,
        before_breadcrumb=lambda crumb, hint: without_addresses(crumb),
        **options,
    )
