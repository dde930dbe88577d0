"""Which addresses an installation mails and sends from (servers.addresses):
special-use names by deployment mode, and the setting behind it."""

import subprocess
import sys

import pytest
from django.core.exceptions import ValidationError

from servers.addresses import checked_address, validate_address
from tests.helpers import ROOT, SPECIAL_USE_ADDRESSES, deployment_mode, production_env


@pytest.mark.parametrize("address", [*SPECIAL_USE_ADDRESSES, "hr@office.home.arpa", "Ivan@Mail.Corp.LOCAL"])
def test_a_self_hosted_installation_accepts_private_use_names(settings, address):
    deployment_mode(settings, "self_hosted")
    local, _, domain = address.partition("@")
    assert checked_address(address) == f"{local}@{domain.lower()}"


@pytest.mark.parametrize("address", [*SPECIAL_USE_ADDRESSES, "hr@office.home.arpa", "root@mail.localhost"])
def test_a_hosted_installation_refuses_them_saying_why(settings, address):
    deployment_mode(settings, "saas")
    with pytest.raises(ValidationError) as exc:
        checked_address(address)
    domain = address.partition("@")[2]
    assert exc.value.messages == [
        f"“{domain}” is a special-use or reserved name that only a private network can reach; "
        "only a self-hosted installation may use it."
    ]


@pytest.mark.parametrize("mode", ["saas", "self_hosted"])
@pytest.mark.parametrize("address", ["a@x.invalid", "a@site.onion", "a@name.alt", "a@1.0.10.in-addr.arpa"])
def test_names_no_network_delivers_to_are_refused_in_every_mode(settings, mode, address):
    deployment_mode(settings, mode)
    with pytest.raises(ValidationError, match="cannot be used with email"):
        checked_address(address)


@pytest.mark.parametrize("mode", ["saas", "self_hosted"])
def test_a_name_without_a_dot_is_still_refused_when_self_hosted(settings, mode):
    deployment_mode(settings, mode)
    for address in ("root@localhost", "ivan@corp"):
        with pytest.raises(ValidationError, match="period"):
            checked_address(address)


def test_the_test_suites_allowance_covers_test_only(settings):
    deployment_mode(settings, "saas")
    settings.ALLOW_TEST_DOMAIN = True
    assert checked_address("a@b.test") == "a@b.test"
    with pytest.raises(ValidationError):
        checked_address("ivan@corp.local")


def setting(name: str, **env: str) -> subprocess.CompletedProcess:
    code = f"import django; django.setup(); from django.conf import settings; print(settings.{name})"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=production_env(**env), capture_output=True, text=True
    )


def test_the_setting_follows_the_deployment_mode_and_is_refused_in_saas_production():
    assert setting("ALLOW_SPECIAL_USE_DOMAINS").stdout.strip() == "False"
    assert setting("ALLOW_SPECIAL_USE_DOMAINS", DEPLOYMENT_MODE="self_hosted").stdout.strip() == "True"
    off = setting("ALLOW_SPECIAL_USE_DOMAINS", DEPLOYMENT_MODE="self_hosted", ALLOW_SPECIAL_USE_DOMAINS="0")
    assert off.stdout.strip() == "False"
    refused = setting("ALLOW_SPECIAL_USE_DOMAINS", ALLOW_SPECIAL_USE_DOMAINS="1")
    assert refused.returncode != 0 and "may not be on in SaaS production" in refused.stderr


# Pasted from Word, Excel, Outlook or a web page: characters nobody sees.
INVISIBLE = {
    "\u200b": "zero-width space",
    "\ufeff": "byte order mark",
    "\u00ad": "soft hyphen",
    "\u2060": "word joiner",
    "\u200e": "left-to-right mark",
    "\u202c": "pop directional formatting",
}


@pytest.mark.parametrize("char", INVISIBLE, ids=INVISIBLE.values())
@pytest.mark.parametrize(
    "where", [0, 3, 4, 8, None], ids=["before", "in the mailbox", "before @", "in the domain", "after"]
)
def test_invisible_characters_pasted_into_an_address_are_cleaned(char, where):
    address = "ann@example.com"
    pasted = address + char if where is None else address[:where] + char + address[where:]
    assert checked_address(pasted) == address


@pytest.mark.parametrize(
    "address, position, code",
    [
        ("ann@example\u00a0.com", 12, "00A0"),  # a no-break space from Word
        ("ann\u3000smith@example.com", 4, "3000"),  # an ideographic space
        ("ann\u202f@example.com", 4, "202F"),  # a narrow no-break space
        ("ann@exa\u200dmple.com", 8, "200D"),  # a zero-width joiner: meaningful in some scripts, kept to refuse
    ],
)
def test_a_space_or_joiner_inside_an_address_is_refused_naming_it_and_where(address, position, code):
    with pytest.raises(ValidationError) as exc:
        checked_address(address)
    [message] = exc.value.messages
    assert f"U+{code}" in message and f"position {position}" in message


def test_a_form_that_keeps_the_address_as_typed_refuses_an_invisible_character_naming_it():
    # A server's sender or a test letter's recipient is kept as typed, so
    # it cannot be cleaned: it is refused, with the character named.
    with pytest.raises(ValidationError) as exc:
        validate_address("ann\u200b@example.com")
    assert "U+200B" in exc.value.messages[0] and "position 4" in exc.value.messages[0]


@pytest.mark.parametrize(
    "local, refused",
    [("a" * 64, False), ("a" * 65, True), ("я" * 32, False), ("я" * 33, True), ("ễ" * 21, False), ("ễ" * 22, True)],
    ids=[
        "64 ASCII",
        "65 ASCII",
        "32 Cyrillic (64 octets)",
        "33 Cyrillic",
        "21 Vietnamese (63 octets)",
        "22 Vietnamese",
    ],
)
def test_the_part_before_the_at_sign_is_at_most_64_octets(local, refused):
    """RFC 5321 §4.5.3.1.1, in octets also with SMTPUTF8 (RFC 6531 §3.3):
    a server may refuse a longer mailbox, or cut it and deliver elsewhere."""
    address = f"{local}@example.com"
    if not refused:
        assert checked_address(address) == address
        return
    with pytest.raises(ValidationError) as exc:
        checked_address(address)
    assert "64" in exc.value.messages[0]


@pytest.mark.parametrize(
    "address, letter",
    [
        ("ivan@y\u0430ndex.ru", "\u0430"),  # a Cyrillic а: the layout switched mid-word  # noqa: RUF003
        ("ivan@mail.\u0440y", "\u0440"),  # a Cyrillic р among Latin letters of the zone  # noqa: RUF003
        ("ann@xn--yndex-3ve.ru", "\u0430"),  # the same name, written in IDNA
        ("ivan@\u043f\u0440\u0438\u043c\u0435p.\u0440\u0444", "p"),  # a Latin p in пример
        ("a@\u03bfffice.com", "\u03bf"),  # a Greek omicron
    ],
)
def test_a_domain_label_that_mixes_latin_cyrillic_or_greek_letters_is_refused_naming_the_letter(address, letter):
    """No registry (.ru, .рф, .com, .vn) allows such a name: it is a
    keyboard layout switched mid-word, or a look-alike; every letter to it
    would bounce, and the address be suppressed."""
    with pytest.raises(ValidationError) as exc:
        checked_address(address)
    assert f"“{letter}”, U+{ord(letter):04X}" in exc.value.messages[0]


@pytest.mark.parametrize(
    "address", ["ivan@пример.рф", "a@tiếng-việt.vn", "nguyễn@công-ty.vn", "ivan@example.рф", "a@xn--80ak6aa92e.com"]
)
def test_a_domain_in_one_alphabet_per_label_is_accepted(address):
    checked_address(address)


@pytest.mark.parametrize(
    "pasted",
    [
        "Иванов Иван <ivan@example.com>",  # as Outlook copies a recipient
        '"Ivanov, Ivan" <ivan@example.com>',
        "Nguyễn Văn A <ivan@example.com>",
        "<ivan@example.com>",
        " Sales @ HQ  <ivan@EXAMPLE.com> ",
    ],
)
def test_an_address_pasted_with_its_name_is_taken_without_it(pasted):
    assert checked_address(pasted) == "ivan@example.com"


def test_a_form_that_keeps_the_address_as_typed_refuses_a_name_saying_so():
    with pytest.raises(ValidationError) as exc:
        validate_address("Иванов Иван <ivan@example.com>")
    assert exc.value.messages == ["Write the address alone, without a name or angle brackets: ivan@example.com."]


@pytest.mark.parametrize("pasted", ["Ivan <ivan@example.com>, Petr <petr@example.com>", "Ivan <ivan@example.com"])
def test_two_addresses_or_an_unclosed_bracket_are_refused(pasted):
    with pytest.raises(ValidationError):
        checked_address(pasted)
