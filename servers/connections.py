"""Connections to a tenant's servers, opened the one way every caller uses
(the dispatcher, the connection test, the bounce reader): the rules again,
the SSRF check, the pinned address, TLS verified against the host name,
then AUTH. The connection test passes its Steps to time and report each
step; the others go through them silently."""

import smtplib
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import lru_cache
from typing import Any, Protocol

from django.conf import settings
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from . import netguard, rules
from .models import BounceMailbox, Security, SmtpServer
from .words import Words

PinnedSMTPClient = netguard.PinnedSMTP | netguard.PinnedSMTP_SSL


class Steps(Protocol):
    def step(self, name: str | Promise | Words) -> AbstractContextManager[Any]: ...

    def remaining(self) -> float: ...


class Quiet:
    """Steps that time nothing, within `timeout` seconds from now in all."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout

    @contextmanager
    def step(self, name: str | Promise | Words) -> Iterator[Any]:
        yield _Detail()

    def remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no time left of {self.timeout:g} seconds")
        return left


class _Detail:
    detail = ""


# A dispatch worker's first conversations (hundreds of threads) all ask for
# the context at once: under the lock one builds it and the others wait for
# it, where the cache alone let every thread that asked before the first
# had finished build its own (measured: about twenty of them, 20 ms of CPU
# each, in a box's first second).
_BUILDING = threading.Lock()


def tls_context(verify: bool) -> ssl.SSLContext:
    with _BUILDING:
        return _tls_context(verify, settings.SERVERS_EXTRA_CA_FILE)


def prepare() -> None:
    """Build the verifying context now (a worker starting, config.celery)
    rather than in its first conversations."""
    tls_context(True)


@lru_cache(maxsize=8)
def _tls_context(verify: bool, extra_ca_file: str) -> ssl.SSLContext:
    """Loading the system's CA store takes ~20 ms: once per process is
    enough (contexts are safe to share between connections)."""
    context = ssl.create_default_context()
    if extra_ca_file:
        context.load_verify_locations(cafile=extra_ca_file)
    if not verify:  # self-hosted only, shown with a warning
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def checked_address(steps: Steps, record: SmtpServer | BounceMailbox, host: str, port: int) -> tuple[str, list]:
    """The normalised host and its checked addresses; a record edited behind
    the forms' back, a malformed or an internal host fails this first step."""
    with steps.step(_("Check the settings")) as step:
        rules.assert_connectable(record)
        host = netguard.normalize_host(host)
        addresses = netguard.resolve_checked(host, port)
        step.detail = f"{host} → " + ", ".join(sorted({a[1][0] for a in addresses}))
    return host, addresses


def open_smtp(server: SmtpServer, *, timeout: float = 0, steps: Steps | None = None) -> PinnedSMTPClient:
    """Connected, greeted, TLS as configured, logged in; closed again if any
    step fails.

    The whole opening (connect, TLS, banner, EHLO, STARTTLS, EHLO, AUTH)
    finishes within `timeout` seconds in all (or the time the steps have
    left), however slowly the server talks: past it, DeadlineExceeded (a
    TimeoutError). `timeout` also bounds each single read. The client comes
    back with no deadline: the caller gives each exchange its own with
    `client.deadline_in(seconds)` (see netguard.PinnedSMTP)."""
    if steps is None and timeout <= 0:
        raise ValueError("open_smtp needs a timeout or steps")
    steps = steps or Quiet(timeout)
    host, port = server.connect_host_port()
    host, addresses = checked_address(steps, server, host, port)
    context = tls_context(server.verify_tls)
    external = server.kind == SmtpServer.Kind.EXTERNAL
    implicit = external and server.security == Security.SSL
    client = None
    try:
        with steps.step(_("Connect with SSL/TLS") if implicit else _("Connect")) as step:
            cls = netguard.PinnedSMTP_SSL if implicit else netguard.PinnedSMTP
            left = steps.remaining()
            client = cls(
                host, port, addresses=addresses, timeout=left, context=context, local_hostname=settings.SMTP_HELO_NAME
            )
            client.deadline_in(left)
            code, banner = client.open()
            step.detail = f"{code} {banner.decode(errors='replace')}"[:200]
        with steps.step("EHLO") as step:
            code, reply = _greet(client)
            step.detail = f"{code} " + reply.decode(errors="replace").splitlines()[0][:120]
        if external and server.security == Security.STARTTLS:
            with steps.step("STARTTLS"):
                client.starttls(context=context)
                client.ehlo()
        if server.login:
            with steps.step(_("Log in (AUTH)")) as step:
                code, reply = client.login(server.login, server.get_password())
                step.detail = f"{code} {reply.decode(errors='replace')}"[:200]
    except BaseException:
        if client is not None:
            client.close()
        raise
    client.clear_deadline()
    return client


def _greet(client: PinnedSMTPClient) -> tuple[int, bytes]:
    """EHLO, or HELO from a server that does not know it (RFC 5321 §4.1.1.1;
    smtplib's ehlo_or_helo_if_needed does the same). Such a server offers no
    extension: STARTTLS and AUTH asked of it are refused as not offered.
    A 421 closes the connection (Gmail's "421 4.7.0 Try again later, closing
    connection. (EHLO)"): its words, not the hang-up a HELO would meet."""
    code, reply = client.ehlo()
    if code == 250:
        return code, reply
    if code == 421:
        client.close()
        raise smtplib.SMTPHeloError(code, reply)
    code, reply = client.helo()
    if not 200 <= code < 300:
        raise smtplib.SMTPHeloError(code, reply)
    return code, reply
