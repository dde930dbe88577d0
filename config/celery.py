import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("postroute")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

from config.heartbeats import QueueHeartbeat  # noqa: E402 - needs the app configured first

app.steps["consumer"].add(QueueHeartbeat)


@signals.setup_logging.connect
def use_djangos_logging(**kwargs: object) -> None:
    """Workers and beat log as settings.LOGGING says (LOG_FORMAT, LOG_LEVEL),
    which django.setup() has applied; Celery's own setup would replace the
    level with --loglevel's and, in JSON mode, mix in its plain lines."""
