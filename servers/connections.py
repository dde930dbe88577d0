"""Connections to a tenant's servers, opened the one way every caller uses
(the dispatcher, the connection test, the bounce reader): the rules again,
the SSRF check, the pinned address, TLS verified against the host name,
then AUTH. The connection test passes its Steps to time and report each
step; the others go through them silently."""

import smtplib
import ssl
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import lru_cache
from typing import Any, Protocol

from django.conf import settings

from . import netguard, rules
from .models import BounceMailbox, Security, SmtpServer


class Steps(Protocol):
    def step(self, name: str) -> AbstractContextManager[Any]: ...

    def remaining(self) -> float: ...


class Quiet:
    """Steps that time nothing: each command gets the same timeout."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout

    @contextmanager
    def step(self, name: str) -> Iterator[Any]:
        yield _Detail()

    def remaining(self) -> float:
        return self.timeout


class _Detail:
    detail = ""


def tls_context(verify: bool) -> ssl.SSLContext:
    return _tls_context(verify, settings.SERVERS_EXTRA_CA_FILE)


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
    with steps.step("Check the settings") as step:
        rules.assert_connectable(record)
        host = netguard.normalize_host(host)
        addresses = netguard.resolve_checked(host, port)
        step.detail = f"{host} → " + ", ".join(sorted({a[1][0] for a in addresses}))
    return host, addresses


def open_smtp(server: SmtpServer, *, timeout: float = 0, steps: Steps | None = None) -> smtplib.SMTP:
    """Connected, greeted, TLS as configured, logged in; closed again if any
    step fails."""
    steps = steps or Quiet(timeout)
    host, port = server.connect_host_port()
    host, addresses = checked_address(steps, server, host, port)
    context = tls_context(server.verify_tls)
    external = server.kind == SmtpServer.Kind.EXTERNAL
    implicit = external and server.security == Security.SSL
    client = None
    try:
        with steps.step("Connect with SSL/TLS" if implicit else "Connect") as step:
            cls = netguard.PinnedSMTP_SSL if implicit else netguard.PinnedSMTP
            client = cls(
                host,
                port,
                addresses=addresses,
                timeout=steps.remaining(),
                context=context,
                local_hostname=settings.SMTP_HELO_NAME,
            )
            code, banner = client.open()
            step.detail = f"{code} {banner.decode(errors='replace')}"[:200]
        with steps.step("EHLO") as step:
            client.sock.settimeout(steps.remaining())
            code, reply = client.ehlo()
            step.detail = f"{code} " + reply.decode(errors="replace").splitlines()[0][:120]
        if external and server.security == Security.STARTTLS:
            with steps.step("STARTTLS"):
                client.sock.settimeout(steps.remaining())
                client.starttls(context=context)
                client.ehlo()
        if server.login:
            with steps.step("Log in (AUTH)") as step:
                client.sock.settimeout(steps.remaining())
                code, reply = client.login(server.login, server.get_password())
                step.detail = f"{code} {reply.decode(errors='replace')}"[:200]
    except BaseException:
        if client is not None:
            client.close()
        raise
    return client
