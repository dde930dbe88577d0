"""A real SMTP server (aiosmtpd in a thread) that fails the way providers
fail (DOMAIN.md §7), on cue: 421 and hang up, 450/451/452, 535 at AUTH,
550 5.1.1, 550 5.7.1, 554, a connection dropped in the middle of DATA, a
stall past the client's timeout, or a 250 followed at once by a hang-up.

Which letter meets which fault:

- RCPT and DATA faults are planned per recipient in a FaultPlan, which may
  be shared by several servers (a letter can move to the next server); each
  attempt that reaches RCPT takes the next planned fault of its recipient;
- a MAIL command does not say which letter follows, so MAIL faults are
  planned per server by the ordinal of the MAIL command (1 = the first one
  this server receives); the dispatcher sends letters in id order, so a
  test can tell which letter that is;
- AUTH faults by the ordinal of the connection that authenticates: every
  mechanism smtplib tries on that connection is refused;
- a cap on the letters of one connection (Exim's
  smtp_accept_max_per_connection): the MAIL commands of a connection beyond
  `cap` meet `cap_fault`, at MAIL, at RCPT or after their DATA.

The handler logs the Message-ID of every letter it accepted (250 after
DATA), how many letters were handed to it in DATA, and every fault played."""

import asyncio
import functools
import re
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session, syntax

from mailing.sink import SinkHandler, _free_port
from tests.smtp_servers import Pipelining, authenticator

MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(<[^>\r\n]+>)", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class Fault:
    name: str
    phase: str  # "auth", "mail", "rcpt", or "data" (the end of DATA, or during it for a drop)
    reply: str = ""  # what the server says; "{rcpt}" is the recipient
    close: bool = False  # hang up right after the reply, as servers do after a 421
    action: str = "reply"  # "reply", "drop" (mid-DATA, no reply), "stall" (no reply in time), "accept_close"

    def text(self, rcpt: str = "") -> str:
        return self.reply.format(rcpt=rcpt)


def _faults(*faults: Fault) -> dict[str, Fault]:
    return {f.name: f for f in faults}


MATRIX = _faults(
    Fault("421 at MAIL", "mail", "421 4.3.2 Service shutting down, closing transmission channel", close=True),
    Fault("421 at RCPT", "rcpt", "421 4.7.0 Too many connections from your IP, closing channel", close=True),
    Fault("421 after DATA", "data", "421 4.4.2 Timeout in processing, closing channel", close=True),
    Fault("450 at RCPT", "rcpt", "450 4.2.1 Mailbox busy, try again later"),
    Fault("451 at RCPT", "rcpt", "451 4.7.1 Greylisted, please try again in 60 seconds"),
    Fault("452 at RCPT", "rcpt", "452 4.2.2 Mailbox over quota for now"),
    Fault("450 after DATA", "data", "450 4.2.0 Mailbox temporarily unavailable"),
    Fault("451 after DATA", "data", "451 4.3.0 Local error in processing"),
    Fault("452 after DATA", "data", "452 4.3.1 Insufficient system storage"),
    Fault("535 at AUTH", "auth", "535 5.7.8 Authentication credentials invalid"),
    Fault("550 5.1.1 at RCPT", "rcpt", "550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown"),
    Fault("550 5.7.1 at MAIL", "mail", "550 5.7.1 Spam rejected: your IP is listed on a blocklist"),
    Fault("550 5.7.1 after DATA", "data", "550 5.7.1 Message rejected as spam"),
    Fault("554 after DATA", "data", "554 5.6.0 Message content rejected: malformed MIME"),
    Fault("drop in DATA", "data", action="drop"),
    Fault("stall past the timeout", "data", action="stall"),
    Fault("250 then hang up", "data", "250 2.0.0 Ok: queued", action="accept_close"),
)

# Beyond the matrix: what providers also answer, where §7 decides
# by the kind of reply rather than by the command it answers.
SERVER_LEVEL = _faults(
    Fault("451 at MAIL", "mail", "451 4.7.1 Sending rate limit exceeded, try again later"),
    Fault("454 at AUTH", "auth", "454 4.7.0 Temporary authentication failure, try again later"),
    Fault(
        "554 5.7.1 at RCPT",
        "rcpt",
        "554 5.7.1 Service unavailable; Client host [127.0.0.1] blocked using zen.spamhaus.org",
    ),
)


class FaultPlan:
    """Faults per recipient, one taken by each attempt that reaches RCPT."""

    def __init__(self) -> None:
        self._by_rcpt: dict[str, deque[Fault]] = {}
        self._lock = threading.Lock()

    def add(self, rcpt: str, fault: Fault, times: int = 1) -> None:
        if fault.phase not in ("rcpt", "data"):
            raise ValueError(f"{fault.name} is not a per-recipient fault")
        with self._lock:
            self._by_rcpt.setdefault(rcpt, deque()).extend([fault] * times)

    def take(self, rcpt: str) -> Fault | None:
        with self._lock:
            queue = self._by_rcpt.get(rcpt)
            return queue.popleft() if queue else None

    def left(self, rcpt: str) -> int:
        with self._lock:
            return len(self._by_rcpt.get(rcpt, ()))


@dataclass
class FaultHandler(Pipelining, SinkHandler):
    pipelining: bool = False
    plan: FaultPlan = field(default_factory=FaultPlan)
    mail_faults: dict[int, Fault] = field(default_factory=dict)  # by MAIL command ordinal, from 1
    auth_faults: dict[int, Fault] = field(default_factory=dict)  # by authenticating connection ordinal, from 1
    stall_seconds: float = 4.0
    accepted: list[str] = field(default_factory=list)  # Message-IDs answered with 250 after DATA
    handed: int = 0  # DATA commands with a recipient: letters handed to the server
    played: list[tuple[str, str]] = field(default_factory=list)  # (fault name, recipient or "#ordinal")
    mails: int = 0
    auths: int = 0
    cap: int = 0  # MAIL commands a connection may give without meeting cap_fault
    cap_fault: Fault | None = None
    sessions: int = 0  # connections that gave a MAIL command
    quits: int = 0

    def _play(self, fault: Fault, where: str) -> None:
        with self.lock:
            self.played.append((fault.name, where))

    def authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data):
        if not hasattr(session, "auth_ordinal"):
            with self.lock:
                self.auths += 1
                session.auth_ordinal = self.auths
            if fault := self.auth_faults.get(session.auth_ordinal):
                session.auth_fault = fault
                self._play(fault, f"#{session.auth_ordinal}")
        if fault := getattr(session, "auth_fault", None):
            return AuthResult(success=False, handled=False, message=fault.text())
        return authenticator(server, session, envelope, mechanism, auth_data)

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options):
        with self.lock:
            self.mails += 1
            ordinal = self.mails
            session.mails = getattr(session, "mails", 0) + 1
            self.sessions += session.mails == 1
        if fault := self.mail_faults.get(ordinal):
            return self._answer(server, fault, f"#{ordinal}")
        if self.cap_fault is not None and session.mails > self.cap:
            if self.cap_fault.phase == "mail":
                return self._answer(server, self.cap_fault, f"#{ordinal}")
            envelope.over_cap = True
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options):
        fault = self.plan.take(address)
        if getattr(envelope, "over_cap", False):
            fault = self.cap_fault
        if fault and fault.phase == "rcpt":
            return self._answer(server, fault, address)
        envelope.rcpt_tos.append(address)
        envelope.fault = fault  # played at DATA
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        fault: Fault | None = getattr(envelope, "fault", None)
        rcpt = ",".join(envelope.rcpt_tos)
        if fault is None:
            return await self._accept(server, session, envelope)
        if fault.action == "stall":
            self._play(fault, rcpt)
            await asyncio.sleep(self.stall_seconds)  # the client has given up meanwhile
            return "451 4.4.1 Too late"
        if fault.action == "accept_close":
            self._play(fault, rcpt)
            await self._accept(server, session, envelope)
            _hang_up_soon(server)
            return fault.text(rcpt)
        return self._answer(server, fault, rcpt)

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.lock:
            self.quits += 1
        return "221 Bye"

    async def _accept(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        status = await super().handle_DATA(server, session, envelope)
        found = MESSAGE_ID.search(envelope.original_content or b"")
        with self.lock:
            self.accepted.append(found.group(1).decode() if found else "")
        return status

    def _answer(self, server: SMTP, fault: Fault, where: str) -> str:
        self._play(fault, where)
        if fault.close:
            _hang_up_soon(server)
        return fault.text(where)


def _hang_up_soon(server: SMTP) -> None:
    """Close once the reply being returned is written (FaultSMTP.push; a
    transport's close() still flushes what was written), and hear nothing
    more: commands a client pipelined behind the last one may already be in
    the buffer, and a server that hangs up answers none of them."""
    server.hanging_up = True


class FaultSMTP(SMTP):
    hanging_up = False

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._smtp_methods = {name: self._unless_gone(method) for name, method in self._smtp_methods.items()}

    def _gone(self) -> bool:
        return self.transport is None or self.transport.is_closing()

    def _unless_gone(self, method):
        @functools.wraps(method)
        async def command(arg: str) -> None:
            if not self._gone():
                await method(arg)

        return command

    async def push(self, status) -> None:
        if self._gone():
            return
        await super().push(status)
        if self.hanging_up:
            self.transport.close()

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        handler: FaultHandler = self.event_handler
        fault: Fault | None = getattr(self.envelope, "fault", None)
        if self.envelope.rcpt_tos and not arg:
            with handler.lock:
                handler.handed += 1
        if fault is not None and fault.action == "drop":
            handler._play(fault, ",".join(self.envelope.rcpt_tos))
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            await self._reader.readuntil(b"\r\n")  # some of the letter arrived
            self.transport.abort()
            await asyncio.sleep(60)  # connection_lost() cancels this; the rest of the letter is never read
            return
        await super().smtp_DATA(arg)


class FaultController(Controller):
    def factory(self) -> SMTP:
        return FaultSMTP(self.handler, **self.SMTP_kwargs)


@contextmanager
def fault_server(handler: FaultHandler) -> Iterator[FaultController]:
    """A FaultHandler behind AUTH (robot@mail.test / s3cret-app-password)."""
    controller = FaultController(
        handler,
        hostname="127.0.0.1",
        port=_free_port("127.0.0.1"),
        authenticator=handler.authenticate,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield controller
    finally:
        controller.stop()
