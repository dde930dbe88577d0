"""Addresses as they go over SMTP. A domain goes out as IDNA (punycode):
every server accepts `ivan@xn--e1afmkfd.xn--p1ai`. A local part that is not
ASCII (`josé@…`) needs SMTPUTF8 (RFC 6531), which only some servers offer;
without it that one letter cannot be sent through that server."""

from contextlib import suppress
from dataclasses import dataclass

import idna
from django.utils.translation import gettext as _


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


def address_forms(address: str) -> set[str]:
    """The ways a report may write an address we sent to: as given, with
    its domain in IDNA (as it went out) and in Unicode (as it was imported),
    so that either finds the letter stored with the other. A domain that is
    not a valid international name has only the forms it can take."""
    forms = {address, ascii_domain(address)}
    local, at, domain = address.rpartition("@")
    if at:
        with suppress(idna.IDNAError):
            forms.add(f"{local}@{idna.decode(domain, uts46=True)}")
    return forms
