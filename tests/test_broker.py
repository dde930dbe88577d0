"""The Redis broker's transport (config.broker): one client a channel for
kombu's bookkeeping, shared by threads, rebuilt when kombu drops its pool;
messages go, are taken and acknowledged through it on a real Redis."""

import threading
import uuid

import redis
from kombu import Connection, Exchange, Queue

from config import broker
from config.celery import app
from tests.services import require_redis


def test_the_products_redis_urls_take_this_transport():
    for url in ("redis://127.0.0.1:6379/0", "rediss://127.0.0.1:6379/0"):
        assert type(Connection(url).transport) is broker.Transport
    assert type(Connection("filesystem://").transport) is not broker.Transport


def test_a_channel_keeps_one_client_for_every_thread_until_its_pool_goes():
    with Connection(require_redis()) as conn:
        channel = conn.default_channel
        assert isinstance(channel, broker.Channel)
        seen = []

        def use() -> None:
            with channel.conn_or_acquire() as client:
                seen.append(client)

        threads = [threading.Thread(target=use) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        use()
        assert len({id(client) for client in seen}) == 1
        assert seen[0].connection_pool is channel.pool

        channel._disconnect_pools()  # what kombu does after a fork or a lost connection
        use()
        assert seen[-1] is not seen[0]
        assert seen[-1].connection_pool is channel.pool
        assert seen[-1].ping()


def test_a_message_goes_is_taken_and_acknowledged_through_it():
    url = require_redis()
    name = f"test-broker-{uuid.uuid4().hex}"
    queue = Queue(name, Exchange(name, type="direct"), routing_key=name)
    try:
        with Connection(url) as conn:
            conn.Producer().publish({"n": 1}, exchange=queue.exchange, routing_key=name, declare=[queue])
            message = conn.SimpleQueue(queue).get(timeout=5)
            assert message.payload == {"n": 1}
            channel = message.channel
            # Delivered and not acknowledged: in kombu's bookkeeping, for
            # another worker to take back if this one died.
            assert redis.Redis.from_url(url).hlen(channel.unacked_key) >= 1
            tag = message.delivery_tag
            message.ack()
            assert not redis.Redis.from_url(url).hexists(channel.unacked_key, tag)
    finally:
        redis.Redis.from_url(url).delete(name)


def test_the_celery_app_uses_it_for_redis():
    with app.connection_for_write(require_redis()) as conn:
        assert type(conn.transport) is broker.Transport


def test_a_worker_opens_its_database_pool_at_start_unless_it_forks(monkeypatch):
    """The dispatch worker (a pool of threads) opens its sessions' pool when
    it is ready; a prefork parent never does, or its children would inherit
    the sessions' sockets (a real threads worker: tests/reliability)."""
    from types import SimpleNamespace

    from celery.concurrency.prefork import TaskPool as Prefork
    from celery.concurrency.thread import TaskPool as Threads
    from django.db import connection

    from config.celery import open_database_pool

    opened = []
    monkeypatch.setitem(connection.settings_dict["OPTIONS"], "pool", {"max_size": 2})
    monkeypatch.setattr(connection, "ensure_connection", lambda: opened.append("opened"))
    monkeypatch.setattr(connection, "close", lambda: None)
    open_database_pool(sender=SimpleNamespace(pool=Prefork.__new__(Prefork)))
    assert opened == []
    open_database_pool(sender=SimpleNamespace(pool=Threads.__new__(Threads)))
    assert opened == ["opened"]
