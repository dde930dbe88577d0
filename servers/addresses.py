"""Which mail addresses this installation sends to and from: the one check
behind contacts (the form, the import, suppression), a server's sender
address, a template's fixed sender and reply-to, and a test letter's
recipient. The platform's own users (sign-up, invitations) are not mail
this product sends for a tenant, and keep Django's plain EmailField.

Syntax comes from email-validator (no DNS). Special-use and reserved names
are decided here: a self-hosted company on corp.local mails its own staff
(ALLOW_SPECIAL_USE_DOMAINS), while a hosted platform refuses such names,
because its own default server would look them up in the platform's own
network."""

from collections.abc import Iterable

import email_validator
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

# Names a private network may deliver mail to: RFC 6762's .local, RFC 6761's
# .test and .localhost, RFC 8375's home.arpa, and .internal (reserved by
# ICANN in 2024 for private use).
PRIVATE_USE = ("local", "test", "internal", "localhost", "home.arpa")
# Names no network delivers mail to: RFC 6761's .invalid, RFC 7686's .onion
# (Tor), RFC 9476's .alt, and the rest of .arpa (reverse lookups).
NEVER = ("invalid", "onion", "alt", "arpa")

# email-validator refuses its own list of special-use names on every call,
# even where we allow them, and has no per-call switch; its maintainer's
# documented way is to edit the list (python-email-validator#122). The two
# tuples above take its place, so that this module alone decides.
email_validator.SPECIAL_USE_DOMAIN_NAMES = []

PRIVATE_USE_REFUSED = _(
    "“%(domain)s” is a special-use or reserved name that only a private network can reach; "
    "only a self-hosted installation may use it."
)
NEVER_REFUSED = _("“%(domain)s” is a special-use or reserved name that cannot be used with email.")
HEADER_BREAKS = ("\r", "\n", "\x00")
# email-validator words its refusals in English only: the common ones in the
# reader's language, keyed by how the library's message begins, and any
# other as a plain refusal (never its English on a Russian or Vietnamese page).
SYNTAX_REFUSALS = (
    ("An email address must have an @-sign", _("An email address must have an @ sign.")),
    ("There must be something before the @-sign", _("There must be something before the @ sign.")),
    ("There must be something after the @-sign", _("There must be something after the @ sign.")),
    ("The part after the @-sign is not valid. It should have a period",
     _("The part after the @ sign must have a period, as in example.com.")),
    ("An email address cannot have two periods in a row", _("An email address cannot have two periods in a row.")),
    ("An email address cannot end with a period", _("An email address cannot end with a period.")),
    ("An email address cannot start with a period", _("An email address cannot start with a period.")),
    ("The email address is too long",
     _("The email address is too long: at most 64 characters before the @ sign and 254 in all.")),
    ("The email address contains invalid characters before the @-sign",
     _("The part before the @ sign has characters an email address cannot have.")),
    ("The part after the @-sign contains invalid characters",
     _("The part after the @ sign has characters a domain name cannot have.")),
    ("There can't be anything after the email address", _("There can be nothing after the email address.")),
)  # fmt: skip
NOT_AN_ADDRESS = _("This is not a valid email address.")


def checked_address(address: str) -> str:
    """`address` in the form it is stored and compared in (the domain
    lower-cased and IDNA-normalised, the local part kept: its case may
    matter to the mailbox), if this installation may mail it or send from
    it. Raises ValidationError."""
    try:
        valid = email_validator.validate_email(address.strip(), check_deliverability=False)
    except email_validator.EmailNotValidError as exc:
        raise ValidationError(_syntax_refusal(str(exc)), code="invalid") from exc
    _check_domain(valid.ascii_domain, shown=valid.domain)
    return valid.normalized


def validate_address(value: str) -> None:
    """checked_address as a Django validator (forms)."""
    checked_address(value)


def address_errors(record: object, fields: Iterable[str]) -> dict[str, list[str]]:
    """checked_address on each non-empty address field of `record`, for a
    model's clean(). A value with a line break is left to the header check,
    whose message says what to fix."""
    errors: dict[str, list[str]] = {}
    for field in fields:
        value = getattr(record, field, "") or ""
        if not value or any(char in value for char in HEADER_BREAKS):
            continue
        try:
            checked_address(value)
        except ValidationError as exc:
            errors[field] = exc.messages
    return errors


def _syntax_refusal(library_message: str) -> str:
    for start, refusal in SYNTAX_REFUSALS:
        if library_message.startswith(start):
            return str(refusal)
    return str(NOT_AN_ADDRESS)


def _check_domain(domain: str, *, shown: str) -> None:
    private = _under(domain, PRIVATE_USE)
    if private is not None and not _private_use_allowed(private):
        raise ValidationError(PRIVATE_USE_REFUSED, code="special_use", params={"domain": shown})
    if private is None and _under(domain, NEVER) is not None:
        raise ValidationError(NEVER_REFUSED, code="special_use", params={"domain": shown})


def _under(domain: str, names: tuple[str, ...]) -> str | None:
    """The name of `names` that `domain` is or lies under."""
    return next((name for name in names if domain == name or domain.endswith("." + name)), None)


def _private_use_allowed(name: str) -> bool:
    # .test is what the test suite's addresses use in every mode (email-
    # validator's test_environment); the test settings turn it on.
    return settings.ALLOW_SPECIAL_USE_DOMAINS or (name == "test" and settings.ALLOW_TEST_DOMAIN)
