"""Recording letter results without making the SMTP conversations wait for
database commits: one writer thread per worker process, with one database
session, commits the results of all the process's conversations in groups.
Letters sent, the one result of nearly every letter, go without the thread
on PostgreSQL: over the lane the conversations drive themselves
(mailing.dispatch.lane), with the same bound and the same grouping.

The duplicate bound still holds: before the final dot of its next letter
(where the server accepts it) a conversation waits until every earlier
result of its own is committed (wait_for_previous); the MAIL FROM, RCPT TO
and DATA round trips of that next letter and the sending of its body overlap
the commit. So a worker killed at any moment leaves, per conversation, at
most one letter the server accepted but the database does not know as sent.

Group commit: whatever the conversations queued while the previous commit
ran goes in the next transaction, so a hundred conversations cost about one
commit per round of their letters, not one each. A write that fails (a
letter whose row changed under it) fails only its own conversation: the
group is written again one result at a time.

"Committed" means on disk, as PostgreSQL commits by default. With
DISPATCH_DURABLE_RESULTS=0 the writer does not wait for the disk
(synchronous_commit off for its transactions): a worker's death still cannot
undo such a commit and a clean restart of PostgreSQL writes it out, but a
crash of PostgreSQL itself may forget the last fraction of a second of
results.

The writer lives while a conversation of the process uses it: with one
batch at a time (tests, a solo worker) each batch has a fresh one, and its
session closes with it."""

import logging
import queue
import threading
from collections.abc import Callable

from django.conf import settings
from django.db import connection, transaction

from .lane import lanes as _lanes
from .results import Sent, record_sent, record_sent_together

log = logging.getLogger(__name__)
GROUP = 500  # results in one transaction at most
Write = Callable[[], object]


class RecordingFailed(Exception):
    """An earlier letter's result could not be committed: no further letter
    may be accepted in this batch, or the duplicate bound would not hold."""


class Recorder:
    """One conversation's handle on the process's writer."""

    def __init__(self, *, threaded: bool) -> None:
        self.threaded = threaded
        self._pending = 0
        self._error: Exception | None = None
        self._done = threading.Condition()
        # Letters sent go over the lane (mailing.dispatch.lane) on
        # PostgreSQL; `_in_lane` of the pending results are there.
        self._in_lane = 0
        self.lane = _lanes.take() if threaded and connection.vendor == "postgresql" else None
        if threaded:
            self._queue = _writer.join()

    def record(self, write: Write) -> None:
        if not self.threaded:
            write()
            return
        lane = self.lane is not None and type(write) is Sent
        with self._done:
            self._pending += 1
            self._in_lane += lane
        if lane:
            self.lane.add(self, write)  # type: ignore[arg-type]
        else:
            self._queue.put((self, write))

    def wait_for_previous(self) -> None:
        if self.threaded:
            while self._in_lane:
                self.lane.drive(block=True)  # type: ignore[union-attr]
            with self._done:
                self._done.wait_for(lambda: self._pending == 0)
                if self._error is not None:
                    raise RecordingFailed("a letter's result could not be recorded") from self._error

    def idle(self) -> bool:
        """Every result recorded so far is committed, none failed."""
        if not self.threaded:
            return True
        if self._in_lane:
            self.lane.drive(block=False)  # type: ignore[union-attr]
        with self._done:
            return self._pending == 0 and self._error is None

    def close(self) -> None:
        if self.threaded:
            while self._in_lane:
                self.lane.drive(block=True)  # type: ignore[union-attr]
            with self._done:
                self._done.wait_for(lambda: self._pending == 0)
            if self.lane is not None:
                _lanes.give_back(self.lane)
            _writer.leave()

    def _landed(self) -> None:
        """A letter sent, committed over the lane."""
        with self._done:
            self._in_lane -= 1
            self._pending -= 1
            self._done.notify_all()

    def _handed_back(self, sent: Sent) -> None:
        """The lane could not commit it: the writer will."""
        with self._done:
            self._in_lane -= 1
        self._queue.put((self, sent))

    def _finished(self, error: Exception | None) -> None:
        with self._done:
            self._pending -= 1
            if error is not None:
                self._error = self._error or error
            self._done.notify_all()


class Writer:
    """The process's writer thread, started by the first conversation that
    needs it and stopped when the last one closes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._queue: queue.SimpleQueue | None = None
        self._thread: threading.Thread | None = None

    def join(self) -> queue.SimpleQueue:
        with self._lock:
            if self._users == 0 or self._thread is None or not self._thread.is_alive():
                self._queue = queue.SimpleQueue()
                self._thread = threading.Thread(
                    target=self._run, args=(self._queue,), name="letter-writer", daemon=True
                )
                self._thread.start()
            self._users += 1
            return self._queue

    def leave(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users:
                return
            self._queue.put(None)
            thread, self._thread = self._thread, None
        thread.join()
        _lanes.close()

    def _run(self, items: queue.SimpleQueue) -> None:
        try:
            while (item := items.get()) is not None:
                group = [item]
                while len(group) < GROUP:
                    try:
                        item = items.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        break
                    group.append(item)
                _commit(group)
                if item is None:
                    return
        finally:
            connection.close()  # this thread's own session (back to the pool, if any)


def _commit(group: list[tuple[Recorder, Write]]) -> None:
    sent = [write for _, write in group if isinstance(write, Sent)]
    others = [write for _, write in group if not isinstance(write, Sent)]
    try:
        if len(group) == len(sent):
            # Letters sent, and nothing else: one statement, committed by
            # itself, no BEGIN and COMMIT round trips (a lone letter
            # straight through libpq on PostgreSQL; a group over arrays),
            # waiting for the disk or not (results.QUICK).
            # Any other write may be several (a refusal of the address fails
            # the letter and suppresses it): in a transaction, all of it or
            # nothing.
            if len(sent) == 1:
                sent[0].alone()
            else:
                record_sent_together(sent)
        else:
            with transaction.atomic():
                if connection.vendor == "postgresql" and not settings.DISPATCH_DURABLE_RESULTS:
                    with connection.cursor() as cursor:
                        cursor.execute("SET LOCAL synchronous_commit TO off")
                for write in others:
                    write()
                if sent:
                    record_sent(sent)  # one round trip for the group's letters
    except Exception as exc:
        connection.close_if_unusable_or_obsolete()
        if len(group) > 1:
            for item in group:  # one at a time: only the failing one's conversation stops
                _commit([item])
            return
        # The letter keeps its claim and returns to the queue when its lease
        # runs out; its conversation stops before the server accepts the
        # next letter (wait_for_previous raises).
        log.exception("could not record a letter's result")
        group[0][0]._finished(exc)
        return
    for owner, _ in group:
        owner._finished(None)


_writer = Writer()
