"""Reads for the tenant's home page."""

from dataclasses import dataclass

from .models import Tenant


@dataclass(frozen=True)
class ChecklistItem:
    key: str
    title: str
    text: str
    done: bool
    url_name: str | None


def getting_started(tenant: Tenant) -> list[ChecklistItem]:
    # Each app answers for its own data; the items tick as that data appears.
    from mailing import selectors as mailing
    from servers import selectors as servers

    return [
        ChecklistItem(
            "server",
            "Add a sending server",
            "Connect a mailbox you own (Yandex, Mail.ru, Gmail, your company server) with its limits.",
            servers.has_own_server(tenant),
            "servers:list",
        ),
        ChecklistItem(
            "template",
            "Create a template",
            "Write the subject and body, with a fixed or substituted sender.",
            mailing.has_template(tenant),
            "templates:list",
        ),
        ChecklistItem(
            "contacts",
            "Import contacts",
            "Upload a CSV of the people you write to.",
            mailing.has_contacts(tenant),
            "contacts:import_upload",
        ),
        ChecklistItem(
            "mailing",
            "Send a first mailing",
            "Pick a template and a list, check the senders, and start.",
            mailing.has_started_mailing(tenant),
            "mailings:new",
        ),
    ]
