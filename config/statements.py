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
execute wrappers run, and tests that count statements see these ones."""

from typing import Any

from django.db import connection


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
