"""One HTTP POST to a webhook URL, the way the SSRF rule wants it: the URL
checked (targets), the host resolved once and checked (servers.netguard),
the connection made to exactly the checked addresses, TLS verified against
the host name, redirects not followed (a 3xx is a failed attempt), and the
whole exchange, however slowly the receiver talks, within `timeout`
seconds."""

import contextlib
import http.client
import socket
import ssl
import threading
import time
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from servers import netguard
from servers.connections import tls_context
from servers.deadlines import seconds_text
from servers.errors import server_words

from . import targets

READ_MAX = 64 * 1024  # of the response body; the log keeps less


class Failure(Exception):
    """The attempt got no HTTP answer. `str(exc)` is a sentence for the log."""


@dataclass(frozen=True)
class Reply:
    status: int
    body: str


class _PinnedConnection(http.client.HTTPConnection):
    """http.client's connection, connecting only to the checked addresses."""

    def __init__(self, target: targets.Target, addresses: list[netguard.Address], deadline: float) -> None:
        super().__init__(target.host, target.port, timeout=max(deadline - time.monotonic(), 0.1))
        self._addresses, self._deadline, self._tls = addresses, deadline, target.scheme == "https"

    def connect(self) -> None:
        sock = netguard.connect_pinned(self._addresses, lambda: max(self._deadline - time.monotonic(), 0.1))
        if self._tls:
            sock = tls_context(True).wrap_socket(sock, server_hostname=self.host)
        self.sock = sock

    def abort(self) -> None:
        """From the watchdog: a receiver that dribbles its answer is cut off."""
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)


def post(url: str, payload: bytes, headers: dict[str, str], *, timeout: float) -> Reply:
    try:
        target = targets.parse(url)
        addresses = netguard.resolve_checked(target.host, target.port)
    except ValidationError as exc:
        raise Failure(" ".join(exc.messages)) from exc
    except (netguard.HostRefused, netguard.HostUnresolved) as exc:
        raise Failure(str(exc)) from exc
    deadline = time.monotonic() + timeout
    connection = _PinnedConnection(target, addresses, deadline)
    watchdog = threading.Timer(timeout, connection.abort)
    watchdog.start()
    try:
        connection.request("POST", target.path, body=payload, headers=headers)
        response = connection.getresponse()
        body = response.read(READ_MAX)
    except (OSError, http.client.HTTPException) as exc:
        if time.monotonic() >= deadline - 0.05 or isinstance(exc, TimeoutError):
            raise Failure(_("No answer within %(within)s.") % {"within": seconds_text(timeout)}) from exc
        raise Failure(_describe(exc, target.host)) from exc
    finally:
        watchdog.cancel()
        connection.close()
    return Reply(response.status, server_words(body))  # kept in a text column, which holds no NUL


def _describe(exc: BaseException, host: str) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return _("The certificate of %(host)s could not be verified: %(reason)s") % {
            "host": host,
            "reason": exc.verify_message or exc,
        }
    if isinstance(exc, ConnectionRefusedError):
        return _("%(host)s refused the connection.") % {"host": host}
    return _("The connection failed: %(error)s") % {"error": str(exc) or type(exc).__name__}
