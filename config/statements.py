"""A cursor for the statements the dispatcher runs thousands of times a
minute (a batch's claim, its reservation, a chain's reads, the writer's
results), whose text never changes: bound on the server, so that
PostgreSQL parses and plans each once a session and then only runs it.

Django's cursors bind on the client: every statement reaches PostgreSQL as
new text, parsed and planned again. For the dispatcher's reads of a chain,
measured on one session, PostgreSQL spent 278 µs of CPU on a statement
bound on the client, 53 µs on the same one prepared; the client 152 and 84.

psycopg prepares a statement after it has run `prepare_threshold` times on
a session: set for the dispatch worker's pooled sessions (settings,
DB_PREPARED_STATEMENTS); elsewhere (web, imports) these cursors only bind
on the server. Only these cursors prepare: the ORM's stay bound on the
client, since the texts of its queries vary (an `IN` of each length is a
statement of its own).

The cursor is Django's own wrapper around it, so errors are Django's,
execute wrappers run, and tests that count statements see these ones
(execute_alone's one statement goes around them: its errors are Django's
too, but no execute wrapper sees it)."""

import itertools
import re
import select
import weakref
from collections.abc import Sequence
from typing import Any

import psycopg
from django.db import connection
from psycopg import pq


def cursor() -> Any:
    """As `connection.cursor()`, bound on the server on PostgreSQL."""
    if connection.vendor != "postgresql":
        return connection.cursor()
    import psycopg
    from django.db.backends.postgresql.base import TIMESTAMPTZ_OID
    from django.db.backends.postgresql.psycopg_any import register_tzloader

    connection.close_if_health_check_failed()
    connection.ensure_connection()
    with connection.wrap_database_errors:
        raw = psycopg.Cursor(connection.connection)
        # As the backend's create_cursor(): times in the session's zone.
        loader = connection.connection.adapters.get_loader(TIMESTAMPTZ_OID, psycopg.pq.Format.TEXT)
        if connection.timezone != loader.timezone:
            register_tzloader(connection.timezone, raw)
        connection.validate_thread_sharing()
        return connection.make_debug_cursor(raw) if connection.queries_logged else connection.make_cursor(raw)


# The writer's one statement a letter, when a letter's result is committed
# alone (with one or two conversations, most letters), goes straight
# through libpq: measured on the benchmark's box, the client's CPU for one
# such UPDATE was 158 µs through a Django cursor, 151 µs through psycopg's
# execute() (its prepared-statement bookkeeping, a dumper a value, the
# result's loaders) and 63 µs this way; on a box of two cores the writer's
# CPU is taken from the conversations waiting for their replies.
_prepared: weakref.WeakKeyDictionary[Any, set[bytes]] = weakref.WeakKeyDictionary()


def execute_alone(name: str, sql: str, params: Sequence[str]) -> int:
    """Run `sql` ($1, $2... placeholders, text values) on this thread's
    session, committed by itself; the number of rows it changed. Prepared
    once a session under `name`, unless prepared statements are off
    (DB_PREPARED_STATEMENTS=0: a pooler that cannot keep them). Only
    outside a transaction on PostgreSQL (`alone_possible`). Errors are
    Django's, as from a cursor."""
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    session = connection.connection
    with connection.wrap_database_errors, session.lock:
        values = [value.encode() for value in params]
        if session.prepare_threshold is None:
            return _rows(_run(session.pgconn, lambda pgconn: pgconn.send_query_params(sql.encode(), values)))
        key = name.encode()

        def prepared(pgconn: Any) -> None:
            pgconn.send_query_prepared(key, values)

        if key not in _prepared.setdefault(session, set()):
            _prepare(session, key, sql)
        try:
            return _rows(_run(session.pgconn, prepared))
        except psycopg.errors.InvalidSqlStatementName:
            # The session forgot it (DISCARD ALL): once more, prepared again.
            _prepare(session, key, sql)
            return _rows(_run(session.pgconn, prepared))


def _prepare(session: Any, key: bytes, sql: str) -> None:
    checked(session.pgconn.prepare(key, sql.encode()))
    _prepared[session].add(key)


def numbered(sql: str) -> str:
    """A statement's %s placeholders as libpq's $1, $2...: the same text
    for execute_alone() (no literal % in it)."""
    count = itertools.count(1)
    return re.sub("%s", lambda _: f"${next(count)}", sql)


def alone_possible() -> bool:
    """execute_alone() may run: PostgreSQL, and no transaction is open (in
    one, psycopg sends its BEGIN with its own next statement, which a
    statement sent around it would run before)."""
    return connection.vendor == "postgresql" and not connection.in_atomic_block


def _run(pgconn: Any, send: Any) -> Any:
    """Send, then wait for the result on the socket (the GIL released), as
    libpq asks of a non-blocking session: the result, or the error it
    holds raised."""
    send(pgconn)
    flush(pgconn)
    return answer(pgconn)


def flush(pgconn: Any) -> None:
    """What was sent on a non-blocking session, all of it on its way."""
    while pgconn.flush():  # not all of it went: wait, reading what comes meanwhile
        _wait(pgconn, select.POLLIN | select.POLLOUT)
        pgconn.consume_input()


def answer(pgconn: Any, *, block: bool = True, encoding: str | None = None) -> Any:
    """The statement's result, or the error it holds raised (in the
    session's `encoding`; by default the thread's Django session's). Not
    `block`ing: None while it has not come."""
    pgconn.consume_input()  # what came so far
    if not block and pgconn.is_busy():
        return None
    result = None
    while True:  # every result until None; get_result() would block while busy
        # The socket is read again only while libpq lacks a whole result:
        # reading it after each result cost two system calls a letter that
        # found nothing (each one a hand-over of the interpreter between
        # conversations).
        while pgconn.is_busy():
            _wait(pgconn, select.POLLIN)
            pgconn.consume_input()
        if (last := pgconn.get_result()) is None:
            return checked(result, encoding)
        result = last


def _wait(pgconn: Any, events: int) -> None:
    # poll(), not select(): a process of many SMTP conversations may hold
    # the session on a descriptor past select()'s 1024.
    poller = select.poll()
    poller.register(pgconn.socket, events)
    poller.poll()


def checked(result: Any, encoding: str | None = None) -> Any:
    """`result`, or the error it holds raised (in the session's `encoding`;
    by default the thread's Django session's)."""
    if result is None:
        raise psycopg.OperationalError("the server sent no result")
    if result.status not in (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK):
        encoding = encoding or connection.connection.info.encoding
        raise psycopg.errors.error_from_result(result, encoding=encoding)
    return result


def _rows(result: Any) -> int:
    return int(result.command_tuples or 0)
