"""gunicorn settings for production; every value can be overridden on the
command line or with GUNICORN_CMD_ARGS."""

import multiprocessing
import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2 + 1))
# The proxy in front sets X-Forwarded-Proto; trust it only from these hosts.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
accesslog = "-"
timeout = 30


def _hide_server_header() -> None:
    """gunicorn names itself in a `Server` header of every response and has
    no setting to stop it; the product must not reveal its software (the
    proxy in front may add its own, without a version). Its own error pages
    for malformed requests carry no such header."""
    from gunicorn.http import wsgi

    default_headers = wsgi.Response.default_headers
    if getattr(default_headers, "hides_server", False):
        return  # the file is read again on a reload

    def without_server(self: wsgi.Response) -> list[str]:
        return [h for h in default_headers(self) if not h.lower().startswith("server:")]

    without_server.hides_server = True  # type: ignore[attr-defined]
    wsgi.Response.default_headers = without_server


_hide_server_header()
