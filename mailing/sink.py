"""A local SMTP sink (aiosmtpd) that keeps every letter it receives: in
memory for tests, and as .eml files for a person to read during `make run`."""

import email
import email.policy
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    at: float = field(default_factory=time.monotonic)

    @property
    def message(self) -> email.message.EmailMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)


@dataclass
class SinkHandler:
    directory: Path | None = None
    echo: bool = False
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        item = Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content or b"")
        with self.lock:
            self.received.append(item)
            number = len(self.received)
        if self.directory is not None:
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
            (self.directory / f"{stamp}-{number:05d}.eml").write_bytes(item.data)
        if self.echo:
            print(_summary(item), flush=True)
        return "250 Message accepted for delivery"


def _summary(item: Received) -> str:
    msg = item.message
    body = msg.get_body(preferencelist=("plain",))
    text = body.get_content().strip() if body is not None else ""
    return "\n".join(
        [
            "─" * 60,
            f"From:    {msg['From']}",
            f"To:      {', '.join(item.rcpt_tos)}",
            f"Subject: {msg['Subject']}",
            "",
            text,
        ]
    )


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class MailSink:
    """Run the sink in a background thread: `with MailSink() as sink: ...`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, directory: Path | None = None, echo: bool = False):
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
        self.handler = SinkHandler(directory=directory, echo=echo)
        # aiosmtpd connects to its own port to see it is up, so port 0
        # ("any") is resolved to a free port first.
        self.controller = Controller(self.handler, hostname=host, port=port or _free_port(host))

    @property
    def received(self) -> list[Received]:
        return self.handler.received

    @property
    def port(self) -> int:
        return self.controller.port

    @property
    def host(self) -> str:
        return self.controller.hostname

    def start(self) -> "MailSink":
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def __enter__(self) -> "MailSink":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
