"""Recording letter results without making the SMTP conversation wait for
database commits: a writer thread with its own connection.

The duplicate bound still holds: before the final dot of the next letter
(where the server accepts it) the sender waits until every earlier result
is committed (wait_for_previous); the MAIL FROM, RCPT TO and DATA round
trips of that next letter and the sending of its body overlap the commit.
So a worker killed at any moment leaves at most one letter the server
accepted but the database does not know as sent.

"Committed" means on disk, as PostgreSQL commits by default. With
DISPATCH_DURABLE_RESULTS=0 the writer does not wait for the disk
(synchronous_commit off): a worker's death still cannot undo such a commit
and a clean restart of PostgreSQL writes it out, but a crash of PostgreSQL
itself may forget the last fraction of a second of results."""

import logging
import queue
import threading
from collections.abc import Callable

from django.conf import settings
from django.db import connection

log = logging.getLogger(__name__)


class RecordingFailed(Exception):
    """An earlier letter's result could not be committed: no further letter
    may be accepted in this batch, or the duplicate bound would not hold."""


class Recorder:
    def __init__(self, *, threaded: bool) -> None:
        self.threaded = threaded
        self._pending = 0
        self._error: Exception | None = None
        self._prepared = False
        self._done = threading.Condition()
        if threaded:
            self._queue: queue.Queue[Callable[[], object] | None] = queue.Queue()
            self._thread = threading.Thread(target=self._run, name="letter-recorder", daemon=True)
            self._thread.start()

    def record(self, write: Callable[[], object]) -> None:
        if not self.threaded:
            write()
            return
        with self._done:
            self._pending += 1
        self._queue.put(write)

    def wait_for_previous(self) -> None:
        if self.threaded:
            with self._done:
                self._done.wait_for(lambda: self._pending == 0)
                if self._error is not None:
                    raise RecordingFailed("a letter's result could not be recorded") from self._error

    def close(self) -> None:
        if self.threaded:
            self._queue.put(None)
            self._thread.join()

    def _run(self) -> None:
        try:
            while (write := self._queue.get()) is not None:
                try:
                    self._prepare()
                    write()
                except Exception as exc:
                    # The letter keeps its claim and returns to the queue when
                    # its lease runs out; the batch stops before the server
                    # accepts the next letter (wait_for_previous raises).
                    log.exception("could not record a letter's result")
                    with self._done:
                        self._error = self._error or exc
                finally:
                    with self._done:
                        self._pending -= 1
                        self._done.notify_all()
        finally:
            connection.close()  # this thread's own connection

    def _prepare(self) -> None:
        """Once, on this thread's own connection (inside the error handling:
        a session that cannot be opened must fail the batch, not kill the
        thread and leave the sender waiting for ever)."""
        if not self._prepared and connection.vendor == "postgresql" and not settings.DISPATCH_DURABLE_RESULTS:
            with connection.cursor() as cursor:
                cursor.execute("SET synchronous_commit TO off")
        self._prepared = True
