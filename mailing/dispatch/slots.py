"""Connection slots: at most server.max_connections conversations with one
server at once, across every worker process and thread.

A slot is a PostgreSQL advisory lock. Locks are per database session, so a
dead worker's slots free themselves when PostgreSQL notices its session is
gone: no lease to wait out. A worker process runs many conversations (one a
thread), and a session per conversation would tie the number of database
sessions to the number of conversations; so each process keeps ONE session
for all its slots (`SlotSession`), and remembers which keys its own threads
hold: PostgreSQL would grant the same session a lock it already holds a
second time.

On SQLite (development) there is no limit: `make run` has one worker."""

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import psycopg
from django.db import connection

from servers.models import SmtpServer

log = logging.getLogger(__name__)
KEYS_PER_SERVER = 64  # the most max_connections a server may have (servers.models)


class SlotSession:
    """The process's session holding its threads' slots."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._session: psycopg.Connection | None = None
        self._pid = os.getpid()
        self._held: set[int] = set()

    def take(self, server: SmtpServer) -> int | None:
        """A free slot's key, or None when all of the server's are taken."""
        with self._lock:
            try:
                return self._take(self._open(), server)
            except psycopg.OperationalError:
                # The session died (PostgreSQL restarted, or a proxy closed
                # it while idle): once more on a new one.
                self._drop()
                return self._take(self._open(), server)

    def _take(self, session: psycopg.Connection, server: SmtpServer) -> int | None:
        for slot in range(server.max_connections):
            key = server.pk * KEYS_PER_SERVER + slot
            if key in self._held:
                continue  # one of this process's threads talks to it
            if session.execute("SELECT pg_try_advisory_lock(%s)", [key]).fetchone()[0]:
                self._held.add(key)
                return key
        return None

    def give_back(self, key: int) -> None:
        with self._lock:
            self._held.discard(key)
            if self._session is None or self._session.closed:
                return  # the session ended, and its locks with it
            try:
                self._session.execute("SELECT pg_advisory_unlock(%s)", [key])
            except psycopg.Error:
                log.warning("the slot session is gone; its locks went with it")
                self._drop()

    def held(self) -> int:
        with self._lock:
            return len(self._held)

    def _open(self) -> psycopg.Connection:
        """The session, opened again after PostgreSQL lost it (a restart):
        the slots this process's conversations still use are taken again
        where they are free (a conversation already going is not stopped)."""
        if self._pid != os.getpid():
            # A forked child: the parent's session and slots are not its own.
            self._session, self._held, self._pid = None, set(), os.getpid()
        if self._session is not None and not self._session.closed and not self._session.broken:
            return self._session
        self._drop()
        params = connection.get_connection_params()
        params.pop("pool", None)
        session = psycopg.connect(**params, autocommit=True)
        for key in self._held:
            session.execute("SELECT pg_try_advisory_lock(%s)", [key])
        self._session = session
        return session

    def _drop(self) -> None:
        if self._session is not None:
            with suppress(psycopg.Error):
                self._session.close()
        self._session = None


_process_slots = SlotSession()


@contextmanager
def connection_slot(server: SmtpServer) -> Iterator[bool]:
    """True while this conversation holds one of the server's slots."""
    if connection.vendor != "postgresql":
        yield True
        return
    key = _process_slots.take(server)  # a dead session is opened anew there
    try:
        yield key is not None
    finally:
        if key is not None:
            _process_slots.give_back(key)


# The server's slots taken now, by every process (advisory locks of this
# database; a bigint key is classid's 32 high bits and objid's low ones).
_TAKEN_SQL = """
    SELECT count(DISTINCT (classid::bigint << 32) | objid::bigint) FROM pg_locks
    WHERE locktype = 'advisory' AND granted AND objsubid = 1
    AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
    AND (classid::bigint << 32) | objid::bigint BETWEEN %s AND %s
"""


def others_talking(server: SmtpServer) -> int:
    """How many other conversations talk to the server now (asked by one
    that holds a slot of its own). None counted on SQLite, which has no
    slots."""
    if connection.vendor != "postgresql":
        return 0
    first = server.pk * KEYS_PER_SERVER
    with connection.cursor() as cursor:
        cursor.execute(_TAKEN_SQL, [first, first + KEYS_PER_SERVER - 1])
        return max(cursor.fetchone()[0] - 1, 0)
