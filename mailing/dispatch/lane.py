"""Letters sent, committed without waking a thread for each: the
conversations drive one PostgreSQL session of the process themselves.

Right after the server took a letter, its conversation sends the UPDATE
that records it, without waiting for the answer (libpq's asynchronous
calls), and goes on with the next letter's MAIL FROM, RCPT TO and DATA.
Before that letter's final dot it reads the answer (Recorder.idle and
wait_for_previous): the commit overlaps the next letter's round trips, as
the writer thread's did, but no thread is woken, and no lock handed over,
for each letter. On a box of two cores the writer's hand-offs cost the
conversations about a fifth of the worker's CPU (README, Benchmarks).

Group commit stays: what the conversations record while a commit is in
flight waits, and goes in the next statement, together (one statement over
arrays). Whichever conversation next needs an answer lands the flight and
sends the next group.

A process has DISPATCH_LANES lanes (2 by default), each its own session,
and a conversation records over the one fewest conversations use. With one
lane, a conversation whose letter was taken while another's commit was in
flight waited for that commit (a flush of the write-ahead log) before its
own could start, and often met its next final dot still waiting: with two
conversations, 1.01 flushes a letter, none shared. Two sessions commit side
by side, the second's statement running while the first's waits for the
disk (the cost case's default: 0.75 -> 0.8 of the raw loop; README,
Benchmarks).

Only letters sent go this way, and only on PostgreSQL; every other result
(a refusal that also suppresses an address, a deferral...) is the writer
thread's, in a transaction. A group that cannot be sent or committed here
(the session died, PostgreSQL restarted) goes to the writer one result at
a time, whose failures stop only their own conversations: recording a
letter sent twice changes nothing, since its claim token is gone after the
first. The sessions are this process's own (DISPATCH_LANES more per worker
process, not per conversation) and close when the process's last
conversation ends."""

import logging
import os
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import psycopg
from django.conf import settings
from django.db import connection

from config import metrics, statements

from .results import RECORD_ONE_SENT, RECORD_ONE_SENT_QUICK, RECORD_SENT_TOGETHER, RECORD_SENT_TOGETHER_QUICK, Sent

if TYPE_CHECKING:
    from .recorder import Recorder

log = logging.getLogger(__name__)
GROUP = 500  # letters in one statement at most
# (name, text) of the statement, by DISPATCH_DURABLE_RESULTS: one letter's,
# and a group's over arrays; prepared once a session unless prepared
# statements are off (DB_PREPARED_STATEMENTS=0, a pooler).
ONE = {True: (b"postroute_lane_one", RECORD_ONE_SENT), False: (b"postroute_lane_one_quick", RECORD_ONE_SENT_QUICK)}
MANY = {
    True: (b"postroute_lane_many", statements.numbered(RECORD_SENT_TOGETHER)),
    False: (b"postroute_lane_many_quick", statements.numbered(RECORD_SENT_TOGETHER_QUICK)),
}


class Lane:
    """The process's lane: `waiting` results not sent yet, `flight` the
    group whose statement PostgreSQL is running."""

    def __init__(self) -> None:
        self.users = 0  # conversations recording over it (Lanes)
        self.lock = threading.Lock()  # the session and the flight
        self.waiting_lock = threading.Lock()
        self.waiting: list[tuple[Recorder, Sent]] = []
        self.flight: list[tuple[Recorder, Sent]] = []
        self.conn: psycopg.Connection | None = None
        self.pid = 0
        self.prepare = True
        self.prepared: set[bytes] = set()

    def add(self, owner: "Recorder", sent: Sent) -> None:
        """Record `sent` (its owner counted it in `_in_lane`); sent at once
        unless a commit is in flight."""
        with self.waiting_lock:
            self.waiting.append((owner, sent))
        self._kick()

    def drive(self, *, block: bool) -> None:
        """Land the flight if its answer came (`block`: wait for it), then
        send what waits. Returns at once when another conversation drives
        and `block` is false."""
        if not self.lock.acquire(blocking=block):
            return
        try:
            if self.flight:
                self._land(block=block)
            if not self.flight and self.waiting:
                self._launch()
        finally:
            self.lock.release()
        self._kick()

    def close(self) -> None:
        """The process's last conversation ended: its session goes."""
        with self.lock:
            self._drop()

    def _kick(self) -> None:
        # Send what waits if nothing is in flight and nobody drives: a
        # result recorded while another conversation landed the flight
        # would otherwise wait for its owner's next look.
        while self.waiting and not self.flight and self.lock.acquire(blocking=False):
            try:
                if self.waiting and not self.flight:
                    self._launch()
            finally:
                self.lock.release()

    def _launch(self) -> None:
        with self.waiting_lock:
            group, self.waiting = self.waiting[:GROUP], self.waiting[GROUP:]
        try:
            pgconn = self._session()
            durable = settings.DISPATCH_DURABLE_RESULTS
            name, sql = (ONE if len(group) == 1 else MANY)[durable]
            values = [value.encode() for value in _values([sent for _, sent in group])]
            if not self.prepare:
                pgconn.send_query_params(sql.encode(), values)
            else:
                if name not in self.prepared:
                    statements.checked(pgconn.prepare(name, sql.encode()), encoding=self.conn.info.encoding)
                    self.prepared.add(name)
                pgconn.send_query_prepared(name, values)
            statements.flush(pgconn)
        except Exception:
            self._give_up(group)
            return
        self.flight = group

    def _land(self, *, block: bool) -> None:
        assert self.conn is not None
        try:
            if statements.answer(self.conn.pgconn, block=block, encoding=self.conn.info.encoding) is None:
                return  # not come yet
        except Exception:
            group, self.flight = self.flight, []
            self._give_up(group)
            return
        group, self.flight = self.flight, []
        for owner, sent in group:
            metrics.letter_result("sent", server_id=sent.letter.server_id, reply=sent.reply)
            owner._landed()

    def _give_up(self, group: list[tuple["Recorder", Sent]]) -> None:
        """The session failed: a new one next time, and the writer records
        this group one result at a time."""
        log.warning("could not record %d letters over the lane; the writer records them", len(group), exc_info=True)
        self._drop()
        for owner, sent in group:
            owner._handed_back(sent)

    def _session(self) -> Any:
        if self.conn is None or self.conn.closed or self.pid != os.getpid():
            params = connection.get_connection_params()
            self.prepare = params.get("prepare_threshold") is not None
            for option in ("cursor_factory", "context", "prepare_threshold"):
                params.pop(option, None)
            self.conn, self.pid, self.prepared = psycopg.connect(**params, autocommit=True), os.getpid(), set()
        return self.conn.pgconn

    def _drop(self) -> None:
        # Not a session another process (a fork's parent) still uses.
        if self.conn is not None and self.pid == os.getpid():
            self.conn.close()
        self.conn = None


def _values(rows: list[Sent]) -> list[str]:
    """The statement's parameters as text: one letter's, or a group's as
    PostgreSQL arrays."""
    if len(rows) == 1:
        return rows[0].as_text()
    status, at, reply, pk, token = zip(*(sent.as_text() for sent in rows), strict=True)
    return [status[0], _array(pk), _array(token), _array(at), _array(reply)]


def _array(values: Iterable[str]) -> str:
    """An array literal of quoted elements: a server's reply may hold
    quotes, backslashes, commas and braces."""
    return "{" + ",".join('"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"' for value in values) + "}"


class Lanes:
    """The process's lanes, DISPATCH_LANES of them, made as conversations
    need them; each conversation takes the one fewest use."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.all: list[Lane] = []

    def take(self) -> Lane:
        with self.lock:
            wanted = max(1, settings.DISPATCH_LANES)
            while len(self.all) < wanted:
                self.all.append(Lane())
            lane = min(self.all[:wanted], key=lambda one: one.users)
            lane.users += 1
            return lane

    def give_back(self, lane: Lane) -> None:
        with self.lock:
            lane.users -= 1

    def close(self) -> None:
        """The process's last conversation ended: the sessions no
        conversation took meanwhile go (under the lock, so that none takes
        one while it closes)."""
        with self.lock:
            for lane in self.all:
                if not lane.users:
                    lane.close()


lanes = Lanes()
