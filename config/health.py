"""/healthz (the process answers), /readyz (what it needs answers) and
/metrics, answered before any other middleware: a load balancer asks by IP
and over plain HTTP, so neither ALLOWED_HOSTS nor the HTTPS redirect may
stand in its way. Nothing else is exempt, and the answers name no versions,
hosts or error texts."""

import hmac
import time
from collections.abc import Callable

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse

from . import heartbeats


def queues() -> list[str]:
    routed = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()}
    return sorted(routed | {settings.CELERY_TASK_DEFAULT_QUEUE})


def _timed(check: Callable[[], dict]) -> dict:
    started = time.monotonic()
    try:
        result = check()
    except Exception as exc:  # any failure is a "not ready", named by its kind only
        result = {"ok": False, "error": type(exc).__name__}
    result["seconds"] = round(time.monotonic() - started, 4)
    return result


def _database() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"ok": True}


def _broker() -> dict:
    client = heartbeats.broker_redis()
    if client is not None:
        client.ping()
    else:
        from config.celery import app

        with app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1)
    return {"ok": True}


def _recent(name: str) -> Callable[[], dict]:
    def check() -> dict:
        at = heartbeats.last(name)
        age = None if at is None else round(max(time.time() - at, 0.0), 1)
        return {"ok": age is not None and age <= settings.READY_HEARTBEAT_MAX_AGE, "age": age}

    return check


def readiness() -> tuple[bool, dict[str, dict]]:
    checks = {"database": _database, "broker": _broker, "beat": _recent("beat")}
    checks |= {f"queue:{q}": _recent(f"queue:{q}") for q in queues()}
    results = {name: _timed(check) for name, check in checks.items()}
    return all(r["ok"] for r in results.values()), results


def healthz(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> HttpResponse:
    ok, results = readiness()
    response = JsonResponse({"status": "ok" if ok else "fail", "checks": results}, status=200 if ok else 503)
    # "Not ready" is an answer, not a server error: no ERROR line for every
    # probe while a worker restarts.
    response._has_been_logged = True  # type: ignore[attr-defined]
    return response


def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus's text format, for a scraper that sends
    `Authorization: Bearer <METRICS_TOKEN>`; without a token set, nobody."""
    from . import metrics as collected

    token = settings.METRICS_TOKEN
    scheme, _, given = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if not token or scheme != "Bearer" or not hmac.compare_digest(given.encode(), token.encode()):
        return HttpResponse(status=404)
    body, content_type = collected.exposition()
    return HttpResponse(body, content_type=content_type)


def metrics_module():
    from . import metrics as module

    return module


ENDPOINTS = {"/healthz": healthz, "/readyz": readyz, "/metrics": metrics}


class OpsEndpointsMiddleware:
    """First in MIDDLEWARE: these three paths answer here and go no further."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        view = ENDPOINTS.get(request.path_info)
        if view is None:
            started = time.monotonic()
            response = self.get_response(request)
            metrics_module().observe_request(request.method or "", response.status_code, time.monotonic() - started)
            return response
        if request.method not in ("GET", "HEAD"):
            return HttpResponse(status=405, headers={"Allow": "GET, HEAD"})
        response = view(request)
        response["Cache-Control"] = "no-store"
        return response
