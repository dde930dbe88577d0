"""Addresses as they go over SMTP (servers.wire: IDNA domains, SMTPUTF8 for
a local part that is not ASCII), and the forms a report may write them in."""

from contextlib import suppress

import idna

from servers.wire import (
    RecipientNeedsSmtpUtf8,
    SenderNeedsSmtpUtf8,
    SenderSideRefused,
    UnsendableAddress,
    WireAddress,
    ascii_domain,
    check_sender_side,
    wire_address,
)

__all__ = [
    "RecipientNeedsSmtpUtf8",
    "SenderNeedsSmtpUtf8",
    "SenderSideRefused",
    "UnsendableAddress",
    "WireAddress",
    "address_forms",
    "ascii_domain",
    "check_sender_side",
    "wire_address",
]


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
