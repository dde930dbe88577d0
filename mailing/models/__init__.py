from .bounces import BounceReport, ReadMessage
from .contacts import Contact, ContactImport, ContactList, CustomField, ImportRejection, Suppression
from .content import MailTemplate
from .limits import UsageBucket
from .mailings import DispatchChain, Letter, Mailing, MailingEvent, MailingServer

__all__ = [
    "BounceReport",
    "Contact",
    "ContactImport",
    "ContactList",
    "CustomField",
    "DispatchChain",
    "ImportRejection",
    "Letter",
    "MailTemplate",
    "Mailing",
    "MailingEvent",
    "MailingServer",
    "ReadMessage",
    "Suppression",
    "UsageBucket",
]  # fmt: skip
