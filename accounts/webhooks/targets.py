"""Which webhook URLs may be used: the SSRF rule of the sending servers
(servers.netguard) applied to a URL.

- http or https only, with a host; no user name or password in it (the
  signature is how a receiver knows us) and no fragment;
- when the guard is on (SaaS): https only, and the host must resolve to
  public addresses only. The check runs when the endpoint is saved and
  again before every attempt, and the attempt connects to the addresses
  checked then (client), so a name that changes its answer (DNS rebinding)
  gains nothing;
- self-hosted (or SERVERS_ALLOW_PRIVATE_HOSTS in development and tests):
  http is allowed and so is any address, as for the SMTP servers."""

from dataclasses import dataclass
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from servers import netguard
from servers.rules import host_name_error


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # normalised (servers.netguard.normalize_host)
    port: int
    path: str  # with the query


def parse(url: str) -> Target:
    """The URL's parts; ValidationError when it may never be used."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ValidationError(_("Enter a valid URL.")) from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError(_("Enter a URL that starts with https:// and names a host."))
    if parts.username is not None or parts.password is not None:
        raise ValidationError(
            _("Leave the user name and password out of the URL: the signature tells your receiver it is us.")
        )
    if parts.fragment:
        raise ValidationError(_("Leave the #fragment out of the URL: it is never sent."))
    if netguard.guard_enabled() and parts.scheme != "https":
        raise ValidationError(_("Use an https:// URL: events carry your contacts' addresses."))
    try:
        host = netguard.normalize_host(parts.hostname)
    except netguard.HostRefused as exc:
        raise ValidationError(str(exc)) from exc
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, host, port or (443 if parts.scheme == "https" else 80), path)


def validate_for_save(url: str) -> None:
    """Refuses what parse() refuses and, with the guard on, a host that
    resolves to an internal address now. A name that does not resolve yet
    is accepted (each attempt checks again)."""
    target = parse(url)
    problem = host_name_error(target.host) or netguard.validate_host_for_save(target.host)
    if problem:
        raise ValidationError(problem)
