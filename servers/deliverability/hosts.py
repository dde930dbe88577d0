"""The sending host of a server: what a receiver sees connecting to it, and
so what the From domain's SPF record has to name.

- A known provider (Gmail, Yandex, Mail.ru, Outlook) or relay (SendGrid,
  Mailgun, Amazon SES): its SPF include, the name its customers publish
  (`include:_spf.google.com`), because its outgoing machines are many and
  change. Its own mailbox domains (gmail.com) are authorised by definition.
- The platform's server, when the operator publishes one name for all of
  them (PLATFORM_SPF_INCLUDE): that name.
- Any other server (a company's own): the addresses of its SMTP host, which
  for a company's relay are the addresses its letters leave from.
- Internal SMTP, or a host with only private addresses: not known, so the
  check says "could not check" rather than guess."""

import ipaddress
from dataclasses import dataclass
from typing import Protocol

from django.conf import settings
from django.utils.translation import gettext as _

from .. import presets
from . import resolver

GENERIC_SELECTORS = ("default", "dkim", "mail")
MAX_ADDRESSES = 3


class Server(Protocol):
    kind: str
    host: str

    @property
    def is_platform(self) -> bool: ...


@dataclass(frozen=True)
class Known:
    name: str
    includes: tuple[str, ...]
    selectors: tuple[str, ...]


# Keyed by presets' provider key.
PROVIDERS = {
    "gmail": Known("Google", ("_spf.google.com",), ("google",)),
    "yandex": Known("Yandex", ("_spf.yandex.net",), ("mail",)),
    "mailru": Known("Mail.ru", ("_spf.mail.ru",), ("mailru", "mail")),
    "outlook": Known("Microsoft", ("spf.protection.outlook.com",), ("selector1", "selector2")),
    "rambler": Known("Rambler", (), ()),
}
# Relays, by the end of their SMTP host name.
RELAYS = {
    "sendgrid.net": Known("SendGrid", ("sendgrid.net",), ("s1", "s2")),
    "mailgun.org": Known("Mailgun", ("mailgun.org",), ("mx", "k1")),
    "amazonaws.com": Known("Amazon SES", ("amazonses.com",), ()),
    "office365.com": Known("Microsoft 365", ("spf.protection.outlook.com",), ("selector1", "selector2")),
}


@dataclass(frozen=True)
class SendingHost:
    label: str
    includes: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()
    # Mailbox domains of the provider itself: its own SPF and DKIM cover them.
    own_domains: tuple[str, ...] = ()
    selectors: tuple[str, ...] = ()
    unknown: str = ""  # why the sending host is not known
    provider: str = ""  # the provider's or relay's name

    def mechanisms(self, ips: tuple[str, ...] | None = None) -> str:
        """What an SPF record has to contain to authorise this host."""
        if self.includes:
            return f"include:{self.includes[0]}"
        return " ".join(f"ip{ipaddress.ip_address(ip).version}:{ip}" for ip in (ips or self.ips))


def sending_host(server: Server) -> SendingHost:
    """Raises resolver.DnsFailure when the SMTP host's addresses cannot be
    looked up."""
    if server.is_platform and settings.PLATFORM_SPF_INCLUDE:
        name = settings.PLATFORM_SPF_INCLUDE
        return SendingHost(name, includes=(name,), selectors=GENERIC_SELECTORS)
    if server.kind == "internal":
        return SendingHost(
            "", unknown=_("It sends through this machine's own mail server, whose public address is not known here.")
        )
    host = server.host.strip().lower().rstrip(".")
    provider = presets.for_host(host)
    if provider is not None and provider.key in PROVIDERS:
        return _known(PROVIDERS[provider.key], provider.domains)
    relay = next((known for suffix, known in RELAYS.items() if host == suffix or host.endswith("." + suffix)), None)
    if relay is not None:
        return _known(relay, ())
    return _by_address(host)


def _known(known: Known, own_domains: tuple[str, ...]) -> SendingHost:
    label = f"{known.name} ({known.includes[0]})" if known.includes else known.name
    unknown = (
        "" if known.includes else _("%(name)s publishes no SPF name for its customers' domains.") % {"name": known.name}
    )
    return SendingHost(
        label,
        includes=known.includes,
        own_domains=own_domains,
        selectors=known.selectors,
        unknown=unknown,
        provider=known.name,
    )


def _by_address(host: str) -> SendingHost:
    try:
        ips = [str(ipaddress.ip_address(host))]
    except ValueError:
        ips = resolver.lookup(host, "A")[:MAX_ADDRESSES] + resolver.lookup(host, "AAAA")[:MAX_ADDRESSES]
    if not ips:
        return SendingHost(host, unknown=_("Its SMTP host %(host)s has no address in DNS.") % {"host": host})
    public = tuple(ip for ip in ips if ipaddress.ip_address(ip).is_global)[:MAX_ADDRESSES]
    if not public:
        reason = _(
            "Its SMTP host %(host)s has only private addresses: the public address its letters leave from is not known."
        )
        return SendingHost(host, unknown=reason % {"host": host})
    return SendingHost(f"{host} ({', '.join(public)})", ips=public, selectors=GENERIC_SELECTORS)
