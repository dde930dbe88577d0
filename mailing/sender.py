"""Who a letter is from (DOMAIN.md §3), decided per letter for the server
that sends it."""

from dataclasses import dataclass
from typing import Protocol


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


def resolve_sender(server: SenderServer, template: SenderTemplate) -> ResolvedSender:
    if server.allow_sender_substitution and template.sender_email:
        return ResolvedSender(template.sender_email, template.sender_name, template.reply_to, True)
    name = template.sender_name or server.sender_name
    return ResolvedSender(server.sender_email, name, template.reply_to, False)
