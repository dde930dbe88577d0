"""Real SMTP servers for tests (aiosmtpd in a thread) that behave like the
providers of DOMAIN.md §7: with AUTH, with TLS, refusing, or silent."""

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

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
