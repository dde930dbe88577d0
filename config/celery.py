import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("postroute")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

from config.heartbeats import QueueHeartbeat  # noqa: E402 - needs the app configured first

app.steps["consumer"].add(QueueHeartbeat)
