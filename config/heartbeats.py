"""Signs of life for /readyz: beat writes one on each tick while it holds
the beat lock, and every worker one per queue it consumes, from its main
process every HEARTBEAT_INTERVAL seconds (busy pool processes do not delay
it). They live in Redis when the broker is Redis, so every host sees every
other's; with the development broker (a folder) in files beside it."""

import time
from contextlib import suppress
from functools import cache
from pathlib import Path

import redis
from celery import bootsteps
from celery.beat import PersistentScheduler
from django.conf import settings

HEARTBEAT_INTERVAL = 15.0
KEY_PREFIX = "postroute:heartbeat:"
BEAT_LOCK = "postroute:beat-lock"
BEAT_LOCK_SECONDS = 60


@cache
def broker_redis() -> redis.Redis | None:
    url = settings.CELERY_BROKER_URL
    if url.startswith(("redis://", "rediss://", "unix://")):
        return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    return None


def _folder() -> Path:
    folder = Path(settings.VAR_DIR) / "heartbeats"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def beat(name: str, at: float | None = None) -> None:
    at = time.time() if at is None else at
    client = broker_redis()
    if client is not None:
        client.set(KEY_PREFIX + name, repr(at), ex=24 * 3600)
    else:
        (_folder() / name).write_text(repr(at))


def last(name: str) -> float | None:
    """When `name` last beat (a Unix time), or None if never (or a day ago)."""
    client = broker_redis()
    if client is not None:
        value = client.get(KEY_PREFIX + name)
    else:
        path = _folder() / name
        value = path.read_bytes() if path.is_file() else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class QueueHeartbeat(bootsteps.StartStopStep):
    """A consumer step: while the worker consumes, a timer in its main
    process marks each of its queues as served."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def start(self, c) -> None:
        queues = [q.name for q in c.task_consumer.queues] if c.task_consumer else []
        self._queues = queues
        self._beat()
        self._timer = c.timer.call_repeatedly(HEARTBEAT_INTERVAL, self._beat)

    def _beat(self) -> None:
        now = time.time()
        for queue in self._queues:
            # The broker away: the worker's own reconnection deals with it.
            with suppress(OSError, redis.RedisError):
                beat(f"queue:{queue}", now)

    def stop(self, c) -> None:
        timer = getattr(self, "_timer", None)
        if timer is not None:
            timer.cancel()


class LockingScheduler(PersistentScheduler):
    """Celery's scheduler, sending only while it holds a lock in Redis: a
    second beat on another host waits, and takes over within
    BEAT_LOCK_SECONDS when the first one stops. Without Redis (development)
    there is one host and no lock."""

    _lock = None

    def tick(self, *args, **kwargs) -> float:
        client = broker_redis()
        if client is not None and not self._hold(client):
            return 5.0
        beat("beat")
        return min(super().tick(*args, **kwargs), BEAT_LOCK_SECONDS / 4)

    def _hold(self, client: redis.Redis) -> bool:
        if self._lock is None:
            self._lock = client.lock(BEAT_LOCK, timeout=BEAT_LOCK_SECONDS, thread_local=False)
        try:
            if self._lock.owned():
                self._lock.reacquire()
                return True
            return bool(self._lock.acquire(blocking=False))
        except redis.RedisError:
            return False
