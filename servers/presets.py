"""Well-known providers (DOMAIN.md §6): where their servers are, what they
allow, and what to tell a tenant when they refuse."""

from dataclasses import asdict, dataclass, field

from django.utils.translation import gettext_lazy as _


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    security: str  # "none" | "ssl" | "starttls"


@dataclass(frozen=True)
class Provider:
    key: str
    name: str
    domains: tuple[str, ...]
    smtp: Endpoint | None
    imap: Endpoint | None
    pop3: Endpoint | None = None
    allows_substitution: bool = False
    # Delivers name+anything@domain to name@domain: letters may carry a
    # per-letter tag in their return address (mailing.bounces.tokens).
    plus_addressing: bool = True
    auth_hint: str = ""
    blacklist_hint: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)


GENERIC_AUTH_HINT = _(
    "Check the login (usually the full mailbox address) and the password. Many providers need an "
    "app password for programs like Postroute instead of the password you use on their website."
)
GENERIC_BLACKLIST_HINT = _(
    "The receiving side rejects mail from this server's IP address because it is on a spam blacklist. "
    "The owner of the server must ask the provider (or the blacklist) to remove it; meanwhile use another server."
)
NO_SUBSTITUTION = _("{name} does not allow sender substitution: letters always go out from the mailbox itself.")

PROVIDERS: tuple[Provider, ...] = (
    Provider(
        key="yandex",
        name="Yandex",
        domains=("yandex.ru", "ya.ru", "yandex.com", "yandex.by", "yandex.kz", "yandex.ua", "narod.ru"),
        smtp=Endpoint("smtp.yandex.ru", 465, "ssl"),
        imap=Endpoint("imap.yandex.ru", 993, "ssl"),
        pop3=Endpoint("pop.yandex.ru", 995, "ssl"),
        auth_hint=(
            _(
                "Yandex wants the full mailbox address as the login (name@yandex.ru), and an app password: "
                "Yandex ID → Security → App passwords. Also allow access by mail clients in Yandex Mail settings."
            )
        ),
    ),
    Provider(
        key="mailru",
        name="Mail.ru",
        domains=("mail.ru", "inbox.ru", "list.ru", "bk.ru", "internet.ru", "mail.ua"),
        smtp=Endpoint("smtp.mail.ru", 465, "ssl"),
        imap=Endpoint("imap.mail.ru", 993, "ssl"),
        pop3=Endpoint("pop.mail.ru", 995, "ssl"),
        auth_hint=(
            _(
                "Mail.ru accepts programs only with an app password: Mail.ru account → Security → "
                "Passwords for external applications. The login is the full mailbox address."
            )
        ),
    ),
    Provider(
        key="gmail",
        name="Gmail",
        domains=("gmail.com", "googlemail.com"),
        smtp=Endpoint("smtp.gmail.com", 465, "ssl"),
        imap=Endpoint("imap.gmail.com", 993, "ssl"),
        pop3=Endpoint("pop.gmail.com", 995, "ssl"),
        auth_hint=(
            _(
                'Gmail answers "Could not authenticate" when access by third-party programs is off. Turn on '
                "2-Step Verification, create an app password (Google Account → Security → App passwords) "
                "and use it here instead of your Google password."
            )
        ),
        notes=(_("Port 587 with STARTTLS works too."),),
    ),
    Provider(
        key="rambler",
        name="Rambler",
        domains=("rambler.ru", "lenta.ru", "autorambler.ru", "myrambler.ru", "ro.ru", "rambler.ua"),
        smtp=Endpoint("smtp.rambler.ru", 465, "ssl"),
        imap=Endpoint("imap.rambler.ru", 993, "ssl"),
        pop3=Endpoint("pop.rambler.ru", 995, "ssl"),
        plus_addressing=False,  # not documented by Rambler: the plain address is safer
        auth_hint=(
            _(
                'In Rambler Mail settings → Mail programs, turn on "send mail via the Rambler-Mail SMTP '
                'server". The From address must equal the SMTP login.'
            )
        ),
        blacklist_hint=(
            _(
                'Rambler answered "5.7.1 Spam rejected": the IP address of this server is on a blacklist. '
                "Write to Rambler's abuse address to have it removed; meanwhile use another server."
            )
        ),
    ),
    Provider(
        key="outlook",
        name="Outlook.com",
        domains=("outlook.com", "hotmail.com", "live.com", "msn.com", "outlook.ru"),
        smtp=Endpoint("smtp-mail.outlook.com", 587, "starttls"),
        imap=Endpoint("outlook.office365.com", 993, "ssl"),
        pop3=Endpoint("outlook.office365.com", 995, "ssl"),
        auth_hint=(
            _(
                "Microsoft turns off password sign-in for programs on many accounts. Turn on two-step "
                "verification and create an app password in your Microsoft account's security settings."
            )
        ),
    ),
)

CUSTOM = Provider(
    key="custom",
    name=_("Your company's server"),
    domains=(),
    smtp=None,
    imap=None,
    allows_substitution=True,
    notes=(_("Sender substitution works if your domain's SPF record allows this server."),),
)

BY_KEY = {p.key: p for p in (*PROVIDERS, CUSTOM)}
_BY_DOMAIN = {d: p for p in PROVIDERS for d in p.domains}
_BY_HOST = {e.host: p for p in PROVIDERS for e in (p.smtp, p.imap, p.pop3) if e is not None}


def for_email(address: str) -> Provider | None:
    domain = address.rpartition("@")[2].strip().lower().rstrip(".")
    return _BY_DOMAIN.get(domain)


def for_host(host: str) -> Provider | None:
    host = host.strip().lower().rstrip(".")
    if host in _BY_HOST:
        return _BY_HOST[host]
    return next((p for p in PROVIDERS if any(host.endswith("." + d) for d in p.domains)), None)


def is_provider_host(host: str) -> bool:
    """One of the well-known providers' own server names (a preset's)."""
    return host.strip().lower().rstrip(".") in _BY_HOST


def imap_for(host: str, address: str) -> Endpoint:
    """The incoming server of a sending server's mailbox: its provider's,
    else the usual imap.<domain>."""
    provider = for_host(host) or for_email(address)
    if provider is not None and provider.imap is not None:
        return provider.imap
    return guess_custom(address)["imap"]


def plus_addressing_for(host: str, address: str) -> bool:
    provider = for_host(host) or for_email(address)
    return provider.plus_addressing if provider is not None else CUSTOM.plus_addressing


def guess_custom(address: str) -> dict[str, Endpoint]:
    """For an unknown domain, the usual names: smtp.<domain>, imap.<domain>."""
    domain = address.rpartition("@")[2].strip().lower()
    return {"smtp": Endpoint(f"smtp.{domain}", 465, "ssl"), "imap": Endpoint(f"imap.{domain}", 993, "ssl")}


def as_json() -> list[dict]:
    """What the form's script needs to fill fields from an address."""
    return [
        {
            "key": p.key,
            "name": p.name,
            "domains": list(p.domains),
            "smtp": asdict(p.smtp) if p.smtp else None,
            "imap": asdict(p.imap) if p.imap else None,
            "pop3": asdict(p.pop3) if p.pop3 else None,
            "allows_substitution": p.allows_substitution,
            "plus_addressing": p.plus_addressing,
            "substitution_note": "" if p.allows_substitution else NO_SUBSTITUTION.format(name=p.name),
        }
        for p in PROVIDERS
    ]
