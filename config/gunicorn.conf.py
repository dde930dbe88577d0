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

if os.environ.get("LOG_FORMAT") == "json":
    # gunicorn's own lines (start, workers, the access log) as JSON objects
    # too, like the product's (config/logs.py); the access line names the
    # request's id as the response carries it.
    access_log_format = "%(m)s %(U)s %(s)s %(B)s bytes %(M)sms request_id=%({x-request-id}o)s"
    _handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"}
    logconfig_dict = {
        "formatters": {
            "json": {
                "()": "pythonjsonlogger.json.JsonFormatter",
                "format": "%(asctime)s %(levelname)s %(name)s %(message)s %(process)d",
                "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
            }
        },
        "handlers": {"console": _handler, "error_console": _handler},
        "loggers": {
            "gunicorn.error": {"handlers": ["console"], "level": "INFO", "propagate": False},
            "gunicorn.access": {"handlers": ["console"], "level": "INFO", "propagate": False},
        },
        "root": {"handlers": ["console"], "level": "INFO"},
    }


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
