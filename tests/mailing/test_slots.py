"""Connection slots: one PostgreSQL session a process holds the advisory
locks of all its conversations; its own threads never share a slot, and a
session that died is opened anew."""

import pytest
from django.db import connection

from mailing.dispatch.slots import SlotSession
from tests.servers.factories import make_server
from tests.services import require_postgresql

pytestmark = pytest.mark.django_db


def test_a_process_never_gives_one_slot_to_two_of_its_conversations(tenant_a):
    require_postgresql()
    server = make_server(tenant_a, max_connections=2)
    slots = SlotSession()
    first, second = slots.take(server), slots.take(server)
    assert None not in (first, second) and first != second
    assert slots.take(server) is None  # PostgreSQL would grant the same session a lock again
    slots.give_back(first)
    assert slots.take(server) == first


def test_a_slot_session_that_died_is_opened_anew(tenant_a):
    require_postgresql()
    server = make_server(tenant_a, max_connections=2)
    slots = SlotSession()
    held = slots.take(server)
    with connection.cursor() as cursor:  # as a PostgreSQL restart would end it
        cursor.execute("SELECT pg_terminate_backend(%s)", [slots._session.info.backend_pid])
    other = slots.take(server)
    assert other is not None and other != held  # and the slot still in use is taken again
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = %s", [slots._session.info.backend_pid]
        )
        assert cursor.fetchone()[0] == 2
