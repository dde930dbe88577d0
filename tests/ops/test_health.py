"""/healthz and /readyz answer a load balancer: any Host, plain HTTP, JSON
with each check's result and time, no versions and no error texts; nothing
else is exempt from ALLOWED_HOSTS or the HTTPS redirect."""

import json
import time

import pytest
from django.test import Client

from config import heartbeats
from config.health import queues

pytestmark = pytest.mark.django_db


@pytest.fixture
def production_http(settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.ALLOWED_HOSTS = ["postroute.example.com"]


def all_alive(at: float | None = None) -> None:
    heartbeats.beat("beat", at)
    for queue in queues():
        heartbeats.beat(f"queue:{queue}", at)


def test_healthz_answers_any_host_over_plain_http(production_http):
    for host in ("10.0.0.7", "10.0.0.7:8000", "evil.example", "postroute.example.com"):
        response = Client(HTTP_HOST=host).get("/healthz")
        assert response.status_code == 200, host
        assert response.json() == {"status": "ok"}
        assert response["Cache-Control"] == "no-store"


def test_nothing_else_is_exempt(production_http):
    assert Client(HTTP_HOST="10.0.0.7").get("/accounts/login/").status_code == 400
    assert Client(HTTP_HOST="postroute.example.com").get("/accounts/login/").status_code == 301
    assert Client(HTTP_HOST="10.0.0.7").get("/healthz/").status_code == 400  # only the exact paths
    assert Client(HTTP_HOST="10.0.0.7").post("/healthz").status_code == 405


def test_readyz_is_green_when_everything_answers(production_http, folder_broker):
    all_alive()
    response = Client(HTTP_HOST="10.0.0.7").get("/readyz")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ok"
    expected = {"database", "broker", "beat", *(f"queue:{q}" for q in queues())}
    assert set(body["checks"]) == expected
    assert {"dispatch", "probes", "imports", "bounces", "mail", "webhooks", "default"} <= set(queues())
    for check in body["checks"].values():
        assert check["ok"] is True and 0 <= check["seconds"] < 5


def test_readyz_fails_on_a_stale_beat_or_a_queue_nobody_serves(production_http, folder_broker, settings):
    all_alive()
    heartbeats.beat("beat", time.time() - settings.READY_HEARTBEAT_MAX_AGE - 5)
    (settings.VAR_DIR / "heartbeats" / "queue:imports").unlink()
    response = Client(HTTP_HOST="10.0.0.7").get("/readyz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["beat"]["ok"] is False and checks["beat"]["age"] > settings.READY_HEARTBEAT_MAX_AGE
    assert checks["queue:imports"] == {"ok": False, "age": None, "seconds": checks["queue:imports"]["seconds"]}
    assert checks["queue:dispatch"]["ok"] is True and checks["database"]["ok"] is True


def test_readyz_on_redis_names_a_dead_broker_by_kind_only(production_http, redis_broker, settings):
    all_alive()
    assert Client(HTTP_HOST="10.0.0.7").get("/readyz").status_code == 200
    assert redis_broker.get(heartbeats.KEY_PREFIX + "beat") is not None  # shared by every host
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    heartbeats.broker_redis.cache_clear()
    response = Client(HTTP_HOST="10.0.0.7").get("/readyz")
    assert response.status_code == 503
    body = response.content.decode()
    assert json.loads(body)["checks"]["broker"] == {
        "ok": False,
        "error": "ConnectionError",
        "seconds": json.loads(body)["checks"]["broker"]["seconds"],
    }
    assert "127.0.0.1" not in body and "Redis" not in body and "Django" not in body


def test_the_beat_lock_lets_one_beat_send(redis_broker, tmp_path):
    """Two beats (two hosts): the second waits while the first holds the
    lock, and takes over once the first is gone."""
    from config.celery import app

    first = heartbeats.LockingScheduler(app=app, schedule_filename=str(tmp_path / "a"), lazy=True)
    second = heartbeats.LockingScheduler(app=app, schedule_filename=str(tmp_path / "b"), lazy=True)
    assert first._hold(redis_broker) is True
    assert second._hold(redis_broker) is False
    assert second.tick() == 5.0  # sends nothing, asks again soon
    assert first._hold(redis_broker) is True  # renews its own lock
    assert redis_broker.ttl(heartbeats.BEAT_LOCK) > heartbeats.BEAT_LOCK_SECONDS - 5
    redis_broker.delete(heartbeats.BEAT_LOCK)  # the first host died; its lock ran out
    assert second._hold(redis_broker) is True
    assert first._hold(redis_broker) is False
