from .bounces import BounceReport, ReadMessage
from .contacts import Contact, ContactImport, ContactList, CustomField, ImportRejection, Suppression
from .content import MailTemplate
from .limits import SlotWait, UsageBucket
from .mailings import PENDING_LETTERS, RUNNING, DispatchChain, Letter, Mailing, MailingEvent, MailingServer

__all__ = [
    "PENDING_LETTERS",
    "RUNNING",
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
    "SlotWait",
    "Suppression",
    "UsageBucket",
]  # fmt: skip
