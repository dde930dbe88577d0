"""Addresses as they go over SMTP. A domain goes out as IDNA (punycode):
every server accepts `ivan@xn--e1afmkfd.xn--p1ai`. A local part that is not
ASCII (`josé@…`) needs SMTPUTF8 (RFC 6531), which only some servers offer;
without it a recipient's such address cannot be sent to through that
server (that one letter fails), and a sender's (the envelope sender, From
or Reply-To: the same for every letter of a mailing through a server)
takes the server out: no letter could go, and none is the recipient's
fault (SenderNeedsSmtpUtf8). The dispatcher and the connection test both
send through here, so that a test says what the mailings will meet."""

import smtplib
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

import idna
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, gettext_noop

from .words import Words

NO_SMTPUTF8 = gettext_lazy("The server does not accept international addresses (it does not offer SMTPUTF8).")


class UnsendableAddress(ValueError):
    """This address cannot go through this server (the letter fails with
    the message)."""


class RecipientNeedsSmtpUtf8(UnsendableAddress):
    """A recipient's mailbox is not ASCII before its @ and this server does
    not offer SMTPUTF8: another server may carry it."""


class Role(StrEnum):
    """What a sender-side address is to a letter."""

    SENDER = "sender"  # the From (and, without a bounce mailbox, the envelope sender)
    BOUNCE = "bounce"  # the envelope sender: the bounce mailbox, where reports go
    REPLY_TO = "reply_to"


# Whole sentences per role, so that each language words them its own way.
SENDER_NEEDS_SMTPUTF8 = {
    Role.SENDER: gettext_noop(
        "The server does not offer SMTPUTF8, which the sender address %(address)s needs: its part before "
        "the @ is not ASCII. No letter was sent through this server; they wait in the queue."
    ),
    Role.BOUNCE: gettext_noop(
        "The server does not offer SMTPUTF8, which the bounce address %(address)s (the envelope sender, "
        "where delivery reports go) needs: its part before the @ is not ASCII. No letter was sent through "
        "this server; they wait in the queue."
    ),
    Role.REPLY_TO: gettext_noop(
        "The server does not offer SMTPUTF8, which the Reply-To address %(address)s needs: its part before "
        "the @ is not ASCII. No letter was sent through this server; they wait in the queue."
    ),
}
SENDER_NEEDS_SMTPUTF8_HINT = gettext_noop(
    "Change that address to one whose part before the @ is ASCII (Latin letters, digits, dots), or send "
    "through a server that offers SMTPUTF8 (Gmail, Yandex and Mail.ru do); then run Test connection."
)


# An address of the sender side whose domain IDNA 2008 refuses: a bounce
# mailbox's login standing as its address is not checked as one at saving
# (☃.net: IDNA 2003, Django's EmailField, took it).
SENDER_UNSENDABLE = gettext_noop(
    "The address %(address)s, which every letter through this server carries (as its sender, Reply-To or "
    "envelope sender), has a domain that cannot be written as an international name (%(reason)s). No letter "
    "was sent through this server; they wait in the queue."
)
SENDER_UNSENDABLE_HINT = gettext_noop(
    "Change that address (in your bounce mailbox, if it is that one: its Mailbox address field) to one whose "
    "domain is a valid name; then run Test connection."
)


class SenderSideRefused(UnsendableAddress):
    """A sender-side address (`role`) that no letter through this server
    can carry: the server's settings problem (or the tenant's, or the
    mailing's), never a recipient's: no letter fails for it."""

    def __init__(self, address: str, role: Role, words: Words) -> None:
        self.address, self.role, self.words = address, role, words
        super().__init__(str(words))


class SenderNeedsSmtpUtf8(SenderSideRefused):
    """Not ASCII before its @, and the server does not offer SMTPUTF8."""

    def __init__(self, address: str, role: Role) -> None:
        super().__init__(address, role, Words(SENDER_NEEDS_SMTPUTF8[role], {"address": address}))


class SenderUnsendable(SenderSideRefused):
    """Its domain cannot go as IDNA (`reason`), through any server."""

    def __init__(self, address: str, role: Role, reason: str) -> None:
        super().__init__(address, role, Words(SENDER_UNSENDABLE, {"address": address, "reason": reason}))


@dataclass(frozen=True)
class WireAddress:
    text: str  # as it goes into MAIL FROM, RCPT TO and the headers
    utf8: bool  # needs SMTPUTF8


def wire_address(address: str) -> WireAddress:
    local, at, domain = address.rpartition("@")
    if not at or not local:
        raise UnsendableAddress(_("%(address)s is not an address.") % {"address": f"{address!r}"})
    if not domain.isascii():
        try:
            domain = idna_name(domain)
        except idna.IDNAError as exc:
            raise UnsendableAddress(
                _("The domain of %(address)s is not a valid international name (%(exc)s).")
                % {"address": address, "exc": exc}
            ) from exc
    return WireAddress(f"{local}@{domain}", not local.isascii())


def ascii_domain(address: str) -> str:
    """The address with its domain in IDNA, the local part as it is; an
    address whose domain cannot be encoded is returned unchanged (the
    dispatcher refuses it before sending)."""
    try:
        return wire_address(address).text
    except UnsendableAddress:
        return address


def offers_smtputf8(client: smtplib.SMTP) -> bool:
    return bool(client.does_esmtp and client.has_extn("smtputf8"))


def check_sender_side(client: smtplib.SMTP, addresses: Iterable[tuple[str, Role]]) -> bool:
    """Whether the sender-side `addresses` need SMTPUTF8 (one whose local
    part is not ASCII); SenderNeedsSmtpUtf8, naming the first such one and
    its role, where the server does not offer it; SenderUnsendable first
    for one whose domain cannot go as IDNA at all. An empty address (no
    Reply-To) needs nothing; one that is no address is the letter's to
    refuse (wire_address)."""
    addresses = list(addresses)
    for address, role in addresses:
        if reason := idna_refusal(address):
            raise SenderUnsendable(address, role, reason)
    needing = [(address, role) for address, role in addresses if needs_smtputf8(address)]
    if needing and not offers_smtputf8(client):
        raise SenderNeedsSmtpUtf8(*needing[0])
    return bool(needing)


@lru_cache(maxsize=256)
def idna_refusal(address: str) -> str:
    """Why the domain of `address` cannot go as IDNA (wire_address), or ""."""
    domain = address.rpartition("@")[2]
    if domain.isascii():
        return ""
    try:
        idna_name(domain)
    except idna.IDNAError as exc:
        return str(exc)
    return ""


def idna_name(domain: str) -> str:
    """`domain` as it goes on the wire: IDNA 2008 after UTS 46 mapping
    (почта.рф is xn--80a1acny.xn--p1ai); idna.IDNAError when it cannot."""
    return idna.encode(domain, uts46=True).decode("ascii")


def needs_smtputf8(address: str) -> bool:
    """A local part that is not ASCII (the domain goes as IDNA)."""
    return not address.rpartition("@")[0].isascii()


def utf8_options(client: smtplib.SMTP, needed: bool) -> list[str]:
    """MAIL FROM's parameters for a transaction whose addresses or headers
    are not all ASCII (`needed`); UnsendableAddress where the server does
    not offer SMTPUTF8."""
    if not needed:
        return []
    if not offers_smtputf8(client):
        raise RecipientNeedsSmtpUtf8(NO_SMTPUTF8)
    return ["SMTPUTF8", *(["BODY=8BITMIME"] if client.has_extn("8bitmime") else [])]
