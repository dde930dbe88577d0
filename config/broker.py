"""kombu's Redis transport, with one client a channel instead of one a call.

kombu builds a new `redis.Redis` around its connection pool for every
command it sends outside the event loop: each task's delivery bookkeeping
(the unacked hash and index), each acknowledgement, each publish. Building
one copies redis-py's ~200 response callbacks into a fresh dictionary, and
in the dispatch worker that was 9% of its CPU (py-spy, 200 small mailings
at once). A `redis.Redis` is safe to share between threads (each command
takes a connection from the pool), so each channel keeps one for as long as
its pool lives; when kombu drops the pool (after a fork, a lost
connection), the next call builds a client on the new pool.

Registered for the redis:// and rediss:// URLs in config.celery, so the
broker URL and every other option stay kombu's own."""

import threading
from contextlib import contextmanager

from kombu.transport import redis

_building = threading.Lock()


class Channel(redis.Channel):
    _shared_client = None

    @contextmanager
    def conn_or_acquire(self, client=None):
        if client:
            yield client
            return
        shared = self._shared_client
        if shared is None or shared.connection_pool is not self.pool:
            # Threads that meet a missing client at once build one, not one each.
            with _building:
                shared = self._shared_client
                if shared is None or shared.connection_pool is not self.pool:
                    shared = self._shared_client = self._create_client()
        yield shared


class Transport(redis.Transport):
    Channel = Channel


def register() -> None:
    """The product's Redis URLs take this transport."""
    from kombu.transport import TRANSPORT_ALIASES

    for scheme in ("redis", "rediss"):
        TRANSPORT_ALIASES[scheme] = "config.broker:Transport"
