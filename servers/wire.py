"""Addresses as they go over SMTP. A domain goes out as IDNA (punycode):
every server accepts `ivan@xn--e1afmkfd.xn--p1ai`. A local part that is not
ASCII (`josé@…`) needs SMTPUTF8 (RFC 6531), which only some servers offer;
without it that one letter cannot be sent through that server. The
dispatcher and the connection test both send through here, so that a test
says what the mailings will meet."""

import smtplib
from dataclasses import dataclass

import idna
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

NO_SMTPUTF8 = gettext_lazy("The server does not accept international addresses (it does not offer SMTPUTF8).")


class UnsendableAddress(ValueError):
    """This address cannot go through this server (the letter fails with
    the message)."""


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
            domain = idna.encode(domain, uts46=True).decode("ascii")
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


def utf8_options(client: smtplib.SMTP, needed: bool) -> list[str]:
    """MAIL FROM's parameters for a transaction whose addresses or headers
    are not all ASCII (`needed`); UnsendableAddress where the server does
    not offer SMTPUTF8."""
    if not needed:
        return []
    if not (client.does_esmtp and client.has_extn("smtputf8")):
        raise UnsendableAddress(NO_SMTPUTF8)
    return ["SMTPUTF8", *(["BODY=8BITMIME"] if client.has_extn("8bitmime") else [])]
