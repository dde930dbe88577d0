"""Who a letter is from (DOMAIN.md §3), decided per letter for the server
that sends it; where its replies go; and where its delivery reports go (the
envelope sender)."""

import uuid
from dataclasses import dataclass
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.utils import formataddr
from typing import Protocol

from servers.models import BounceMailbox, SmtpServer
from servers.selectors import ReportRoute, report_routes, tenant_mailbox

from .bounces import tokens


class SenderServer(Protocol):
    sender_email: str
    sender_name: str
    allow_sender_substitution: bool


class SenderTemplate(Protocol):
    sender_email: str
    sender_name: str
    reply_to: str


@dataclass(frozen=True)
class ResolvedSender:
    email: str
    name: str
    reply_to: str
    # True when the template's own address is used (the server allows it).
    substituted: bool


def resolve_sender(server: SenderServer, template: SenderTemplate, *, reply_to: str = "") -> ResolvedSender:
    """`reply_to`: where replies go when the template names no reply-to
    (default_reply_to)."""
    reply_to = template.reply_to or reply_to
    if server.allow_sender_substitution and template.sender_email:
        return ResolvedSender(template.sender_email, template.sender_name, reply_to, True)
    name = template.sender_name or server.sender_name
    return ResolvedSender(server.sender_email, name, reply_to, False)


def readable_from(name: str, email: str) -> str:
    """The From as people read it on a page: a name that is not ASCII as
    itself, not the encoded word that goes out (=?utf-8?b?...?=), and a
    mailbox that is not ASCII (почта@пример.рф), which formataddr refuses."""
    if name.isascii() and email.isascii():
        return formataddr((name, email))
    try:
        return str(Address(display_name=name, addr_spec=email))
    except (ValueError, HeaderParseError):
        return f"{name} <{email}>" if name else email


def default_reply_to(tenant_id: int) -> str:
    """The tenant's bounce mailbox, which receives the replies to its
    mailings as well as the reports (DOMAIN.md §5); empty without one."""
    mailbox = tenant_mailbox(list(BounceMailbox.objects.filter(tenant_id=tenant_id, server=None)))
    return mailbox.address if mailbox else ""


def report_route(server: SmtpServer, tenant_id: int) -> ReportRoute:
    return report_routes(tenant_id, [server])[server.pk]


def batch_routes(server: SmtpServer, tenant_id: int, mailboxes: list[BounceMailbox]) -> tuple[ReportRoute, str]:
    """report_route() and default_reply_to() from the tenant's mailboxes
    (the dispatcher reads them once per batch, mailing.dispatch.batch)."""
    own = tenant_mailbox(mailboxes)
    return report_routes(tenant_id, [server], mailboxes)[server.pk], own.address if own else ""


def envelope_sender(route: ReportRoute, public_id: uuid.UUID) -> str:
    """The letter's MAIL FROM (its Return-Path): the route's address,
    tagged with the letter's token where the mailbox takes plus-addresses,
    so a report names its letter even when it quotes nothing of it."""
    return tokens.address(route.address, public_id) if route.tagged else route.address
