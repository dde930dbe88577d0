"""The writer thread records results on its own connection, committed
before it reports done; to disk unless DISPATCH_DURABLE_RESULTS is off."""

import pytest
from django.db import connection

from mailing.recorder import Recorder
from tests.services import require_postgresql

pytestmark = pytest.mark.django_db(transaction=True)


def commit_mode(durable: bool, settings) -> tuple[str, int]:
    settings.DISPATCH_DURABLE_RESULTS = durable
    seen = []

    def write() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            seen.append((cursor.fetchone()[0], id(connection.connection)))

    recorder = Recorder(threaded=True)
    recorder.record(write)
    recorder.wait_for_previous()
    assert len(seen) == 1  # done before wait_for_previous returned
    recorder.close()
    return seen[0]


@pytest.mark.parametrize(("durable", "mode"), [(False, "off"), (True, "on")])
def test_the_writer_skips_waiting_for_the_disk_only_when_asked(settings, durable, mode):
    require_postgresql()
    got, writer_connection = commit_mode(durable, settings)
    assert got == mode
    with connection.cursor() as cursor:  # the test's own connection is untouched
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone()[0] == "on"
    assert writer_connection != id(connection.connection)
