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

import re
import unicodedata
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
# Alphabets whose letters look alike: a domain label that mixes them is a
# keyboard layout switched mid-word (yandex.ru with a Cyrillic a, U+0430) or a
# look-alike, and no registry allows one. Other scripts may be mixed with
# Latin letters (Japanese registries allow it).
LOOK_ALIKE_ALPHABETS = ("LATIN", "CYRILLIC", "GREEK")
MIXED_ALPHABETS = _(
    "“%(label)s” in the domain mixes letters of different alphabets (“%(letter)s”, U+%(code)s, is not from "
    "the same alphabet as the rest): no registry allows such a name. It is most often a keyboard layout "
    "switched in the middle of a word: type the domain again."
)
# RFC 5321 §4.5.3.1.1 counts octets, with SMTPUTF8 too (RFC 6531 §3.3);
# email-validator counts characters, and only when asked to (strict).
LOCAL_PART_OCTETS = 64
LOCAL_PART_TOO_LONG = _(
    "The part before the @ sign takes %(octets)s bytes in UTF-8 (a Cyrillic letter takes 2, "
    "a Vietnamese letter with its marks up to 3): at most 64 are allowed."
)
# Characters nobody sees that Word, Excel, Outlook and web pages put into
# text (zero-width space, byte order mark, soft hyphen, word joiner,
# directional marks): never part of an address, so an address that is
# stored as checked (a contact's) is stored without them. The zero-width
# joiner and non-joiner are not among them: some scripts' domain names need
# them (IDNA's CONTEXTJ rule), and elsewhere they are refused.
INVISIBLE = re.compile("[\u00ad\u061c\u180e\u200b\u200e\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
INVISIBLE_INSIDE = _(
    "The address has an invisible character (U+%(code)s) at position %(position)s, "
    "often pasted from Word, Excel or a web page: type the address again without it."
)
# An address as mail clients copy a recipient: `Иванов Иван <ivan@x.ru>` or
# `"Ivanov, Ivan" <ivan@x.ru>` (one, the name without brackets or quotes
# inside its quotes). email-validator takes only an ASCII or quoted name.
WITH_NAME = re.compile(r'\s*(?:"[^"]*"|[^"<>]*)\s*<([^<>]*)>\s*')
NAME_GIVEN = _("Write the address alone, without a name or angle brackets: %(address)s.")
SPACE_INSIDE = _(
    "The address has a space (U+%(code)s) at position %(position)s: an address cannot have one. "
    "Remove it, or put each address in a cell of its own."
)


def checked_address(address: str, *, clean: bool = True) -> str:
    """`address` in the form it is stored and compared in (without the
    INVISIBLE characters, the domain lower-cased and IDNA-normalised, the
    local part kept: its case may matter to the mailbox), if this
    installation may mail it or send from it. Raises ValidationError.
    An address given with a name (WITH_NAME) is taken without it.
    `clean=False`, for a value kept as typed: an INVISIBLE character or a
    name is refused instead."""
    if not clean and (found := INVISIBLE.search(address)) is not None:
        raise _odd_character(address, found.start())
    if (with_name := WITH_NAME.fullmatch(address)) is not None:
        if not clean:
            raise ValidationError(str(NAME_GIVEN) % {"address": with_name[1].strip()}, code="invalid")
        address = with_name[1]
    try:
        text = INVISIBLE.sub("", address).strip()
        valid = email_validator.validate_email(text, check_deliverability=False, strict=True)
    except email_validator.EmailNotValidError as exc:
        if (odd := _first_odd(address)) is not None:
            raise _odd_character(address, odd) from exc
        raise ValidationError(_syntax_refusal(str(exc)), code="invalid") from exc
    if (octets := len(valid.local_part.encode())) > LOCAL_PART_OCTETS:
        raise ValidationError(str(LOCAL_PART_TOO_LONG) % {"octets": octets}, code="invalid")
    check_alphabets(valid.domain)
    _check_domain(valid.ascii_domain, shown=valid.domain)
    return valid.normalized


def validate_address(value: str) -> None:
    """checked_address as a Django validator (forms), which keep the value
    as typed."""
    checked_address(value, clean=False)


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
            checked_address(value, clean=False)
        except ValidationError as exc:
            errors[field] = exc.messages
    return errors


def _first_odd(address: str) -> int | None:
    """Where the first space, or character nobody sees that is not cleaned
    away, is inside `address` (not around it: that is stripped)."""
    start, end = len(address) - len(address.lstrip()), len(address.rstrip())
    return next((i for i in range(start, end) if _odd(address[i])), None)


def _odd(char: str) -> bool:
    return unicodedata.category(char) in ("Zs", "Cf", "Cc") and INVISIBLE.match(char) is None


def _odd_character(address: str, index: int) -> ValidationError:
    char = address[index]
    message = SPACE_INSIDE if unicodedata.category(char) == "Zs" else INVISIBLE_INSIDE
    # Worded now, in the language of the request, as _syntax_refusal does.
    return ValidationError(str(message) % {"code": f"{ord(char):04X}", "position": index + 1}, code="invalid")


def _syntax_refusal(library_message: str) -> str:
    for start, refusal in SYNTAX_REFUSALS:
        if library_message.startswith(start):
            return str(refusal)
    return str(NOT_AN_ADDRESS)


def check_alphabets(domain: str) -> None:
    """Refuses a label that mixes LOOK_ALIKE_ALPHABETS, naming its first
    letter that is not from the alphabet most of the domain is written in:
    an address's domain, and a server's host name (servers.rules)."""
    if domain.isascii():
        return
    found = [alphabet for char in domain if (alphabet := _alphabet(char))]
    usual = max(LOOK_ALIKE_ALPHABETS, key=found.count)
    for label in domain.split("."):
        if len({_alphabet(char) for char in label} - {""}) > 1:
            letter = next(char for char in label if _alphabet(char) not in ("", usual))
            params = {"label": label, "letter": letter, "code": f"{ord(letter):04X}"}
            raise ValidationError(str(MIXED_ALPHABETS) % params, code="invalid")


def _alphabet(char: str) -> str:
    """LATIN, CYRILLIC or GREEK for a letter of those, else ""."""
    name = unicodedata.name(char, "").partition(" ")[0]
    return name if name in LOOK_ALIKE_ALPHABETS and char.isalpha() else ""


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
