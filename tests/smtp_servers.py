"""Real SMTP servers for tests (aiosmtpd in a thread) that behave like the
providers of DOMAIN.md §7: with AUTH, with TLS, refusing, or silent; and
tarpits (SMTP, IMAP, POP3), which hold a client by talking slowly."""

import itertools
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from mailing.sink import SinkHandler, _free_port

LOGIN = "robot@mail.test"
PASSWORD = "s3cret-app-password"


def authenticator(server, session, envelope, mechanism, auth_data) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        LOGIN.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False)


class Pipelining:
    """Offers PIPELINING in the EHLO reply, as Gmail, Yandex and Mail.ru do
    (aiosmtpd reads pipelined commands in order either way)."""

    pipelining: bool = True

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]] if self.pipelining else responses


class PipeliningSink(Pipelining, SinkHandler):
    pass


class BlacklistingHandler(SinkHandler):
    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        return "550 5.7.1 Spam rejected: your IP is listed"


@contextmanager
def smtp_server(
    *,
    auth: bool = True,
    tls: str = "none",
    certs=None,
    handler: SinkHandler | None = None,
    **options: object,
) -> Iterator[tuple[Controller, SinkHandler]]:
    """tls: "none", "starttls" or "ssl" (implicit). `options` go to
    aiosmtpd's SMTP (enable_SMTPUTF8=True, say)."""
    handler = handler or SinkHandler()
    port = _free_port("127.0.0.1")
    kwargs: dict = {"hostname": "127.0.0.1", "port": port, **options}
    if auth:
        kwargs.update(authenticator=authenticator, auth_require_tls=False)
    if tls == "starttls":
        kwargs.update(tls_context=certs.server_context(), require_starttls=True)
    elif tls == "ssl":
        kwargs.update(ssl_context=certs.server_context(), server_hostname="localhost")
    controller = Controller(handler, **kwargs)
    controller.start()
    try:
        yield controller, handler
    finally:
        controller.stop()


@contextmanager
def silent_server() -> Iterator[int]:
    """Accepts connections and never says a word: the timeout case."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()


class Peer:
    """One connection to a tarpit, as its script sees it: it talks until the
    test ends or `lasts` seconds have passed, then the connection closes (so
    a client without a deadline fails late instead of hanging the suite)."""

    def __init__(self, sock: socket.socket, stop: threading.Event, lasts: float) -> None:
        self.sock, self.stop = sock, stop
        self.until = time.monotonic() + lasts
        self.pending = b""
        sock.settimeout(0.1)

    def going(self) -> bool:
        return not self.stop.is_set() and time.monotonic() < self.until

    def say(self, data: bytes) -> None:
        self.sock.sendall(data)

    def dribble(self, data: bytes, every: float = 0.2) -> None:
        """`data` again and again, every `every` seconds, for as long as it lasts."""
        while self.going():
            self.say(data)
            time.sleep(every)

    def wait(self) -> None:
        """Say nothing and read nothing, for as long as it lasts."""
        while self.going():
            time.sleep(0.05)

    def line(self) -> bytes:
        """The next line the client sends (b"" once it is gone or time is up)."""
        while b"\n" not in self.pending:
            chunk = self.recv()
            if not chunk:
                return b""
            self.pending += chunk
        line, _, self.pending = self.pending.partition(b"\n")
        return line + b"\n"

    def recv(self) -> bytes:
        while self.going():
            try:
                return self.sock.recv(65536)
            except TimeoutError:
                continue
        return b""


@contextmanager
def tarpit(script: Callable[[Peer], None], *, lasts: float = 8.0, tls: ssl.SSLContext | None = None) -> Iterator[int]:
    """A server on a free port that runs `script` for each connection: the
    servers that hold a client by talking slowly (see the scripts below).
    `tls`: implicit TLS, the handshake done before the script starts."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.1)
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def serve(conn: socket.socket) -> None:
        with suppress(OSError), conn:
            if tls is not None:
                conn.settimeout(lasts)
                conn = tls.wrap_socket(conn, server_side=True)
            script(Peer(conn, stop, lasts))

    def accept() -> None:
        while not stop.is_set():
            try:
                conn = listener.accept()[0]
            except OSError:
                continue
            thread = threading.Thread(target=serve, args=(conn,), daemon=True)
            thread.start()
            threads.append(thread)

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        acceptor.join()
        for thread in threads:
            thread.join()
        listener.close()


# Scripts for tarpit(): each holds the client in its own way.


def endless_banner(peer: Peer) -> None:
    """A "220-" line every 0.2 s: a greeting that never ends."""
    peer.dribble(b"220-tarpit.test still greeting you\r\n")


def byte_by_byte(peer: Peer) -> None:
    """One byte every 0.2 s, never a newline."""
    peer.say(b"220 ")
    peer.dribble(b"x")


def endless_auth(peer: Peer) -> None:
    """Greets and answers EHLO; answers AUTH with "334-" lines forever."""
    peer.say(b"220 tarpit.test ESMTP\r\n")
    peer.line()
    peer.say(b"250-tarpit.test\r\n250 AUTH PLAIN LOGIN\r\n")
    peer.line()
    peer.dribble(b"334-go on\r\n")


def dribbled_handshake(peer: Peer) -> None:
    """Takes the ClientHello, then sends a TLS record header announcing 16 KB
    and the record's bytes one every 0.2 s."""
    peer.recv()
    peer.say(b"\x16\x03\x03\x40\x00")
    peer.dribble(b"\x00")


def _until_data(peer: Peer) -> bool:
    """Plays a willing server up to the 354 after DATA."""
    peer.say(b"220 tarpit.test ESMTP\r\n")
    while line := peer.line():
        verb = line[:4].upper()
        if verb in (b"EHLO", b"HELO"):
            peer.say(b"250 tarpit.test\r\n")
        elif verb == b"DATA":
            peer.say(b"354 go ahead\r\n")
            return True
        else:
            peer.say(b"250 ok\r\n")
    return False


def endless_reply_to_data(peer: Peer) -> None:
    """Takes the letter, then answers its final dot with "250-" lines forever."""
    if _until_data(peer):
        while (line := peer.line()) and line != b".\r\n":
            pass
        peer.dribble(b"250-still queuing\r\n")


def stops_reading_data(peer: Peer) -> None:
    """Says 354 to DATA, then never reads again: the client's send blocks."""
    if _until_data(peer):
        peer.wait()


# IMAP and POP3 tarpits, for the connection test of a bounce mailbox and the
# bounce reader.


def imap_dribbling_at(verb: bytes) -> Callable[[Peer], None]:
    """A willing IMAP server until the command `verb` (b"CAPABILITY",
    b"SELECT", b"UID"...), which it answers with untagged lines forever."""

    def script(peer: Peer) -> None:
        peer.say(b"* OK [CAPABILITY IMAP4rev1] tarpit.test ready\r\n")
        while line := peer.line():
            tag, _, rest = line.partition(b" ")
            command = rest.split(b" ", 1)[0].strip().upper()
            if command == verb:
                peer.dribble(b"* OK still looking\r\n")
                return
            peer.say(_IMAP_ANSWERS.get(command, b"") + tag + b" OK done\r\n")

    return script


_IMAP_ANSWERS = {
    b"CAPABILITY": b"* CAPABILITY IMAP4rev1 MOVE UIDPLUS\r\n",
    b"SELECT": b"* 1 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n",
    b"EXAMINE": b"* 1 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n",
}


def pop3_dribbling_at(verb: bytes) -> Callable[[Peer], None]:
    """A willing POP3 server until the command `verb`: b"LIST" gets a
    listing that never ends, any other an answer line that never ends."""

    def script(peer: Peer) -> None:
        peer.say(b"+OK tarpit.test ready\r\n")
        while line := peer.line():
            if line.split(b" ", 1)[0].strip().upper() == verb:
                if verb == b"LIST":
                    peer.say(b"+OK listing follows\r\n")
                    peer.dribble(b"1 100\r\n")
                else:
                    peer.say(b"+OK ")
                    peer.dribble(b"1")
                return
            peer.say(b"+OK\r\n")

    return script


# A scripted server for tarpit(): the odd servers found on the internet,
# played byte for byte, recording what the client sent.

SCRIPTED_GREETING = b"220 odd.test ESMTP\r\n"


class Scripted:
    """A tarpit script. `answer(conn, line)` returns the bytes to say to one command line
    (None: the default below). `after_dot(conn, body)` answers the final
    dot. `greeting(conn)` greets each connection: a greeting that is not a
    220 is said and the connection closed, as servers that turn a client
    away do. Every line the client sends is kept in `heard` per connection."""

    def __init__(self, answer=None, *, ehlo: bytes = b"250 odd.test\r\n", after_dot=None, greeting=None) -> None:
        self.answer = answer or (lambda conn, line: None)
        self.greeting = greeting or (lambda conn: SCRIPTED_GREETING)
        self.ehlo = ehlo
        self.after_dot = after_dot or (lambda conn, body: b"250 2.0.0 Ok: queued\r\n")
        self.counter = itertools.count()
        self.heard: list[list[bytes]] = []
        self.bodies: list[bytes] = []

    def __call__(self, peer: Peer) -> None:
        conn = next(self.counter)
        heard: list[bytes] = []
        self.heard.append(heard)
        greeting = self.greeting(conn)
        peer.say(greeting)
        if not greeting.startswith(b"220"):
            return
        while line := peer.line():
            heard.append(line)
            said = self.answer(conn, line)
            if callable(said):
                said(peer)
                continue
            if said is not None:
                peer.say(said)
                if line[:4].upper() == b"DATA" and said.startswith(b"354"):
                    self._body(peer, conn, heard)
                continue
            verb = line[:4].upper()
            if verb == b"EHLO":
                peer.say(self.ehlo)
            elif verb == b"QUIT":
                peer.say(b"221 2.0.0 Bye\r\n")
                return
            elif verb == b"DATA":
                peer.say(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                self._body(peer, conn, heard)
            else:
                peer.say(b"250 2.0.0 Ok\r\n")

    def _body(self, peer: Peer, conn: int, heard: list[bytes]) -> None:
        lines = []
        while (line := peer.line()) and line != b".\r\n":
            lines.append(line)
        self.bodies.append(b"".join(lines))
        heard.append(b"<body>")
        if not line:
            return  # cut off: the client hung up in DATA mode
        heard.append(b".\r\n")
        reply = self.after_dot(conn, self.bodies[-1])
        if callable(reply):
            reply(peer)
        elif reply:
            peer.say(reply)
