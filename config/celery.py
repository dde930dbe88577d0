import logging
import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

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
def prepare_links(**kwargs: object) -> None:
    """Before any task (and before a prefork pool forks): see
    mailing.unsubscribe.prepare."""
    from mailing import unsubscribe

    unsubscribe.prepare()
