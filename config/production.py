"""A production process refuses the development stand-ins.

With DEBUG off and DATABASE_URL or CELERY_BROKER_URL unset, the settings
would fall back to SQLite in VAR_DIR and the filesystem broker: a web
server writing tenants' data to a file on its own host, workers that never
see what the web queued. Only `check --deploy` said so. Now gunicorn (the
WSGI and ASGI applications), every Celery worker and beat stop at start,
naming the variable; `make run` (DEBUG=1), the tests (their own settings)
and `manage.py` commands are unaffected. A URL given on purpose, even a
SQLite one, is the operator's choice (and `check --deploy`'s to judge)."""

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

WHAT = {
    "DATABASE_URL": (
        "the tenants' data would go to a SQLite file on this host",
        "DATABASE_URL=postgres://user:password@host:5432/postroute",
    ),
    "CELERY_BROKER_URL": (
        "tasks would go to a folder on this host that no worker elsewhere reads",
        "CELERY_BROKER_URL=redis://host:6379/0",
    ),
}


def refuse_development_stand_ins() -> None:
    if unset := settings.UNSET_SERVICE_URLS:
        lines = [f"{name} is not set: {WHAT[name][0]}. Set {WHAT[name][1]}." for name in unset]
        raise ImproperlyConfigured(
            " ".join(lines) + " (DEBUG is off, so this is production; DEBUG=1 runs on the development defaults.)"
        )
