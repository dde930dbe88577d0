from .bounces import BounceReport, ReadMessage
from .contacts import Contact, ContactImport, ContactList, CustomField, ImportRejection, Suppression
from .content import MailTemplate
from .limits import SlotWait, UsageBucket
from .mailings import RUNNING, DispatchChain, Letter, Mailing, MailingEvent, MailingServer

__all__ = [
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
