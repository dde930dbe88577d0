"""An overall deadline for talking to a tenant's server, however slowly it
talks back.

A socket timeout bounds one read, not a conversation. A server that sends a
`220-` line every 0.2 s, or one byte every 0.2 s and never a newline, keeps
smtplib's readline, imaplib's loop over untagged responses or poplib's
listing going forever; one that stops reading our DATA blocks the send; a
TLS handshake can be dribbled too. So the pinned clients in `netguard`:

1. read straight from the socket through `LineReader` (not the stdlib's
   buffered file), so each recv can be given its own timeout;
2. send in pieces with `Deadline._send_to`, each piece likewise;
3. give a TLS handshake (implicit TLS, STARTTLS, STLS) the time left as its
   timeout: CPython bounds one handshake call as a whole by the timeout;
4. use, for every recv, send, connect and handshake, the smaller of the
   per-read timeout and the time left before the deadline, and raise
   `DeadlineExceeded` (a TimeoutError) once the deadline has passed.

Without a deadline the clients behave as the stdlib's do: each read waits
at most the per-read timeout.
"""

from __future__ import annotations

import math
import select
import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.utils.formats import localize
from django.utils.translation import gettext_noop, ngettext

from .words import Param, Seconds, Words

_CHUNK = 65536


class DeadlineExceeded(TimeoutError):
    """The deadline passed while we were talking to the server.

    `doing` is "connect", "reply", "send" or "handshake"; `heard` the bytes
    the server sent since we last sent something (more than 0 on a reply
    means it kept talking without finishing); `budget` the seconds the
    deadline allowed.
    """

    def __init__(self, doing: str = "reply", budget: float = 0.0, heard: int = 0) -> None:
        super().__init__()
        self.doing, self.budget, self.heard = doing, budget, heard

    @property
    def dribbling(self) -> bool:
        return self.doing == "reply" and self.heard > 0

    def sentence(self, where: str | Words | None = None, seconds: float | None = None) -> str:
        """What happened, as a sentence for the tenant."""
        return str(self.words(where, seconds))

    def words(self, where: str | Words | None = None, seconds: float | None = None) -> Words:
        """The sentence, to be worded in its reader's language (servers.words)."""
        params: dict[str, Param] = {
            "where": where or Words(gettext_noop("the server")),
            "within": Seconds(round(self.budget if seconds is None else seconds, 1)),
        }
        if self.dribbling:
            return Words(
                gettext_noop(
                    "%(where)s kept sending (%(heard)s bytes) without finishing its reply; we gave up after %(within)s."
                ),
                {**params, "heard": self.heard},
            )
        if self.doing == "send":
            return Words(
                gettext_noop("%(where)s stopped taking what we sent; it did not take all of it within %(within)s."),
                params,
            )
        if self.doing == "handshake":
            return Words(gettext_noop("The TLS handshake with %(where)s did not finish within %(within)s."), params)
        return Words(gettext_noop("%(where)s did not answer within %(within)s."), params)

    def __str__(self) -> str:
        return self.sentence(Words(gettext_noop("The server")))


def seconds_text(value: float) -> str:
    """ "1 second", "2.5 seconds", in the tenant's language, its number as
    the language writes one ("2,5 секунды"): the plural form of a fraction
    is the one for 2 in every language we speak (секунды)."""
    whole = value == int(value)
    count = int(value) if whole else 2
    number = localize(int(value) if whole else value)
    return ngettext("%(seconds)s second", "%(seconds)s seconds", count) % {"seconds": number}


class Deadline:
    """Mixin for the pinned clients: one deadline for everything they do.

    `deadline_in(seconds)` sets it (`None` removes it); it stays until set
    again, across any number of commands. `_read_timeout` is the per-read
    timeout the client was made with.
    """

    _deadline: float | None = None
    _budget: float = 0.0
    # Our own work (not_counting) since the deadline was last set: the
    # rest of the time since then was the server's.
    own_seconds: float = 0.0
    _heard = 0  # bytes received since we last sent something
    _reader: LineReader | None = None
    _read_timeout: float | None = None
    _nonblocking_sock: socket.socket | None = None

    def deadline_in(self, seconds: float | None) -> None:
        """Everything from now on (connect, TLS, every command and reply,
        every send) must be done within `seconds`, or DeadlineExceeded is
        raised; None: each read only waits the per-read timeout again."""
        self.own_seconds = 0.0
        if seconds is None:
            self._deadline = None
            return
        self._budget = seconds
        self._deadline = time.monotonic() + seconds

    @contextmanager
    def not_counting(self) -> Iterator[None]:
        """What runs inside is our own work, not the server's: the deadline
        moves on by the time it took (a reply that came meanwhile is still
        read, however long our work took)."""
        started = time.monotonic()
        try:
            yield
        finally:
            ours = time.monotonic() - started
            self.own_seconds += ours
            if self._deadline is not None:
                self._deadline += ours

    def clear_deadline(self) -> None:
        self.deadline_in(None)

    def time_left(self) -> float | None:
        """Seconds left before the deadline (0 once passed), None without one."""
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - time.monotonic())

    # --- for the subclasses ------------------------------------------------

    def _io_timeout(self, doing: str = "reply") -> float | None:
        """The timeout for the next socket operation (connect, recv, send,
        handshake); DeadlineExceeded once the deadline has passed."""
        return self._timeout_for(doing)[0]

    def _timeout_for(self, doing: str) -> tuple[float | None, bool]:
        """The timeout, and whether it is the deadline's (not the per-read
        timeout's): a timeout then means the deadline passed."""
        left = self.time_left()
        if left is None:
            return self._read_timeout, False
        if left <= 0:
            raise self._exceeded(doing)
        if self._read_timeout is not None and self._read_timeout < left:
            return self._read_timeout, False
        return left, True

    def _exceeded(self, doing: str) -> DeadlineExceeded:
        return DeadlineExceeded(doing, self._budget, self._heard)

    def _reader_for(self, sock: socket.socket) -> LineReader:
        # A new socket (STARTTLS) gets a new reader: what the old one had
        # buffered was sent before TLS and must be dropped (RFC 3207 §4.2).
        if self._reader is None or self._reader.sock is not sock:
            self._reader = LineReader(sock, self)
        return self._reader

    # The socket is kept non-blocking and waited for with poll() only when
    # it is not ready: a timeout set before every recv and send would cost
    # a system call each (and CPython polls before each call with a
    # timeout), twice the calls a letter needs.

    def _recv_from(self, sock: socket.socket, size: int) -> bytes:
        self._nonblocking(sock)
        while True:
            if not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
                self._wait(sock, select.POLLIN, "reply")  # the reply is rarely there already
            try:
                chunk = sock.recv(size)
                break
            except (BlockingIOError, ssl.SSLWantReadError):
                continue
            except ssl.SSLWantWriteError:
                self._wait(sock, select.POLLOUT, "reply")
        self._heard += len(chunk)
        return chunk

    def _send_to(self, sock: socket.socket, data: bytes) -> None:
        """sendall, but waiting at most the time left for the server to
        take each piece: a server that stops reading cannot hold us past
        the deadline."""
        self._heard = 0
        self._nonblocking(sock)
        view = memoryview(data)
        while view:
            try:
                sent = sock.send(view[:_CHUNK])
            except (BlockingIOError, ssl.SSLWantWriteError):
                self._wait(sock, select.POLLOUT, "send")
                continue
            except ssl.SSLWantReadError:
                self._wait(sock, select.POLLIN, "send")
                continue
            view = view[sent:]

    def _nonblocking(self, sock: socket.socket) -> None:
        if self._nonblocking_sock is not sock:  # once a socket (TLS makes a new one)
            sock.settimeout(0.0)
            self._nonblocking_sock = sock

    def _wait(self, sock: socket.socket, event: int, doing: str) -> None:
        """Until the socket is ready, at most the per-read timeout or the
        time left (TimeoutError; DeadlineExceeded when it is the deadline)."""
        timeout, by_deadline = self._timeout_for(doing)
        poller = select.poll()
        poller.register(sock.fileno(), event)
        if not poller.poll(None if timeout is None else max(0, math.ceil(timeout * 1000))):
            if by_deadline:
                raise self._exceeded(doing)
            raise TimeoutError("timed out")

    def _handshake(self, context: ssl.SSLContext, sock: socket.socket, server_hostname: str) -> ssl.SSLSocket:
        """TLS over `sock`; the whole handshake within the time left."""
        timeout, by_deadline = self._timeout_for("handshake")
        sock.settimeout(timeout)
        try:
            return context.wrap_socket(sock, server_hostname=server_hostname)
        except TimeoutError as exc:
            if by_deadline:
                raise self._exceeded("handshake") from exc
            raise

    def _timed_context(self, context: ssl.SSLContext) -> TimedContext:
        return TimedContext(context, self)


class TimedContext:
    """Stands in for an SSLContext where the stdlib wraps the socket itself
    (smtplib's starttls, imaplib's starttls, poplib's stls), so that the
    handshake too gets only the time left."""

    def __init__(self, context: ssl.SSLContext, client: Deadline) -> None:
        self.context, self.client = context, client

    def wrap_socket(self, sock: socket.socket, server_hostname: str | None = None, **_: Any) -> ssl.SSLSocket:
        return self.client._handshake(self.context, sock, server_hostname or "")


class LineReader:
    """readline() and read() over a socket, each recv through the client's
    deadline. Stands in for the stdlib's `sock.makefile('rb')`."""

    def __init__(self, sock: socket.socket, client: Deadline) -> None:
        self.sock, self.client = sock, client
        self.buffer = bytearray()
        self.scanned = 0  # no newline in buffer[:scanned]

    def readline(self, limit: int) -> bytes:
        """Up to and including the next b"\\n", at most `limit` bytes, or
        what is left when the server closes."""
        while True:
            end = self.buffer.find(b"\n", self.scanned)
            if end >= 0 or len(self.buffer) >= limit:
                return self._take(min(end + 1 if end >= 0 else limit, limit))
            self.scanned = len(self.buffer)
            if not self._fill(_CHUNK):
                return self._take(len(self.buffer))

    def read(self, size: int) -> bytes:
        """Exactly `size` bytes, or fewer when the server closes."""
        while len(self.buffer) < size:
            if not self._fill(max(_CHUNK, min(size - len(self.buffer), 1 << 20))):
                break
        return self._take(min(size, len(self.buffer)))

    def _fill(self, size: int) -> bool:
        chunk = self.client._recv_from(self.sock, size)
        self.buffer += chunk
        return bool(chunk)

    def _take(self, count: int) -> bytes:
        data = bytes(self.buffer[:count])
        del self.buffer[:count]
        self.scanned = 0
        return data
