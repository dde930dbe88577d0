"""A real worker (prefork, on Redis, LOG_FORMAT=json): it marks the queue it
serves for /readyz from its main process, a task carries the id and tenant
of the request that queued it into its log lines, every line is one JSON
object, and beat's dispatch tick leaves no INFO line."""

import json
import subprocess
import sys
import time

import pytest
from celery import Celery
from django.conf import settings

from config import heartbeats, requestids
from tests.helpers import ROOT, database_url, production_env

pytestmark = pytest.mark.django_db(transaction=True)
QUIET = ("--without-gossip", "--without-mingle", "-n", "ops-test@%h", "--loglevel", "info")


def wait_for(condition, seconds: float, worker: subprocess.Popen) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and worker.poll() is None:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def test_a_worker_beats_for_its_queue_and_logs_the_requests_ids_in_json(redis_broker, tmp_path):
    url = settings.CELERY_BROKER_URL
    env = production_env(DATABASE_URL=database_url(), CELERY_BROKER_URL=url, LOG_FORMAT="json", LOG_LEVEL="INFO")
    log_path = tmp_path / "worker.log"
    started = time.time()
    with log_path.open("w") as log_file:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "--quiet", "worker", "-Q", "default", "-c", "1", *QUIET],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            assert wait_for(lambda: (heartbeats.last("queue:default") or 0) >= started, 30, worker), (
                log_path.read_text()
            )
            assert heartbeats.last("queue:dispatch") is None  # a queue it does not serve
            producer = Celery(broker=url, set_as_current=False)
            producer.conf.task_routes = settings.CELERY_TASK_ROUTES
            producer.send_task("mailing.tasks.dispatch_tick")
            with requestids.bound(request_id="req-0f6e2a", tenant_id=4242):
                producer.send_task("config.tasks.apply_retention")
            assert wait_for(lambda: "retention:" in log_path.read_text(), 30, worker), log_path.read_text()
        finally:
            worker.terminate()
            worker.wait(timeout=20)
    lines = [line for line in log_path.read_text().splitlines() if line.strip()]
    # Every line is one JSON object, but for the notice Celery prints (not
    # logs) on its way out.
    assert [line for line in lines if not line.startswith("{")] == ["worker: Warm shutdown (MainProcess)"]
    records = [json.loads(line) for line in lines if line.startswith("{")]
    retention = next(r for r in records if r["message"].startswith("retention:"))
    assert retention["request_id"] == "req-0f6e2a" and retention["tenant_id"] == 4242
    assert retention["level"] == "INFO" and retention["logger"] == "config.tasks"
    assert not [r for r in records if "dispatch_tick" in r["message"] and r["level"] == "INFO"]
