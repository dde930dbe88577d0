"""Keep tenants from using the platform to reach its own network (SSRF).

Tenants type in the SMTP and IMAP hosts we connect to. Without a guard, a
tenant could point a "server" at 127.0.0.1:6379, at the cloud metadata
service 169.254.169.254 or at anything else on our private network, and read
the replies in our error messages. So, in SaaS mode:

1. `resolve_checked` resolves the name exactly once and refuses it when ANY
   resulting address is not public unicast (a name with one public and one
   private address would otherwise win half the time).
2. The `Pinned*` classes connect to exactly those checked addresses and never
   resolve the name again; a second lookup could give a different answer
   (DNS rebinding). TLS still verifies the certificate against the host NAME
   the tenant typed, so pinning the IP costs no security.

Typical use::

    smtp = connect_smtp(host, port, "starttls", timeout=20, context=ssl_ctx)
    smtp.starttls(context=ssl_ctx)  # the caller times this step itself

    imap = connect_imap(host, port, "ssl", timeout=20, context=ssl_ctx)

Self-hosted installations (or SERVERS_ALLOW_PRIVATE_HOSTS=True) skip the
address checks: there, a mail server on the LAN is the normal case. The
connection classes still pin, so behaviour is the same in both modes.
"""

from __future__ import annotations

import base64
import hmac
import imaplib
import ipaddress
import poplib
import re
import smtplib
import socket
import ssl
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from django.conf import settings
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from .deadlines import Deadline, DeadlineExceeded

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# (family, sockaddr) as returned by socket.getaddrinfo, ready for connect().
Address = tuple[int, tuple[Any, ...]]

# Checked in order; the first match names the reason. Explicit tables rather
# than is_private/is_global alone, because the stdlib's answers change between
# Python versions (3.11 calls fec0::1, ::10.0.0.1 and 224.0.0.1 "global").
_V4_FORBIDDEN: tuple[tuple[ipaddress.IPv4Network, str], ...] = tuple(
    (ipaddress.IPv4Network(net), reason)
    for net, reason in (
        ("0.0.0.0/32", "unspecified"),  # Linux connects 0.0.0.0 to localhost
        ("0.0.0.0/8", "this-network"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),  # includes cloud metadata services
        ("10.0.0.0/8", "private"),
        ("172.16.0.0/12", "private"),
        ("192.168.0.0/16", "private"),
        ("100.64.0.0/10", gettext_lazy("shared address space")),
        ("192.0.2.0/24", "documentation"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("198.18.0.0/15", "benchmarking"),
        ("224.0.0.0/4", "multicast"),
        ("255.255.255.255/32", "broadcast"),
        ("240.0.0.0/4", "reserved"),
        ("192.0.0.0/24", "reserved"),  # IETF protocol assignments
        ("192.88.99.0/24", "reserved"),  # deprecated 6to4 relay anycast
    )
)

_V6_FORBIDDEN: tuple[tuple[ipaddress.IPv6Network, str], ...] = tuple(
    (ipaddress.IPv6Network(net), reason)
    for net, reason in (
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("ff00::/8", "multicast"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),
        ("fc00::/7", "unique-local"),
        ("2001:db8::/32", "documentation"),
        ("3fff::/20", "documentation"),
        ("100::/64", "reserved"),  # discard-only
        ("2001::/23", "reserved"),  # IETF protocol assignments, Teredo
    )
)

# Only this block is allocated for global unicast; the rest of the IPv6 space
# is reserved, unallocated or special (::/8 compat, 64:ff9b:1::/48 local NAT64).
_V6_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_V6_COMPAT = ipaddress.IPv6Network("::/96")
_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")

_REASON_PHRASES = {
    "unspecified": gettext_lazy("an unspecified address"),
    "this-network": gettext_lazy("a 'this network' address"),
    "loopback": gettext_lazy("a loopback address (this machine)"),
    "link-local": gettext_lazy("a link-local address"),
    "private": gettext_lazy("a private network address"),
    "shared address space": gettext_lazy("a carrier-grade NAT (shared address space) address"),
    "documentation": gettext_lazy("a documentation-only address"),
    "benchmarking": gettext_lazy("a benchmarking-only address"),
    "multicast": gettext_lazy("a multicast address"),
    "broadcast": gettext_lazy("a broadcast address"),
    "site-local": gettext_lazy("a site-local address"),
    "unique-local": gettext_lazy("a private network address (IPv6 unique-local)"),
    "reserved": gettext_lazy("a reserved address"),
}

_FORBIDDEN_HOST_CHARS = frozenset("/@%\\")


class HostRefused(Exception):
    """The host may not be used. `str(exc)` is a sentence to show the user."""

    def __init__(self, message: str, *, host: str = "", address: str | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.host = host
        self.address = address
        self.reason = reason


class ImapLoginUnavailable(imaplib.IMAP4.error):
    """The IMAP server says LOGINDISABLED and offers no login by password
    that Postroute speaks: on an unencrypted connection, most often until
    STARTTLS."""

    def __init__(self, *, encrypted: bool, mechanisms: list[str]) -> None:
        super().__init__("LOGINDISABLED", *mechanisms)  # for the logs; diagnose() words it for the tenant
        self.encrypted, self.mechanisms = encrypted, mechanisms


class HostUnresolved(OSError):
    """DNS gave no address for the name. `str(exc)` is a sentence for the user."""

    def __init__(self, host: str) -> None:
        super().__init__(_("The name %(host)s could not be found (DNS).") % {"host": host})
        self.host = host


# --- address classification -------------------------------------------------


def forbidden_reason(ip: IPAddress) -> str | None:
    """None if `ip` is public unicast, else a short reason such as "private"."""
    if isinstance(ip, ipaddress.IPv4Address):
        return _v4_reason(ip)
    return _v6_reason(ip)


def _v4_reason(ip: ipaddress.IPv4Address) -> str | None:
    for network, reason in _V4_FORBIDDEN:
        if ip in network:
            return reason
    # Catch-all for special ranges the table misses (and future stdlib fixes).
    return None if ip.is_global else "reserved"


def _v6_reason(ip: ipaddress.IPv6Address) -> str | None:
    # These two are plain IPv4 on the wire (dual-stack socket / NAT64
    # gateway), so the embedded address alone decides.
    if ip.ipv4_mapped is not None:
        return _v4_reason(ip.ipv4_mapped)
    if ip in _NAT64_WELL_KNOWN:
        return _v4_reason(_low_v4(ip))
    embedded = _embedded_reason(ip)
    if embedded is not None:
        return embedded
    for network, reason in _V6_FORBIDDEN:
        if ip in network:
            return reason
    if ip not in _V6_GLOBAL_UNICAST or not ip.is_global:
        return "reserved"
    return None


def _embedded_reason(ip: ipaddress.IPv6Address) -> str | None:
    """The reason of an IPv4 address tunnelled inside `ip`, if forbidden.

    6to4, Teredo and IPv4-compatible addresses can be routed by a relay to
    the IPv4 address inside them, so a private one inside is refused with its
    own, more telling reason. A public one inside does not make them allowed:
    the IPv6 tables below still apply.
    """
    candidates: list[ipaddress.IPv4Address] = []
    if ip.sixtofour is not None:
        candidates.append(ip.sixtofour)
    if ip.teredo is not None:
        candidates.extend(ip.teredo)  # (server, client), client de-obfuscated
    if ip in _V6_COMPAT and int(ip) > 1:  # not :: or ::1
        candidates.append(_low_v4(ip))
    for v4 in candidates:
        reason = _v4_reason(v4)
        if reason is not None:
            return reason
    return None


def _low_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)


# --- settings ---------------------------------------------------------------


def guard_enabled() -> bool:
    """The guard protects the shared SaaS network; self-hosters own theirs."""
    return settings.DEPLOYMENT_MODE == "saas" and not getattr(settings, "SERVERS_ALLOW_PRIVATE_HOSTS", False)


# --- names ------------------------------------------------------------------


def normalize_host(host: str) -> str:
    """The canonical spelling of `host`, or HostRefused when it is malformed.

    '/', '@' and '%' are refused because they smuggle URL parts or IPv6 zone
    ids (which pick an interface) past naive parsers.
    """
    name = host.strip()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if name.endswith("."):
        name = name[:-1]
    name = name.lower()
    if not name:
        raise HostRefused(_("Enter a host name."), host=host)
    if any(ch.isspace() or not ch.isprintable() or ch in _FORBIDDEN_HOST_CHARS for ch in name):
        raise HostRefused(
            _("The host name %(name)s contains characters that are not allowed.") % {"name": f"{name!r}"}, host=host
        )
    try:
        # What getaddrinfo does to a name first: a label empty or past 63
        # characters ("smtp..yandex.ru") fails here, before any lookup, and
        # was saved where the guard is off, then failed every connection.
        name.encode("idna")
    except UnicodeError:
        raise HostRefused(_("%(name)s is not a valid host name.") % {"name": f"{name!r}"}, host=host) from None
    if ":" in name and not _is_ipv6(name):
        # "smtp.gmail.com:587", "[2001:db8::1]:25": no resolver reads a port
        # there, so it was saved and then "not found (DNS)" at every connection.
        raise HostRefused(
            _("Type the port in the Port field, not after the server name: %(name)s.")
            % {"name": name.rpartition(":")[0].strip("[]")},
            host=host,
        )
    return name


def _is_ipv6(name: str) -> bool:
    try:
        ipaddress.IPv6Address(name)
    except ValueError:
        return False
    return True


def _is_localhost_name(name: str) -> bool:
    # RFC 6761: every *.localhost name is loopback, whatever DNS says.
    return name == "localhost" or name.endswith(".localhost")


def _refusal(host: str, address: str, reason: str) -> HostRefused:
    phrase = _REASON_PHRASES.get(reason, f"a {reason} address")
    return HostRefused(
        _("This host points to %(phrase)s (%(address)s), which hosted accounts may not use.")
        % {"phrase": phrase, "address": address},
        host=host,
        address=address,
        reason=reason,
    )


def _lookup(name: str, port: int) -> list[Address]:
    """One getaddrinfo call, de-duplicated, order kept, IP families only."""
    try:
        infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
    except UnicodeError as exc:  # IDNA encoding failed: not a DNS problem
        raise HostRefused(_("%(name)s is not a valid host name.") % {"name": f"{name!r}"}, host=name) from exc
    except OSError as exc:
        raise HostUnresolved(name) from exc
    addresses: list[Address] = []
    for family, _type, _proto, _canon, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6) and (family, sockaddr) not in addresses:
            addresses.append((family, sockaddr))
    if not addresses:
        raise HostUnresolved(name)
    return addresses


def _check_addresses(name: str, addresses: Iterable[Address]) -> None:
    for _family, sockaddr in addresses:
        ip = ipaddress.ip_address(sockaddr[0])
        reason = forbidden_reason(ip)
        if reason is not None:
            raise _refusal(name, str(ip), reason)


def resolve_checked(host: str, port: int) -> list[Address]:
    """Resolve `host` once; return the (family, sockaddr) list to connect to.

    Raises HostRefused when the name is malformed, or (guard enabled) when it
    is a localhost name or ANY of its addresses is forbidden. Raises
    HostUnresolved when DNS has no answer. Numeric spellings such as 127.1,
    0x7f000001 or 2130706433 are resolved by getaddrinfo like any name, so
    they are judged by the address they really mean.
    """
    name = normalize_host(host)
    guarded = guard_enabled()
    if guarded and _is_localhost_name(name):
        raise HostRefused(
            _("The name %(name)s means this machine, which hosted accounts may not use.") % {"name": name},
            host=host,
            reason="loopback",
        )
    addresses = _lookup(name, port)
    if guarded:
        _check_addresses(name, addresses)
    return addresses


def validate_host_for_save(host: str) -> str | None:
    """An error message for a host that must not be saved, else None.

    A name that does not resolve right now is accepted: saving must work
    offline, and resolve_checked catches it at connect time anyway.
    Malformed names are reported whether or not the guard is on, because
    they could never be connected to.
    """
    try:
        if not guard_enabled():
            normalize_host(host)
            return None
        resolve_checked(host, 0)
    except HostRefused as exc:
        return str(exc)
    except OSError:  # HostUnresolved, or any other resolver failure
        return None
    return None


# --- pinned connections ------------------------------------------------------


def _connect_first(
    addresses: Sequence[Address], timeout: float | Callable[[], float | None] | None, source_address: Any = None
) -> socket.socket:
    """A TCP socket connected to the first address that accepts, in order.

    Like socket.create_connection, but with the addresses given: no lookup.
    `timeout` may be a function, asked before each attempt (a deadline
    leaves less time for the next address).
    """
    if timeout is not None and not callable(timeout) and not timeout:
        raise ValueError("Non-blocking socket (timeout=0) is not supported")
    errors: list[OSError] = []
    for family, sockaddr in addresses:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout() if callable(timeout) else timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            errors.append(exc)
            continue
        return sock
    if errors:
        raise errors[0]
    raise OSError("No address to connect to.")


def connect_pinned(addresses: Sequence[Address], timeout: float | Callable[[], float | None]) -> socket.socket:
    """A TCP socket to the first of `addresses` (from resolve_checked) that
    accepts: no lookup, so the connection goes where the check looked. For
    clients other than the mail ones (the webhooks' HTTP POST)."""
    return _connect_first(addresses, timeout)


def _pinned(addresses: Sequence[Address], port: int) -> list[Address]:
    """Checks the pinned list once, so a wrong port is a bug found early."""
    pinned = list(addresses)
    if not pinned:
        raise ValueError("addresses must not be empty")
    if any(sockaddr[1] != port for _family, sockaddr in pinned):
        raise ValueError(f"every pinned address must use port {port}")
    return pinned


def _verifying_context(context: ssl.SSLContext | None) -> ssl.SSLContext:
    # smtplib and imaplib default to an UNVERIFIED context; we never do.
    return context if context is not None else ssl.create_default_context()


# The longest reply read before the connection is closed. smtplib keeps
# every line of a reply until its last: a server sending "250-" lines as
# fast as the network goes filled hundreds of MB per conversation before
# the deadline. The longest real replies (an EHLO, a multi-line banner)
# are a few KB.
MAX_REPLY = 64 * 1024


class _PinnedSMTPMixin(Deadline):
    """connect()/open(), and every read and write under the deadline, for
    the two SMTP classes; they set the attributes."""

    _host: str
    _pinned_port: int
    _addresses: list[Address]
    source_address: Any
    sock: Any
    debuglevel: int
    command_encoding: str
    user: str
    password: str
    _auth_challenge_count: int

    def connect(self, host: str | None = None, port: int = 0, source_address: Any = None) -> tuple[int, bytes]:
        # smtplib's connect() takes any host; a pinned object has exactly one.
        if host is not None and host != self._host:
            raise ValueError(f"this connection is pinned to {self._host!r}")
        return super().connect(self._host, self._pinned_port, source_address)  # type: ignore[misc]

    def open(self) -> tuple[int, bytes]:
        """Connect and read the greeting, like smtplib.SMTP(host) would."""
        code, msg = self.connect()
        if code != 220:
            self.close()  # type: ignore[attr-defined]
            raise smtplib.SMTPConnectError(code, msg)
        return code, msg

    def _pinned_socket(self) -> socket.socket:
        return _connect_first(self._addresses, lambda: self._io_timeout("connect"), self.source_address)

    def getreply(self) -> tuple[int, bytes]:
        """smtplib's own, reading through the deadline: a reply that never
        ends (endless "250-" lines, or bytes without a newline) stops there,
        and one longer than MAX_REPLY is cut off with the connection."""
        if not self.sock:
            raise smtplib.SMTPServerDisconnected("please run connect() first")
        reader = self._reader_for(self.sock)
        lines = []
        size = 0
        while True:
            try:
                line = reader.readline(smtplib._MAXLINE + 1)
            except DeadlineExceeded:
                self.close()  # type: ignore[attr-defined]
                raise
            except OSError as exc:
                self.close()  # type: ignore[attr-defined]
                raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed: " + str(exc)) from exc
            if not line:
                self.close()  # type: ignore[attr-defined]
                raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
            if self.debuglevel > 0:
                self._print_debug("reply:", repr(line))  # type: ignore[attr-defined]
            if len(line) > smtplib._MAXLINE:
                self.close()  # type: ignore[attr-defined]
                raise smtplib.SMTPResponseException(500, "Line too long.")
            size += len(line)
            if size > MAX_REPLY:
                self.close()  # type: ignore[attr-defined]
                raise smtplib.SMTPServerDisconnected(f"Reply longer than {MAX_REPLY} bytes")
            lines.append(line[4:].strip(b" \t\r\n"))
            try:
                code = int(line[:3])
            except ValueError:
                code = -1
                break
            if line[3:4] != b"-":
                break
        return code, b"\n".join(lines)

    def auth(
        self, mechanism: str, authobject: Callable[..., str | None], *, initial_response_ok: bool = True
    ) -> tuple[int, bytes]:
        """smtplib's own, with the responses in UTF-8 (RFC 4616's PLAIN,
        RFC 4954) where smtplib encodes them in ASCII and fails before a
        word is sent on a login such as box@пример.рф or a password with a
        Cyrillic letter. An ASCII login and password go as before."""
        mechanism = mechanism.upper()
        initial = authobject() if initial_response_ok else None
        # smtplib's auth_login answers by this count: the login, then the password.
        if initial is not None:
            code, reply = self.docmd("AUTH", f"{mechanism} {_base64(initial)}")  # type: ignore[attr-defined]
            self._auth_challenge_count = 1
        else:
            code, reply = self.docmd("AUTH", mechanism)  # type: ignore[attr-defined]
            self._auth_challenge_count = 0
        while code == 334:
            self._auth_challenge_count += 1
            code, reply = self.docmd(_base64(authobject(base64.decodebytes(reply))))  # type: ignore[attr-defined]
            if self._auth_challenge_count > smtplib._MAXCHALLENGE:  # type: ignore[attr-defined]
                break  # a server that challenges for ever: the login failed, with its last reply
        if code in (235, 503):
            return code, reply
        raise smtplib.SMTPAuthenticationError(code, reply)

    def auth_cram_md5(self, challenge: bytes | None = None) -> str | None:
        """smtplib's own, keyed with the password in UTF-8."""
        if challenge is None:
            return None
        return f"{self.user} {hmac.HMAC(self.password.encode(), challenge, 'md5').hexdigest()}"

    def send(self, s: str | bytes) -> None:
        """smtplib's own, each piece through the deadline: a server that
        stops reading our DATA cannot hold the send past it."""
        if not self.sock:
            raise smtplib.SMTPServerDisconnected("please run connect() first")
        if self.debuglevel > 0:
            self._print_debug("send:", repr(s))  # type: ignore[attr-defined]
        data = s.encode(self.command_encoding) if isinstance(s, str) else s
        sys.audit("smtplib.send", self, data)
        try:
            self._send_to(self.sock, data)
        except DeadlineExceeded:
            self.close()  # type: ignore[attr-defined]
            raise
        except OSError as exc:
            self.close()  # type: ignore[attr-defined]
            raise smtplib.SMTPServerDisconnected("Server not connected") from exc


def _base64(response: str | None) -> str:
    return base64.b64encode((response or "").encode()).decode("ascii")


class PinnedSMTP(_PinnedSMTPMixin, smtplib.SMTP):
    """smtplib.SMTP that connects only to pre-checked addresses.

    Usage::

        addresses = resolve_checked(host, port)
        smtp = PinnedSMTP(host, port, addresses=addresses, timeout=20, context=ctx)
        smtp.deadline_in(20)       # connect, greeting, EHLO, STARTTLS, AUTH: 20 s in all
        smtp.open()                # TCP to addresses[0] (then the next...), reads 220
        smtp.starttls()            # verifies the certificate for `host`, not the IP
        smtp.login(user, password)

    The constructor does not connect (smtplib's would, resolving `host`);
    `open()` or `connect()` does. `starttls()` without a context uses the
    constructor's context, or a verifying default one.

    Deadline: one for a whole phase, however slowly the server talks::

        smtp.deadline_in(30)    # from now on, everything must be done within 30 s
        smtp.sendmail(...)      # any number of commands: the deadline stays
        smtp.deadline_in(30)    # the next letter gets 30 s of its own
        smtp.deadline_in(None)  # (or clear_deadline()) the per-read timeout alone

    It covers connect, TLS, every reply however it dribbles (endless "250-"
    lines, bytes without a newline) and every send (a server that stops
    reading our DATA). When it passes, the command raises
    servers.deadlines.DeadlineExceeded (a TimeoutError) and the connection
    is closed. `time_left()` says what is left. The constructor's `timeout`
    still bounds each single read, deadline or not.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        addresses: Sequence[Address],
        timeout: float,
        context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
    ) -> None:
        self._addresses = _pinned(addresses, port)
        self._pinned_port = port
        self._read_timeout = timeout
        self.context = context
        # host="" keeps smtplib from connecting (and resolving) here.
        super().__init__("", 0, local_hostname=local_hostname, timeout=timeout)
        self._host = host  # smtplib's starttls() uses it as server_hostname

    def _get_socket(self, host: str, port: int, timeout: float | None) -> socket.socket:
        return self._pinned_socket()

    def starttls(self, keyfile: Any = None, certfile: Any = None, context: ssl.SSLContext | None = None) -> Any:
        if keyfile is not None or certfile is not None:
            return super().starttls(keyfile, certfile, context=context)
        verifying = _verifying_context(context if context is not None else self.context)
        return super().starttls(context=self._timed_context(verifying))  # type: ignore[arg-type]


class PinnedSMTP_SSL(_PinnedSMTPMixin, smtplib.SMTP_SSL):
    """smtplib.SMTP_SSL (implicit TLS) that connects only to pre-checked addresses.

    Usage::

        smtp = PinnedSMTP_SSL(host, 465, addresses=resolve_checked(host, 465), timeout=20, context=ctx)
        smtp.deadline_in(20)
        smtp.open()   # TCP to a pinned address, TLS verified for `host`, reads 220

    Without a context, a verifying default one is used (smtplib's is not).
    The deadline works as in PinnedSMTP (`deadline_in(seconds)`); it covers
    the TLS handshake too.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        addresses: Sequence[Address],
        timeout: float,
        context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
    ) -> None:
        self._addresses = _pinned(addresses, port)
        self._pinned_port = port
        self._read_timeout = timeout
        super().__init__("", 0, local_hostname=local_hostname, timeout=timeout, context=_verifying_context(context))
        self._host = host

    def _get_socket(self, host: str, port: int, timeout: float | None) -> socket.socket:
        return self._handshake(self.context, self._pinned_socket(), self._host)


# An IMAP atom as a login (RFC 3501 astring): no space, control, "(", ")",
# "{", "%", "*", '"' or "\\"; anything else goes as a quoted string.
_IMAP_ATOM = re.compile(r'[^\x00-\x20\x7f(){%*"\\]+')


def _imap_quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _breaks_line(data: bytes) -> bool:
    """Whether `data`, one command line without its CRLF, would be read as
    more than one line (or a NUL would end it early)."""
    return b"\r" in data or b"\n" in data or b"\0" in data


class _PinnedIMAPMixin(Deadline):
    """Shared by the IMAP classes: the pinned host, and every read and write
    under the deadline. imaplib connects inside its constructor, so the
    subclasses set the pinned attributes before calling it."""

    _pinned_host: str
    _pinned_port: int
    _addresses: list[Address]
    sock: Any
    error: type[Exception]
    capabilities: tuple[str, ...]
    literal: bytes | None
    state: str

    def _setup(
        self, host: str, port: int, addresses: Sequence[Address], timeout: float, deadline: float | None
    ) -> None:
        self._addresses = _pinned(addresses, port)
        self._pinned_host, self._pinned_port = host, port
        self._read_timeout = timeout
        self.deadline_in(deadline)

    def open(self, host: str = "", port: int = imaplib.IMAP4_PORT, timeout: float | None = None) -> None:
        # imaplib's open() stores `host` for TLS and would take any; a pinned
        # object has exactly one host and port.
        if (host, port) != (self._pinned_host, self._pinned_port):
            raise ValueError(f"this connection is pinned to {self._pinned_host!r} port {self._pinned_port}")
        super().open(host, port, timeout)  # type: ignore[misc]

    def _pinned_socket(self) -> socket.socket:
        return _connect_first(self._addresses, lambda: self._io_timeout("connect"))

    def readline(self) -> bytes:
        # An endless untagged response is many lines: each is read here.
        line = self._reader_for(self.sock).readline(imaplib._MAXLINE + 1)
        if len(line) > imaplib._MAXLINE:
            raise self.error(f"got more than {imaplib._MAXLINE} bytes")
        return line

    def read(self, size: int) -> bytes:
        return self._reader_for(self.sock).read(size)

    def send(self, data: bytes) -> None:
        # imaplib puts a login and a quoted password into the line as they
        # are: a line break in one would end the command and start one of
        # the tenant's choosing. A command is one line, and the one literal
        # we send (login's password that is not ASCII) holds no break either.
        if _breaks_line(data[:-2] if data.endswith(b"\r\n") else data):
            raise self.error("a line break may not be sent inside an IMAP command")
        sys.audit("imaplib.send", self, data)
        self._send_to(self.sock, data)

    def login(self, user: str, password: str) -> tuple[str, list[Any]]:
        """By what the server offers: LOGIN (imaplib's own for an ASCII
        login and password), or AUTHENTICATE PLAIN or CRAM-MD5 where it says
        LOGINDISABLED (or SASL's LOGIN); never a password it said it would refuse (before
        STARTTLS), which imaplib sent all the same, in clear. imaplib
        encodes LOGIN in ASCII and fails before a word is sent on a login
        such as почта@пример.рф or a password with a Cyrillic letter: those
        go in UTF-8, by AUTHENTICATE PLAIN (RFC 4616) where the server
        offers it, else by LOGIN with the password as a literal (8-bit, RFC
        3501) and the login as a quoted string in UTF-8 (RFC 6855)."""
        try:
            return self._login(user, password)
        except self.error as exc:  # imaplib puts the server's words in as bytes: b'[AUTHENTICATIONFAILED] ...'
            text = exc.args[0] if exc.args else ""
            if isinstance(text, bytes):
                raise self.error(text.decode(errors="replace")) from None
            raise

    def _login(self, user: str, password: str) -> tuple[str, list[Any]]:
        offered = {c.upper() for c in self.capabilities}
        if "LOGINDISABLED" in offered:
            if "AUTH=PLAIN" in offered:
                return self._login_plain(user, password)
            if "AUTH=CRAM-MD5" in offered:
                return self.login_cram_md5(user, password)  # type: ignore[attr-defined]
            if "AUTH=LOGIN" in offered:  # SASL's LOGIN (MDaemon, old Exchange): "Username:", then "Password:"
                answers = iter((user.encode(), password.encode()))
                return self.authenticate("LOGIN", lambda _challenge: next(answers, b""))  # type: ignore[attr-defined]
            mechanisms = sorted(c.partition("=")[2] for c in offered if c.startswith("AUTH="))
            raise ImapLoginUnavailable(encrypted=isinstance(self.sock, ssl.SSLSocket), mechanisms=mechanisms)
        if user.isascii() and password.isascii():
            # imaplib quotes the password only: a login that is no atom (a
            # name with a space, as HCL Domino takes) went as it was, and the
            # server refused the command.
            login = user if _IMAP_ATOM.fullmatch(user) else _imap_quoted(user)
            return super().login(login, password)  # type: ignore[misc]
        if "AUTH=PLAIN" in offered:
            return self._login_plain(user, password)
        self.literal = password.encode()
        quoted = _imap_quoted(user)
        typ, data = self._simple_command("LOGIN", quoted.encode())  # type: ignore[attr-defined]
        if typ != "OK":
            raise self.error(data[-1])
        self.state = "AUTH"
        return typ, data

    def _login_plain(self, user: str, password: str) -> tuple[str, list[Any]]:
        plain = b"\0" + user.encode() + b"\0" + password.encode()
        return self.authenticate("PLAIN", lambda _challenge: plain)  # type: ignore[attr-defined]


class PinnedIMAP4(_PinnedIMAPMixin, imaplib.IMAP4):
    """imaplib.IMAP4 that connects only to pre-checked addresses.

    Usage::

        imap = PinnedIMAP4(host, 143, addresses=resolve_checked(host, 143), timeout=20, ssl_context=ctx)
        imap.starttls()   # imaplib passes server_hostname=self.host, i.e. `host`
        imap.login(user, password)

    Connects (and reads the greeting and CAPABILITY) in the constructor, as
    imaplib does. `starttls()` without a context uses `ssl_context`, or a
    verifying default one.

    Deadline: `deadline=` (seconds) bounds the opening as a whole (greeting
    and capabilities included); `deadline_in(seconds)` then sets a new one
    for the commands that follow, as in PinnedSMTP.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        addresses: Sequence[Address],
        timeout: float,
        ssl_context: ssl.SSLContext | None = None,
        deadline: float | None = None,
    ) -> None:
        self._setup(host, port, addresses, timeout, deadline)
        self.ssl_context = ssl_context
        super().__init__(host, port, timeout)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        return self._pinned_socket()

    def starttls(self, ssl_context: ssl.SSLContext | None = None) -> Any:
        verifying = _verifying_context(ssl_context if ssl_context is not None else self.ssl_context)
        return super().starttls(self._timed_context(verifying))  # type: ignore[arg-type]


class PinnedIMAP4_SSL(_PinnedIMAPMixin, imaplib.IMAP4_SSL):
    """imaplib.IMAP4_SSL (implicit TLS) that connects only to pre-checked addresses.

    Usage::

        imap = PinnedIMAP4_SSL(host, 993, addresses=resolve_checked(host, 993), timeout=20, ssl_context=ctx)
        imap.login(user, password)

    The certificate is verified for `host`; without a context, a verifying
    default one is used (imaplib's is not).

    Deadline: `deadline=` (seconds) bounds the opening as a whole (greeting
    and capabilities included); `deadline_in(seconds)` then sets a new one
    for the commands that follow, as in PinnedSMTP.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        addresses: Sequence[Address],
        timeout: float,
        ssl_context: ssl.SSLContext | None = None,
        deadline: float | None = None,
    ) -> None:
        self._setup(host, port, addresses, timeout, deadline)
        super().__init__(host, port, ssl_context=_verifying_context(ssl_context), timeout=timeout)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        return self._handshake(self.ssl_context, self._pinned_socket(), self.host)


# Mail lines are at most 998 octets by the RFC, but real messages (HTML in
# one line) exceed poplib's 2,048; a message we cannot read would otherwise
# stop the reader on every run.
_POP3_MAX_LINE = 1_000_000


class _PinnedPOP3Mixin(Deadline):
    """Shared by the POP3 classes: every read and write under the deadline.
    poplib connects inside its constructor, so the subclasses set the
    pinned addresses before calling it."""

    _addresses: list[Address]
    sock: Any

    def _setup(self, port: int, addresses: Sequence[Address], timeout: float, deadline: float | None) -> None:
        self._addresses = _pinned(addresses, port)
        self._read_timeout = timeout
        self.deadline_in(deadline)

    def _pinned_socket(self) -> socket.socket:
        return _connect_first(self._addresses, lambda: self._io_timeout("connect"))

    def _getline(self) -> tuple[bytes, int]:
        # poplib's own, with a larger line limit; a listing that never ends
        # is many lines, each read here.
        line = self._reader_for(self.sock).readline(_POP3_MAX_LINE + 1)
        if len(line) > _POP3_MAX_LINE:
            raise poplib.error_proto("line too long")
        if not line:
            raise poplib.error_proto("-ERR EOF")
        octets = len(line)
        if line[-2:] == b"\r\n":
            return line[:-2], octets
        if line[:1] == b"\r":
            return line[1:-1], octets
        return line[:-1], octets

    def _putline(self, line: bytes) -> None:
        # USER and PASS take the rest of the line as they are: a line break
        # in a login or a password would start a command of its own.
        if _breaks_line(line):
            raise poplib.error_proto("a line break may not be sent inside a POP3 command")
        sys.audit("poplib.putline", self, line)
        self._send_to(self.sock, line + b"\r\n")


class PinnedPOP3(_PinnedPOP3Mixin, poplib.POP3):
    """poplib.POP3 that connects only to pre-checked addresses.

    Usage::

        pop = PinnedPOP3(host, 110, addresses=resolve_checked(host, 110), timeout=20, ssl_context=ctx)
        pop.stls()   # verified for `host`; poplib's default context is not
        pop.user(login); pop.pass_(password)

    Connects (and reads the greeting) in the constructor, as poplib does.

    Deadline: `deadline=` (seconds) bounds the opening as a whole (greeting
    and capabilities included); `deadline_in(seconds)` then sets a new one
    for the commands that follow, as in PinnedSMTP.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        addresses: Sequence[Address],
        timeout: float,
        ssl_context: ssl.SSLContext | None = None,
        deadline: float | None = None,
    ) -> None:
        self._setup(port, addresses, timeout, deadline)
        self.ssl_context = ssl_context
        super().__init__(host, port, timeout)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        return self._pinned_socket()

    def stls(self, context: ssl.SSLContext | None = None) -> bytes:
        verifying = _verifying_context(context if context is not None else self.ssl_context)
        return super().stls(self._timed_context(verifying))  # type: ignore[arg-type]


class PinnedPOP3_SSL(_PinnedPOP3Mixin, poplib.POP3_SSL):
    """poplib.POP3_SSL (implicit TLS, POP3S) that connects only to pre-checked addresses.

    Usage::

        pop = PinnedPOP3_SSL(host, 995, addresses=resolve_checked(host, 995), timeout=20, ssl_context=ctx)

    The certificate is verified for `host`; without a context, a verifying
    default one is used (poplib's is not).

    Deadline: `deadline=` (seconds) bounds the opening as a whole (greeting
    and capabilities included); `deadline_in(seconds)` then sets a new one
    for the commands that follow, as in PinnedSMTP.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        addresses: Sequence[Address],
        timeout: float,
        ssl_context: ssl.SSLContext | None = None,
        deadline: float | None = None,
    ) -> None:
        self._setup(port, addresses, timeout, deadline)
        super().__init__(host, port, timeout=timeout, context=_verifying_context(ssl_context))

    def _create_socket(self, timeout: float | None) -> socket.socket:
        return self._handshake(self.context, self._pinned_socket(), self.host)


# --- convenience --------------------------------------------------------------

SECURITY_CHOICES = ("none", "ssl", "starttls")


def _check_security(security: str) -> None:
    if security not in SECURITY_CHOICES:
        raise ValueError(f"security must be one of {SECURITY_CHOICES}, not {security!r}")


def connect_smtp(
    host: str,
    port: int,
    security: str,
    *,
    timeout: float,
    context: ssl.SSLContext | None,
    local_hostname: str | None = None,
) -> smtplib.SMTP:
    """Check, resolve and connect; returns after the 220 greeting.

    For "starttls" the caller calls `.starttls()` itself, so it can time and
    report that step separately.
    """
    _check_security(security)
    addresses = resolve_checked(host, port)
    name = normalize_host(host)
    cls = PinnedSMTP_SSL if security == "ssl" else PinnedSMTP
    smtp = cls(name, port, addresses=addresses, timeout=timeout, context=context, local_hostname=local_hostname)
    smtp.open()
    return smtp


def connect_imap(
    host: str, port: int, security: str, *, timeout: float, context: ssl.SSLContext | None
) -> imaplib.IMAP4:
    """Check, resolve and connect; returns after the greeting and CAPABILITY.

    For "starttls" the caller calls `.starttls()` itself.
    """
    _check_security(security)
    addresses = resolve_checked(host, port)
    name = normalize_host(host)
    cls = PinnedIMAP4_SSL if security == "ssl" else PinnedIMAP4
    return cls(name, port, addresses=addresses, timeout=timeout, ssl_context=context)
