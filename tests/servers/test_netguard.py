"""The SSRF guard and the pinned SMTP/IMAP connections.

There is no network here: names that need DNS are answered by a fake
getaddrinfo, while numeric spellings (127.1, 0x7f000001, ...) go through the
REAL getaddrinfo, because how glibc reads them is exactly what an attacker
relies on. TLS is tested against real in-process servers with a throwaway CA
whose certificate names "mail.test" only, never 127.0.0.1.
"""

import imaplib
import ipaddress
import socket
import socketserver
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from aiosmtpd.controller import Controller

from servers.netguard import (
    HostRefused,
    HostUnresolved,
    PinnedIMAP4,
    PinnedIMAP4_SSL,
    PinnedSMTP,
    PinnedSMTP_SSL,
    connect_smtp,
    forbidden_reason,
    guard_enabled,
    normalize_host,
    resolve_checked,
    validate_host_for_save,
)
from tests.certs import Certs, make_certs
from tests.helpers import free_port

REAL_GETADDRINFO = socket.getaddrinfo

# Names that would need real DNS; everything else goes to the real resolver.
FAKE_DNS: dict[str, list[str]] = {
    "evil.example": ["10.0.0.1"],
    "mixed.example": ["8.8.8.8", "127.0.0.1"],
    "rebind.example": ["2a00:1450::1", "::ffff:169.254.169.254"],
    "good.example": ["8.8.8.8", "2a00:1450::1"],
    "smtp.yandex.ru": ["77.88.21.158"],
    "mail.test": ["127.0.0.1"],
}


def fake_getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
    if host not in FAKE_DNS:
        return REAL_GETADDRINFO(host, port, family, type, proto, flags)
    infos = []
    for ip in FAKE_DNS[host]:
        if ipaddress.ip_address(ip).version == 4:
            infos.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)))
        else:
            infos.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (ip, port, 0, 0)))
    return infos


@pytest.fixture
def fake_dns(monkeypatch) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)


@pytest.fixture
def no_dns(monkeypatch) -> list[str]:
    """Any lookup from here on fails the connection and is recorded."""
    calls: list[str] = []

    def refuse(host, *args, **kwargs):
        calls.append(host)
        raise OSError(f"unexpected DNS lookup of {host!r}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return calls


@pytest.fixture
def guard_on(settings) -> None:
    settings.DEPLOYMENT_MODE = "saas"
    settings.SERVERS_ALLOW_PRIVATE_HOSTS = False


# --- the SSRF matrix -----------------------------------------------------------

REFUSED: list[tuple[str, str]] = [
    ("localhost", "loopback"),
    ("LOCALHOST.", "loopback"),
    ("foo.localhost", "loopback"),
    ("127.0.0.1", "loopback"),
    (" 127.0.0.1. ", "loopback"),
    ("127.1", "loopback"),
    ("0x7f.0.0.1", "loopback"),
    ("0x7f.1", "loopback"),
    ("0x7f000001", "loopback"),
    ("2130706433", "loopback"),
    ("0177.0.0.1", "loopback"),
    ("017700000001", "loopback"),
    ("127.255.255.254", "loopback"),
    ("0.0.0.0", "unspecified"),
    ("0", "unspecified"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "link-local"),
    ("100.64.0.1", "shared address space"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "broadcast"),
    ("192.0.2.1", "documentation"),
    ("198.18.0.1", "benchmarking"),
    ("[::1]", "loopback"),
    ("::1", "loopback"),
    ("::", "unspecified"),
    ("[::ffff:127.0.0.1]", "loopback"),
    ("::ffff:10.0.0.1", "private"),
    ("::ffff:7f00:1", "loopback"),
    ("::10.0.0.1", "private"),  # IPv4-compatible (deprecated)
    ("fc00::1", "unique-local"),
    ("fd12:3456::1", "unique-local"),
    ("fe80::1", "link-local"),
    ("fec0::1", "site-local"),
    ("ff02::1", "multicast"),
    ("ff0e::1", "multicast"),  # global-scope multicast: Python calls it is_global
    ("2001:db8::1", "documentation"),
    ("2002:7f00:1::1", "loopback"),  # 6to4 of 127.0.0.1
    ("2002:a9fe:a9fe::1", "link-local"),  # 6to4 of 169.254.169.254
    ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "private"),  # Teredo, client 10.0.0.1
    ("64:ff9b::10.0.0.1", "private"),  # NAT64 well-known prefix
    ("64:ff9b::7f00:1", "loopback"),
    ("64:ff9b:1::8.8.8.8", "reserved"),  # local-use NAT64 prefix
    ("evil.example", "private"),
    ("mixed.example", "loopback"),  # one bad address is enough
    ("rebind.example", "link-local"),
]

ALLOWED: list[str] = [
    "8.8.8.8",
    "1.1.1.1",
    "0x08080808",  # odd spellings of public addresses are fine
    "77.88.21.158",
    "2a00:1450:4010:c0e::6c",
    "[2a00:1450:4010:c0e::6c]",
    "::ffff:8.8.8.8",
    "64:ff9b::8.8.8.8",
    "2002:808:808::1",
    "smtp.yandex.ru",
    "good.example",
    "Good.Example.",
]


@pytest.mark.parametrize(("host", "reason"), REFUSED)
def test_refused_spellings(guard_on, fake_dns, host: str, reason: str) -> None:
    with pytest.raises(HostRefused) as caught:
        resolve_checked(host, 25)
    assert caught.value.reason == reason
    assert "hosted accounts may not use" in str(caught.value)


@pytest.mark.parametrize("host", ALLOWED)
def test_allowed_spellings(guard_on, fake_dns, host: str) -> None:
    addresses = resolve_checked(host, 25)
    assert addresses
    for family, sockaddr in addresses:
        assert family in (socket.AF_INET, socket.AF_INET6)
        assert sockaddr[1] == 25
        assert forbidden_reason(ipaddress.ip_address(sockaddr[0])) is None


def test_matrix_is_big_enough() -> None:
    assert len(REFUSED) + len(ALLOWED) >= 30


@pytest.mark.parametrize("host", ["0x7f000001", "2130706433", "017700000001", "0x7f.1"])
def test_numeric_spellings_are_judged_by_the_real_resolver(guard_on, monkeypatch, host: str) -> None:
    seen: list[str] = []

    def spy(name, *args, **kwargs):
        seen.append(name)
        return REAL_GETADDRINFO(name, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", spy)
    with pytest.raises(HostRefused) as caught:
        resolve_checked(host, 25)
    assert seen == [host]  # passed through unchanged, resolved once
    assert caught.value.address == "127.0.0.1"


def test_refusal_message_names_the_address(guard_on) -> None:
    with pytest.raises(HostRefused) as caught:
        resolve_checked("10.0.0.5", 25)
    assert str(caught.value) == (
        "This host points to a private network address (10.0.0.5), which hosted accounts may not use."
    )


def test_mixed_answer_reports_the_bad_address(guard_on, fake_dns) -> None:
    with pytest.raises(HostRefused) as caught:
        resolve_checked("mixed.example", 587)
    assert caught.value.address == "127.0.0.1"


def test_allowed_name_returns_every_address_in_order(guard_on, fake_dns) -> None:
    assert resolve_checked("good.example", 587) == [
        (socket.AF_INET, ("8.8.8.8", 587)),
        (socket.AF_INET6, ("2a00:1450::1", 587, 0, 0)),
    ]


@pytest.mark.parametrize(
    "host",
    [
        *("", "   ", "[]", ".", "a b.example", "mail.example/x", "user@mail.example", "fe80::1%eth0"),
        "mail\x00.example",
        # A label empty or past 63 characters: no lookup can be made (IDNA).
        *("smtp..example", "a" * 64 + ".example", ".smtp.example"),
    ],
)
@pytest.mark.parametrize("mode", ["saas", "self_hosted"])
def test_malformed_hosts_are_refused_in_any_mode(settings, no_dns, host: str, mode: str) -> None:
    settings.DEPLOYMENT_MODE = mode
    settings.SERVERS_ALLOW_PRIVATE_HOSTS = False
    with pytest.raises(HostRefused):
        resolve_checked(host, 25)
    assert validate_host_for_save(host)
    assert no_dns == []


def test_unresolvable_name(guard_on, no_dns) -> None:
    with pytest.raises(HostUnresolved) as caught:
        resolve_checked("nowhere.example", 25)
    assert isinstance(caught.value, OSError)
    assert str(caught.value) == "The name nowhere.example could not be found (DNS)."


@pytest.mark.parametrize(
    ("ip", "reason"),
    [
        ("8.8.8.8", None),
        ("2a00:1450:4010:c0e::6c", None),
        ("192.0.0.9", "reserved"),
        ("4000::1", "reserved"),  # unallocated IPv6: Python 3.11 calls it is_global
        ("100::1", "reserved"),
        ("::8.8.8.8", "reserved"),  # IPv4-compatible is deprecated even when public
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "documentation"),  # Teredo, client 192.0.2.45
    ],
)
def test_forbidden_reason_edges(ip: str, reason: str | None) -> None:
    assert forbidden_reason(ipaddress.ip_address(ip)) == reason


# --- switching the guard off ------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "allow_private", "enabled"),
    [("saas", False, True), ("saas", True, False), ("self_hosted", False, False), ("self_hosted", True, False)],
)
def test_guard_enabled(settings, mode: str, allow_private: bool, enabled: bool) -> None:
    settings.DEPLOYMENT_MODE = mode
    settings.SERVERS_ALLOW_PRIVATE_HOSTS = allow_private
    assert guard_enabled() is enabled


@pytest.mark.parametrize(("mode", "allow_private"), [("self_hosted", False), ("saas", True)])
def test_guard_off_allows_private_hosts(settings, fake_dns, mode: str, allow_private: bool) -> None:
    settings.DEPLOYMENT_MODE = mode
    settings.SERVERS_ALLOW_PRIVATE_HOSTS = allow_private
    assert resolve_checked("127.1", 25) == [(socket.AF_INET, ("127.0.0.1", 25))]
    assert resolve_checked("evil.example", 25) == [(socket.AF_INET, ("10.0.0.1", 25))]
    localhost = resolve_checked("localhost", 25)
    assert localhost
    assert all(ipaddress.ip_address(sockaddr[0]).is_loopback for _family, sockaddr in localhost)
    assert validate_host_for_save("10.0.0.1") is None


# --- validate_host_for_save --------------------------------------------------------


def test_validate_refuses_private_address(guard_on) -> None:
    assert validate_host_for_save("10.0.0.1") == (
        "This host points to a private network address (10.0.0.1), which hosted accounts may not use."
    )


def test_validate_accepts_public_address(guard_on) -> None:
    assert validate_host_for_save("8.8.8.8") is None


def test_validate_accepts_name_that_does_not_resolve_now(guard_on, monkeypatch) -> None:
    def gaierror(*args, **kwargs):
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", gaierror)
    assert validate_host_for_save("smtp.tenant.example") is None


# --- a throwaway PKI -------------------------------------------------------------


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> Certs:
    """A CA and a certificate for the DNS name mail.test only (no IP SAN)."""
    return make_certs(tmp_path_factory.mktemp("pki"), dns=("mail.test",), ips=())


def pinned(port: int) -> list[tuple[int, tuple]]:
    return [(socket.AF_INET, ("127.0.0.1", port))]


# --- SMTP against aiosmtpd ----------------------------------------------------------


class RecordingHandler:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.messages.append(envelope.content)
        return "250 OK"


@dataclass
class SMTPServer:
    port: int
    handler: RecordingHandler


def _run_smtp(pki: Certs, *, implicit: bool) -> Iterator[SMTPServer]:
    handler = RecordingHandler()
    port = free_port()  # aiosmtpd's Controller cannot take port 0
    tls = {"ssl_context": pki.server_context()} if implicit else {"tls_context": pki.server_context()}
    controller = Controller(
        handler, hostname="127.0.0.1", port=port, server_hostname="mail.test", require_starttls=False, **tls
    )
    controller.start()
    try:
        yield SMTPServer(port, handler)
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def smtp_starttls(pki) -> Iterator[SMTPServer]:
    yield from _run_smtp(pki, implicit=False)


@pytest.fixture(scope="module")
def smtp_implicit(pki) -> Iterator[SMTPServer]:
    yield from _run_smtp(pki, implicit=True)


def test_pinned_smtp_does_not_connect_in_constructor(no_dns) -> None:
    smtp = PinnedSMTP("mail.test", 25, addresses=pinned(25), timeout=5, local_hostname="client.test")
    assert smtp.sock is None
    assert no_dns == []


def test_pinned_smtp_refuses_a_port_mismatch() -> None:
    with pytest.raises(ValueError, match="port"):
        PinnedSMTP("mail.test", 587, addresses=pinned(25), timeout=5, local_hostname="client.test")


def test_smtp_starttls_verifies_the_host_name_not_the_ip(pki, smtp_starttls, no_dns) -> None:
    port = smtp_starttls.port
    ctx = pki.client_context()
    smtp = PinnedSMTP("mail.test", port, addresses=pinned(port), timeout=5, context=ctx, local_hostname="client.test")
    assert smtp.open()[0] == 220
    smtp.starttls(context=ctx)
    smtp.ehlo()
    smtp.sendmail("a@client.test", ["b@mail.test"], b"Subject: pinned\r\n\r\nhello\r\n")
    smtp.quit()
    assert smtp_starttls.handler.messages[-1].startswith(b"Subject: pinned")
    assert no_dns == []  # the name was never looked up again


def test_smtp_starttls_with_another_host_name_fails_verification(pki, smtp_starttls) -> None:
    port = smtp_starttls.port
    ctx = pki.client_context()
    smtp = PinnedSMTP("other.test", port, addresses=pinned(port), timeout=5, context=ctx, local_hostname="client.test")
    smtp.open()
    with pytest.raises(ssl.SSLCertVerificationError):
        smtp.starttls(context=ctx)
    smtp.close()


def test_smtp_starttls_defaults_to_a_verifying_context(smtp_starttls) -> None:
    # smtplib's own default would accept any certificate; ours must not.
    port = smtp_starttls.port
    smtp = PinnedSMTP("mail.test", port, addresses=pinned(port), timeout=5, local_hostname="client.test")
    smtp.open()
    with pytest.raises(ssl.SSLCertVerificationError):
        smtp.starttls()
    smtp.close()


def test_smtp_implicit_tls_verifies_the_host_name(pki, smtp_implicit, no_dns) -> None:
    port = smtp_implicit.port
    ctx = pki.client_context()
    smtp = PinnedSMTP_SSL(
        "mail.test", port, addresses=pinned(port), timeout=5, context=ctx, local_hostname="client.test"
    )
    assert smtp.open()[0] == 220
    assert smtp.noop()[0] == 250
    smtp.quit()
    assert no_dns == []


def test_smtp_implicit_tls_with_another_host_name_fails_verification(pki, smtp_implicit) -> None:
    port = smtp_implicit.port
    smtp = PinnedSMTP_SSL(
        "other.test", port, addresses=pinned(port), timeout=5, context=pki.client_context(), local_hostname="c.test"
    )
    with pytest.raises(ssl.SSLCertVerificationError):
        smtp.open()


def test_pinned_smtp_tries_addresses_in_order(pki, smtp_implicit) -> None:
    port = smtp_implicit.port
    # The server listens on 127.0.0.1 only, so 127.0.0.2 refuses the connection.
    dead_then_alive = [(socket.AF_INET, ("127.0.0.2", port)), *pinned(port)]
    ctx = pki.client_context()
    only_dead = PinnedSMTP_SSL("mail.test", port, addresses=dead_then_alive[:1], timeout=5, context=ctx)
    with pytest.raises(ConnectionRefusedError):
        only_dead.open()
    smtp = PinnedSMTP_SSL("mail.test", port, addresses=dead_then_alive, timeout=5, context=ctx)
    assert smtp.open()[0] == 220
    assert smtp.sock.getpeername() == ("127.0.0.1", port)
    smtp.quit()


def test_connect_smtp_resolves_once_then_pins(settings, pki, smtp_starttls, monkeypatch) -> None:
    settings.DEPLOYMENT_MODE = "self_hosted"
    settings.SERVERS_ALLOW_PRIVATE_HOSTS = False
    lookups: list[str] = []

    def counting(host, *args, **kwargs):
        lookups.append(host)
        return fake_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", counting)
    ctx = pki.client_context()
    smtp = connect_smtp(
        "Mail.Test.", smtp_starttls.port, "starttls", timeout=5, context=ctx, local_hostname="client.test"
    )
    smtp.starttls(context=ctx)  # verified against "mail.test", the normalised name
    smtp.quit()
    assert lookups == ["mail.test"]


def test_connect_smtp_refuses_before_connecting(guard_on, fake_dns, smtp_starttls) -> None:
    with pytest.raises(HostRefused):
        connect_smtp("mail.test", smtp_starttls.port, "starttls", timeout=5, context=None)


# --- IMAP against a tiny fake server ------------------------------------------------


class FakeIMAPHandler(socketserver.BaseRequestHandler):
    """Greeting, CAPABILITY, STARTTLS, NOOP and LOGOUT: just enough for imaplib."""

    server: "FakeIMAPServer"

    def handle(self) -> None:
        sock = self.request
        if self.server.implicit:
            sock = self.server.tls.wrap_socket(sock, server_side=True)
        sock.sendall(b"* OK ready\r\n")
        reader = sock.makefile("rb")
        while line := reader.readline():
            tag, _, command = line.decode().strip().partition(" ")
            command = command.upper()
            if command == "CAPABILITY":
                starttls = "" if self.server.implicit else " STARTTLS"
                sock.sendall(f"* CAPABILITY IMAP4rev1{starttls}\r\n{tag} OK done\r\n".encode())
            elif command == "STARTTLS":
                sock.sendall(f"{tag} OK begin TLS\r\n".encode())
                reader.close()
                sock = self.server.tls.wrap_socket(sock, server_side=True)
                reader = sock.makefile("rb")
            elif command == "LOGOUT":
                sock.sendall(f"* BYE bye\r\n{tag} OK done\r\n".encode())
                return
            else:
                sock.sendall(f"{tag} OK done\r\n".encode())


class FakeIMAPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True

    def __init__(self, tls: ssl.SSLContext, *, implicit: bool) -> None:
        super().__init__(("127.0.0.1", 0), FakeIMAPHandler)
        self.tls = tls
        self.implicit = implicit

    def handle_error(self, request, client_address) -> None:
        pass  # failed handshakes are what some tests expect


def _serve_imap(pki: Certs, *, implicit: bool) -> Iterator[FakeIMAPServer]:
    server = FakeIMAPServer(pki.server_context(), implicit=implicit)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module", params=[False, True], ids=["starttls", "implicit-tls"])
def imap_server(request, pki) -> Iterator[FakeIMAPServer]:
    yield from _serve_imap(pki, implicit=request.param)


@pytest.fixture(scope="module")
def plain_imap_server(pki) -> Iterator[FakeIMAPServer]:
    yield from _serve_imap(pki, implicit=False)


def _imap(server: FakeIMAPServer, host: str, ctx: ssl.SSLContext) -> imaplib.IMAP4:
    port = server.server_address[1]
    cls = PinnedIMAP4_SSL if server.implicit else PinnedIMAP4
    imap = cls(host, port, addresses=pinned(port), timeout=5, ssl_context=ctx)
    if not server.implicit:
        imap.starttls()  # uses the constructor's context and server_hostname=imap.host
    return imap


def test_pinned_imap_connects_without_lookup_and_verifies_host_name(pki, imap_server, no_dns) -> None:
    imap = _imap(imap_server, "mail.test", pki.client_context())
    assert imap.host == "mail.test"
    assert isinstance(imap.sock, ssl.SSLSocket)
    assert imap.noop()[0] == "OK"
    assert imap.logout()[0] == "BYE"
    assert no_dns == []


def test_pinned_imap_with_another_host_name_fails_verification(pki, imap_server) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        _imap(imap_server, "other.test", pki.client_context())


def test_pinned_imap_plain_greeting(plain_imap_server, no_dns) -> None:
    port = plain_imap_server.server_address[1]
    imap = PinnedIMAP4("imap.test", port, addresses=pinned(port), timeout=5)
    assert imap.welcome == b"* OK ready"
    assert "STARTTLS" in imap.capabilities
    assert imap.logout()[0] == "BYE"
    assert no_dns == []


def test_pinned_imap_cannot_be_reopened_elsewhere(plain_imap_server) -> None:
    port = plain_imap_server.server_address[1]
    imap = PinnedIMAP4("imap.test", port, addresses=pinned(port), timeout=5)
    with pytest.raises(ValueError, match="pinned"):
        imap.open("evil.example", port)
    imap.logout()


@pytest.mark.django_db
@pytest.mark.parametrize("mode", ["saas", "self_hosted"])
def test_a_host_no_lookup_can_use_is_refused_at_save_in_any_mode(alice, settings, no_dns, mode: str) -> None:
    """ "smtp..yandex.ru" (a dot typed twice) was saved on a self-hosted
    installation, then every test and letter failed: the name cannot even
    be looked up. Now the form says so, and nothing is stored."""
    from django.urls import reverse

    from servers.models import SmtpServer
    from tests.servers.test_rules import FORM

    settings.DEPLOYMENT_MODE = mode
    settings.SERVERS_ALLOW_PRIVATE_HOSTS = False
    response = alice.client.post(reverse("servers:add"), {**FORM, "kind": "external", "host": "smtp..yandex.ru"})
    assert response.status_code == 400
    assert response.context["form"].errors["host"] == ["'smtp..yandex.ru' is not a valid host name."]
    assert not SmtpServer.objects.exists() and no_dns == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    "host", ["smtp.gmail.com:25", "8.8.8.8:25", "[2001:4860:4860::8888]:25", "smtp.yandex.ru:465", "mail.example:"]
)
@pytest.mark.parametrize("mode", ["saas", "self_hosted"])
def test_a_port_after_the_host_is_sent_to_the_port_field(alice, settings, no_dns, host: str, mode: str) -> None:
    """'smtp.gmail.com:25' was saved, then every test and letter failed with
    'could not be found (DNS)', a public address too; now the form says
    where the port goes, and nothing is stored."""
    from django.urls import reverse

    from servers.models import SmtpServer
    from tests.servers.test_rules import FORM

    settings.DEPLOYMENT_MODE = mode
    settings.SERVERS_ALLOW_PRIVATE_HOSTS = False
    response = alice.client.post(reverse("servers:add"), {**FORM, "kind": "external", "host": host})
    assert response.status_code == 400
    assert "Type the port in the Port field" in " ".join(response.context["form"].errors.get("host", [])), (
        response.context["form"].errors
    )
    assert not SmtpServer.objects.exists() and no_dns == []
    for ipv6 in ("2a00:1450:4010:c0e::6c", "[2a00:1450:4010:c0e::6c]"):
        assert normalize_host(ipv6) == "2a00:1450:4010:c0e::6c"
