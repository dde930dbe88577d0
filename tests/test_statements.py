"""config.statements: the dispatcher's statements are bound on the server
and kept planned by PostgreSQL, and still behave as Django's cursors do."""

import pytest
from django.db import IntegrityError, connection
from django.test.utils import CaptureQueriesContext

from config import statements

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="prepared statements are PostgreSQL's"),
]

PROBE = "SELECT %s::int + 1 AS postroute_statements_probe"


@pytest.fixture(autouse=True)
def dispatch_session():
    """The session as the dispatch worker's pool makes it (settings: only
    that process prepares; the suite runs without a pool)."""
    connection.ensure_connection()
    connection.connection.prepare_threshold = 5
    yield
    connection.connection.prepare_threshold = None


def _prepared() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


def test_a_statement_run_often_is_planned_once_a_session_and_the_orms_are_not():
    for value in range(8):
        with statements.cursor() as cursor:
            cursor.execute(PROBE, [value])
            assert cursor.fetchone() == (value + 1,)
    with connection.cursor() as cursor:  # Django's own cursor, bound on the client
        for value in range(8):
            cursor.execute("SELECT %s::int + 2 AS postroute_orm_probe", [value])
    prepared = _prepared()
    assert any("postroute_statements_probe" in text for text in prepared)
    assert not any("postroute_orm_probe" in text for text in prepared)


def test_without_prepared_statements_nothing_is_prepared():
    connection.connection.prepare_threshold = None  # as a web process, or DB_PREPARED_STATEMENTS=0, leaves it
    for value in range(8):
        with statements.cursor() as cursor:
            cursor.execute(PROBE, [value])
    assert not any("postroute_statements_probe" in text for text in _prepared())


def test_errors_are_djangos_and_counted_statements_are_seen():
    with CaptureQueriesContext(connection) as queries, statements.cursor() as cursor:
        cursor.execute("SELECT 1")
    assert len(queries) == 1
    with pytest.raises(IntegrityError), statements.cursor() as cursor:
        cursor.execute("INSERT INTO accounts_tenant (id) VALUES (NULL)")
