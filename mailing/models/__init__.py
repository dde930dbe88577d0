from .contacts import Contact, ContactImport, ContactList, CustomField, ImportRejection, Suppression
from .content import MailTemplate
from .limits import UsageBucket
from .mailings import Letter, Mailing, MailingEvent, MailingServer

__all__ = [
    "Contact", "ContactImport", "ContactList", "CustomField", "ImportRejection", "Letter", "MailTemplate",
    "Mailing", "MailingEvent", "MailingServer", "Suppression", "UsageBucket",
]  # fmt: skip
