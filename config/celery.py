import logging
import os

from celery import Celery, signals

from config import broker

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
broker.register()

app = Celery("postroute")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

from config.heartbeats import QueueHeartbeat  # noqa: E402 - needs the app configured first

app.steps["consumer"].add(QueueHeartbeat)


@signals.setup_logging.connect
def use_djangos_logging(loglevel: int | str | None = None, **kwargs: object) -> None:
    """Workers and beat log through settings.LOGGING (LOG_FORMAT), which
    django.setup() has applied, at the level of their --loglevel; Celery's
    own setup would add its plain handler beside the JSON one."""
    if loglevel:
        logging.getLogger().setLevel(loglevel)


@signals.worker_init.connect
@signals.beat_init.connect
def refuse_development_stand_ins(**kwargs: object) -> None:
    """A worker or beat with DEBUG off and no DATABASE_URL or
    CELERY_BROKER_URL stops here, naming it (config/production.py). Celery
    logs and ignores an exception from a signal's receiver: it exits."""
    from django.core.exceptions import ImproperlyConfigured

    from config import production

    try:
        production.refuse_development_stand_ins()
    except ImproperlyConfigured as exc:
        raise SystemExit(f"Postroute does not start: {exc}") from None


@signals.worker_init.connect
def prepare_links(**kwargs: object) -> None:
    """Before any task (and before a prefork pool forks), the work every
    conversation would otherwise do first, all of them at once: see
    mailing.unsubscribe.prepare and servers.connections.prepare."""
    from mailing import unsubscribe
    from servers import connections

    unsubscribe.prepare()
    connections.prepare()


@signals.worker_ready.connect
def open_database_pool(sender: object = None, **kwargs: object) -> None:
    """A pooled worker (the dispatch worker: a pool of threads) opens its
    pool of database sessions when it starts, not in its first task: the
    first letters do not wait for the pool, its imports and its first
    session. Never in a prefork parent, whose children would inherit its
    sessions' sockets."""
    from celery.concurrency.prefork import TaskPool as Prefork
    from django.db import connection

    if isinstance(getattr(sender, "pool", None), Prefork):
        return
    if connection.settings_dict["OPTIONS"].get("pool"):
        connection.ensure_connection()
        connection.close()  # back to the pool, which stays open
