"""The rules every sending server and bounce mailbox obeys (DOMAIN.md §1-2),
checked by the models' clean() on every path, and again just before
connecting."""

import ipaddress
import re
from collections import defaultdict
from typing import TYPE_CHECKING

import idna
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from .addresses import address_errors, check_alphabets
from .validators import no_control_chars
from .wire import idna_name

if TYPE_CHECKING:
    from .models import BounceMailbox, SmtpServer

PORT_25_REFUSED = gettext_lazy(
    "SaaS accounts cannot add their own port-25 server. Use your provider's port 465 (SSL) or 587 (STARTTLS)."
)
# Said only where the installation has a platform server to send through.
PORT_25_REFUSED_PLATFORM = gettext_lazy(
    "SaaS accounts cannot add their own port-25 server. Send through the platform's server «{name}» "
    "(already in your list), or use your provider's port 465 (SSL) or 587 (STARTTLS)."
)
INTERNAL_REFUSED = gettext_lazy(
    "Internal SMTP means a mail server on the same host as Postroute, which only a self-hosted "
    "installation has. Add your provider's server as External SMTP."
)
# The ports of sending (SMTP, submission, SMTPS): in SaaS a bounce mailbox on
# one of them would make our reader talk IMAP or POP3 to a mail server's
# sending side, as a port-25 server would be a tenant's relay.
SMTP_PORTS = (25, 465, 587)
MAILBOX_SMTP_PORT_REFUSED = gettext_lazy(
    "Port {port} is a port for sending mail (SMTP), not for reading it. Use your provider's "
    "IMAP port 993 (SSL) or 143, or POP3 port 995 (SSL) or 110."
)
NO_TLS_VERIFY_REFUSED = gettext_lazy("Certificate verification can be turned off only on a self-hosted installation.")
# Fields whose values go into a mail header or a mail-protocol command.
HEADER_FIELDS = ("name", "sender_email", "sender_name", "host", "login")
MAILBOX_HEADER_FIELDS = ("host", "login", "folder")


def is_saas() -> bool:
    return settings.DEPLOYMENT_MODE == "saas"


def smtp_server_errors(server: "SmtpServer") -> dict[str, list[str]]:
    """Everything a saved server obeys: the connection rules, which sender
    address this installation allows and how its host is spelt."""
    errors = _smtp_connection_errors(server)
    for field, messages in address_errors(server, ["sender_email"]).items():
        errors.setdefault(field, []).extend(messages)
    return _with_host_spelling(server.host, errors)


def mailbox_save_errors(mailbox: "BounceMailbox") -> dict[str, list[str]]:
    """Everything a saved mailbox obeys: the connection rules and how its
    host is spelt."""
    return _with_host_spelling(mailbox.host, mailbox_errors(mailbox))


def _with_host_spelling(host: str, errors: dict[str, list[str]]) -> dict[str, list[str]]:
    """`errors` and, for a host whose label mixes look-alike alphabets
    (smtp.yandex.ru with a Cyrillic a), the addresses' refusal: no registry
    allows such a name, and it failed every connection as "not found
    (DNS)". A rule of saving, as the sender address is: not checked again
    at connect time."""
    if "host" not in errors and (message := host_name_error(host)):
        errors["host"] = [message]
    try:
        check_alphabets((host or "").strip().lower())
    except ValidationError as exc:
        errors.setdefault("host", []).extend(exc.messages)
    return errors


# An RFC 1123 label: letters, digits and hyphens, neither first nor last.
LDH_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
NOT_A_HOST_NAME = gettext_lazy(
    "%(name)s is not a valid host name: each part between the dots has 1 to 63 letters, digits or hyphens "
    "(no underscores), and begins and ends with a letter or digit; the whole name has at most 253 characters."
)
# No top-level domain is all digits (RFC 3696): such a name is an IP address
# mistyped (300.1.1.1, never found) or shortened (127.1, which getaddrinfo
# reads as 127.0.0.1).
NUMERIC_TOP_LEVEL = gettext_lazy(
    "%(name)s is not a valid host name: its last part is all digits. For an IP address, type all four numbers."
)


def host_name_error(host: str) -> str | None:
    """Why `host` is no DNS host name (RFC 1123 labels, after IDNA 2008 as
    servers.wire encodes it), or None; an IP address, in brackets or not,
    is left to the address rules. A rule of saving: a host saved before it
    (mail_relay.corp, which a resolver may still answer) keeps connecting."""
    name = (host or "").strip()
    if not name or _is_ip(name.removeprefix("[").removesuffix("]")):
        return None
    name = name.removesuffix(".")
    try:
        wire = name.lower() if name.isascii() else idna_name(name)
    except idna.IDNAError:
        wire = ""
    if not wire or len(wire) > 253 or not all(LDH_LABEL.fullmatch(label) for label in wire.split(".")):
        return str(NOT_A_HOST_NAME % {"name": f"{host.strip()!r}"})
    if wire.rpartition(".")[2].isdigit():
        return str(NUMERIC_TOP_LEVEL % {"name": f"{host.strip()!r}"})
    return None


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _port_25_refusal(server: "SmtpServer") -> str:
    """Points to the platform's server only when there is one."""
    platform = type(server).objects.filter(tenant=None, enabled=True).order_by("priority", "pk").first()
    return PORT_25_REFUSED_PLATFORM.format(name=platform.name) if platform else PORT_25_REFUSED


def _smtp_connection_errors(server: "SmtpServer") -> dict[str, list[str]]:
    errors: dict[str, list[str]] = defaultdict(list)
    _header_safety(server, HEADER_FIELDS, errors)
    tenant_owned = server.tenant_id is not None
    if server.kind == server.Kind.INTERNAL:
        if is_saas() and tenant_owned:
            errors["kind"].append(INTERNAL_REFUSED)
        return dict(errors)
    if not server.host:
        errors["host"].append(_("Enter the SMTP server, e.g. smtp.yandex.ru."))
    if not server.port:
        errors["port"].append(_("Enter the SMTP port, e.g. 465."))
    if is_saas() and tenant_owned:
        if server.port == 25:
            errors["port"].append(_port_25_refusal(server))
        if not server.verify_tls:
            errors["verify_tls"].append(NO_TLS_VERIFY_REFUSED)
    # The SaaS guard's addresses on tenants' servers; a malformed host (one no
    # connection could use, "smtp.gmail.com:587") on every server.
    if server.host and (message := _host_error(server.host) if is_saas() and tenant_owned else _malformed(server.host)):
        errors["host"].append(message)
    return dict(errors)


SHARED_PASSWORD_REFUSED = gettext_lazy(
    "The SMTP password goes only to an incoming server of the same provider or domain as the SMTP server. "
    "Type the password for this server."
)
NOT_THIS_TENANTS_SERVER = gettext_lazy("The mailbox of another organisation's server cannot be read.")


def mailbox_errors(mailbox: "BounceMailbox") -> dict[str, list[str]]:
    errors: dict[str, list[str]] = defaultdict(list)
    _header_safety(mailbox, MAILBOX_HEADER_FIELDS, errors)
    if mailbox.server_id is not None:
        if mailbox.server.tenant_id != mailbox.tenant_id:
            errors["server"].append(NOT_THIS_TENANTS_SERVER)
        if mailbox.shares_server_password and not may_share_password(mailbox.server.host, mailbox.host):
            errors["host"].append(SHARED_PASSWORD_REFUSED)
    if is_saas():
        if mailbox.port in SMTP_PORTS:
            errors["port"].append(MAILBOX_SMTP_PORT_REFUSED.format(port=mailbox.port))
        if not mailbox.verify_tls:
            errors["verify_tls"].append(NO_TLS_VERIFY_REFUSED)
    if mailbox.host and (message := _host_error(mailbox.host)):
        errors["host"].append(message)
    return dict(errors)


def may_share_password(smtp_host: str, imap_host: str) -> bool:
    """Whether a server's stored SMTP password may go to this incoming
    server: the same host, the same provider (smtp.yandex.ru and
    imap.yandex.ru, smtp-mail.outlook.com and outlook.office365.com), or the
    same domain below the first label (smtp.corp.example, imap.corp.example),
    unless that domain is a public suffix (company.com.vn and evil.com.vn
    are two companies). So a stolen session cannot send a stored password
    to a host of its choosing by pointing the mailbox elsewhere."""
    from . import presets
    from .deliverability.dmarc import is_public_suffix

    smtp, imap = (h.strip().strip("[]").lower().rstrip(".") for h in (smtp_host, imap_host))
    if not smtp or not imap:
        return False
    addresses = [_address(smtp), _address(imap)]
    if addresses != [None, None]:
        # An address is not a domain: 8.8.8.8 and 9.8.8.8 share "8.8.8"
        # after their first label and nothing else. Only the same address.
        return addresses[0] == addresses[1]
    if smtp == imap:
        return True
    provider = presets.for_host(smtp)
    if provider is not None:
        return presets.for_host(imap) == provider
    parent = smtp.partition(".")[2]
    return "." in parent and imap.partition(".")[2] == parent and not is_public_suffix(parent)


_NUMERIC_LABEL = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)")


def _address(host: str) -> str | None:
    """The address `host` spells, canonical; the host itself for the other
    numeric spellings (010.8.8.8, 0x8.8.8.8: no top-level domain is a
    number); None for a name."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host if _NUMERIC_LABEL.fullmatch(host.rpartition(".")[2]) else None


def port_security_warning(port: int | None, security: str) -> str | None:
    """A port and security pair that rarely works; the user may accept it."""
    if port == 465 and security != "ssl":
        return _("Port 465 normally uses SSL/TLS (implicit). With another setting the connection usually hangs.")
    if port == 587 and security == "ssl":
        return _("Port 587 normally uses STARTTLS, not SSL/TLS. With SSL the connection usually fails.")
    if port in (993, 995) and security != "ssl":
        return _("Port %(port)s normally uses SSL/TLS (implicit).") % {"port": port}
    if port in (143, 110) and security == "ssl":
        return _("Port %(port)s normally uses STARTTLS or no encryption, not SSL/TLS.") % {"port": port}
    return None


def assert_connectable(record: "SmtpServer | BounceMailbox") -> None:
    """The connection rules once more, right before a connection: a record
    edited behind the forms' back (shell, import, raw SQL) is still refused.
    The sender address is a rule of what may be saved, not of connecting: a
    server saved before a rule changed keeps sending rather than stall its
    mailings without a word."""
    errors = _smtp_connection_errors(record) if hasattr(record, "kind") else mailbox_errors(record)
    if errors:
        raise ValidationError(errors)


def _header_safety(record: object, fields: tuple[str, ...], errors: dict[str, list[str]]) -> None:
    for field in fields:
        try:
            no_control_chars(getattr(record, field, ""))
        except ValidationError as exc:
            errors[field].extend(exc.messages)


def host_error(host: str) -> str | None:
    """The SaaS host rule (no private or loopback host) on one host."""
    return _host_error(host)


def _host_error(host: str) -> str | None:
    from .netguard import validate_host_for_save

    return validate_host_for_save(host)


def _malformed(host: str) -> str | None:
    from .netguard import HostRefused, normalize_host

    try:
        normalize_host(host)
    except HostRefused as exc:
        return str(exc)
    return None
