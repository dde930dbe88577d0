import uuid

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.models import Tenant
from servers.models import BounceMailbox

from .mailings import Letter


class BounceReport(models.Model):
    """One message from a bounce mailbox that Postroute understood: a
    delivery report (hard, soft or refused), or an auto-reply that is kept
    but not counted. `letter` is empty when nothing of this tenant matched:
    the report is *unmatched*. A report tied to its letter only by the
    recipient and the time (anyone can write one) is *unconfirmed*: both
    are shown to the tenant and never acted on."""

    class Kind(models.TextChoices):
        HARD = "hard", _("Hard bounce")
        SOFT = "soft", _("Soft bounce")
        # The letter failed, but not because of the address: a policy, spam
        # or content refusal, our server blocked, a message too big.
        REFUSED = "refused", _("Refused (not the address)")
        # A feedback loop's report (RFC 5965 ARF, Mail.ru's and Yandex's FBL):
        # the letter arrived and its recipient marked it as spam.
        COMPLAINT = "complaint", _("Complaint (marked as spam)")
        AUTO_REPLY = "auto_reply", _("Auto-reply")
        UNKNOWN = "unknown", _("Unreadable report")

    class MatchedBy(models.TextChoices):
        HEADER = "header", _("X-Postroute-Letter header")
        MESSAGE_ID = "message_id", _("Message-ID")
        TOKEN = "token", _("Envelope token")
        RECIPIENT = "recipient", _("Recipient and sending time only (unconfirmed)")
        NONE = "", _("Not matched")

    # What Postroute itself put on the letter: only these tie a report to
    # it firmly enough to act on.
    CONFIRMING = (MatchedBy.HEADER, MatchedBy.MESSAGE_ID, MatchedBy.TOKEN)

    public_id = models.UUIDField(_("public ID"), default=uuid.uuid4, unique=True, editable=False)
    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, related_name="bounce_reports", verbose_name=_("organisation"), db_index=False
    )
    mailbox = models.ForeignKey(
        BounceMailbox,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="bounce_reports",
        verbose_name=_("bounce mailbox"),
        db_index=False,
    )
    # Where the message was read: "imap:<folder>:<uidvalidity>:<uid>" or
    # "pop3:<uidl>". Unique per mailbox, so a message is never counted twice.
    # The letter came back, not delivered (mailing.bounces.parser): a soft
    # one too marks its letter bounced, and keeps the address. The default
    # stays in the database for the previous release's INSERTs.
    returned = models.BooleanField(_("returned"), default=False, db_default=False)
    source_key = models.CharField(_("source key"), max_length=400)
    letter = models.ForeignKey(
        Letter,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="bounce_reports",
        verbose_name=_("letter"),
    )
    kind = models.CharField(_("type"), max_length=10, choices=Kind.choices)
    matched_by = models.CharField(_("matched by"), max_length=10, choices=MatchedBy.choices, blank=True)
    recipient = models.CharField(_("recipient"), max_length=254, blank=True)
    status = models.CharField(_("status code"), max_length=12, blank=True)  # enhanced code, e.g. 5.1.1
    diagnostic = models.TextField(_("diagnostic"), blank=True)
    message_id = models.CharField(_("Message-ID"), max_length=255, blank=True)  # the report's own Message-ID
    sender = models.CharField(_("report's sender"), max_length=300, blank=True)
    subject = models.CharField(_("report's subject"), max_length=300, blank=True)
    headers_excerpt = models.TextField(_("headers excerpt"), blank=True)
    received_at = models.DateTimeField(_("received"), default=timezone.now)
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    class Meta:
        verbose_name = _("bounce report")
        verbose_name_plural = _("bounce reports")
        ordering = ["-received_at", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["mailbox", "source_key"], name="bounce_report_source_unique"),
        ]
        indexes = [
            models.Index(fields=["tenant", "message_id"], name="bounce_report_message_id_idx"),
            # The soft-bounce window of one address.
            models.Index(fields=["tenant", "recipient", "received_at"], name="bounce_report_recipient_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.recipient or '?'} {self.status}".strip()

    @property
    def is_bounce(self) -> bool:
        return self.kind in (self.Kind.HARD, self.Kind.SOFT, self.Kind.REFUSED)

    @property
    def is_confirmed(self) -> bool:
        return self.letter_id is not None and self.matched_by in self.CONFIRMING

    @property
    def is_unconfirmed(self) -> bool:
        return self.letter_id is not None and not self.is_confirmed

    @property
    def reason(self) -> str:
        return " ".join(p for p in (self.status, self.diagnostic) if p)


class ReadMessage(models.Model):
    """A POP3 message already read, by its UIDL: POP3 has no flags or
    folders, so this is how a message left on the server is not read again."""

    mailbox = models.ForeignKey(
        BounceMailbox,
        on_delete=models.CASCADE,
        related_name="read_messages",
        verbose_name=_("bounce mailbox"),
        db_index=False,
    )
    uidl = models.CharField(_("UIDL"), max_length=100)
    is_report = models.BooleanField(_("is a report"), default=False)
    read_at = models.DateTimeField(_("read"), default=timezone.now)

    class Meta:
        verbose_name = _("read message")
        verbose_name_plural = _("read messages")
        constraints = [models.UniqueConstraint(fields=["mailbox", "uidl"], name="read_message_uidl_unique")]

    def __str__(self) -> str:
        return self.uidl
