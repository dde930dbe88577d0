"""A real Celery worker, in its own process, consuming the `mail` queue,
takes the platform's email task from the broker (routed there as the product
routes it) and delivers it to a real SMTP server (the sink), with the broker
that needs no server and with Redis."""

import subprocess
import sys
import time

import pytest
import redis
from celery import Celery
from django.conf import settings
from django.test import Client

from accounts.models import User
from config.celery import app
from mailing.sink import MailSink
from tests.helpers import ROOT, database_url, production_env
from tests.services import require_redis

pytestmark = pytest.mark.django_db(transaction=True)


def broker_options(tmp_path, kind: str) -> tuple[str, dict, dict]:
    if kind == "redis":
        url = require_redis()
        return url, {}, {"CELERY_BROKER_URL": url}
    folder = tmp_path / "broker"
    for sub in ("queue", "control", "processed"):
        (folder / sub).mkdir(parents=True)
    options = {
        "data_folder_in": str(folder / "queue"),
        "data_folder_out": str(folder / "queue"),
        "control_folder": str(folder / "control"),
    }
    return "filesystem://", options, {"CELERY_BROKER_URL": "filesystem://", "CELERY_FILESYSTEM_DIR": str(folder)}


@pytest.mark.parametrize("kind", ["filesystem", "redis"])
def test_a_worker_delivers_the_verification_email(tmp_path, kind):
    user = User.objects.create_user("hana@example.test", "pw-irrelevant-1234")
    url, options, worker_env = broker_options(tmp_path, kind)
    with MailSink() as sink:
        env = production_env(
            DEBUG="1",
            SECRET_KEY=settings.SECRET_KEY,  # the link it signs must verify here
            DATABASE_URL=database_url(),
            EMAIL_URL=f"smtp://127.0.0.1:{sink.port}",
            **worker_env,
        )
        # The queue the product routes platform mail to, as the worker in
        # the Procfile consumes it.
        queue = app.amqp.router.route({}, "accounts.tasks.send_verification_email")["queue"].name
        assert queue == "mail"
        if kind == "redis":
            redis.Redis.from_url(url).delete(queue)  # nothing left from an earlier run
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "-Q",
                queue,
                "-c",
                "1",
                "-P",
                "solo",
                "--without-gossip",
                "--without-mingle",
                "-l",
                "warning",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            producer = Celery(broker=url, broker_transport_options=options, set_as_current=False)
            producer.conf.task_routes = settings.CELERY_TASK_ROUTES
            producer.send_task("accounts.tasks.send_verification_email", args=[user.pk, "http://testserver"])
            deadline = time.monotonic() + 60
            while not sink.received and time.monotonic() < deadline and worker.poll() is None:
                time.sleep(0.2)
        finally:
            worker.terminate()
            output = worker.communicate(timeout=20)[0]
    assert sink.received, f"nothing delivered; worker said:\n{output}"
    message = sink.received[0].message
    assert message["To"] == "hana@example.test"
    assert message["Subject"].startswith("Confirm your email")
    link = message.get_body(preferencelist=("plain",)).get_content()
    path = link[link.index("http://testserver") + len("http://testserver") :].split()[0]
    assert Client().get(path).status_code == 302
    user.refresh_from_db()
    assert user.is_email_verified
