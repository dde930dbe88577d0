import uuid

from django.conf import settings
from django.db import models
from django.db.models import F, Q, QuerySet
from django.db.models.deletion import Collector
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.models import Tenant
from servers import words
from servers.models import SmtpServer
from servers.validators import no_control_chars

from .contacts import Contact, ContactList
from .content import MailTemplate


class Mailing(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", _("Draft")
        SCHEDULED = "scheduled", _("Scheduled")
        ACTIVE = "active", _("Sending")
        WAITING = "waiting", _("Waiting for limits")
        # No server can send without someone's action (all failing,
        # disabled, blocked or with a limit of 0): no time to wait for.
        BLOCKED = "blocked", _("Cannot send")
        PAUSED = "paused", _("Paused")
        COMPLETED = "completed", _("Completed")
        CANCELLED = "cancelled", _("Cancelled")

    public_id = models.UUIDField(_("public ID"), default=uuid.uuid4, unique=True, editable=False)
    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, related_name="mailings", verbose_name=_("organisation"), db_index=False
    )
    name = models.CharField(_("name"), max_length=150)
    # RESTRICT, not PROTECT: a template in use cannot be deleted alone, but
    # deleting the whole tenant takes both (PROTECT would refuse that too).
    template = models.ForeignKey(
        MailTemplate, on_delete=models.RESTRICT, related_name="mailings", verbose_name=_("template")
    )
    lists = models.ManyToManyField(ContactList, related_name="mailings", verbose_name=_("contact lists"))
    servers = models.ManyToManyField(
        SmtpServer, through="MailingServer", related_name="mailings", verbose_name=_("sending servers")
    )
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.DRAFT)
    scheduled_at = models.DateTimeField(_("scheduled for"), null=True, blank=True, help_text=_("Empty: start now."))
    started_at = models.DateTimeField(_("started"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    resume_at = models.DateTimeField(_("resumes at"), null=True, blank=True)  # while waiting for limits

    class WaitReason(models.TextChoices):
        LIMITS = "limits", _("its servers' limits")
        REST = "rest", _("its servers resting")
        RETRY = "retry", _("letters to try again")

    # What resume_at waits for (mailing.dispatch.run.resume_time): the
    # page says it, where "waiting for limits" alone misled. The default
    # stays in the database too, for the previous release's INSERTs while a
    # deploy migrates (tests/ops/test_migration_safety.py).
    wait_reason = models.CharField(
        _("waiting for"),
        max_length=6,
        choices=WaitReason.choices,
        default=WaitReason.LIMITS,
        db_default=WaitReason.LIMITS,
        blank=True,
    )
    # The template as it was at start: later edits of the template do not
    # change a started mailing's letters.
    subject = models.CharField(_("subject"), max_length=250, blank=True, validators=[no_control_chars])
    text_body = models.TextField(_("text body"), blank=True)
    html_body = models.TextField(_("HTML body"), blank=True)
    sender_email = models.EmailField(_("sender address"), blank=True, validators=[no_control_chars])
    sender_name = models.CharField(_("sender name"), max_length=100, blank=True, validators=[no_control_chars])
    reply_to = models.EmailField(_("reply-to address"), blank=True, validators=[no_control_chars])
    # While its letters are being made (a task: mailing.mailings), the
    # letters it will have.
    letter_count = models.PositiveIntegerField(_("letters"), default=0)
    # Start was asked for and a task is making the letters; until they all
    # exist the mailing stays a draft (or scheduled) that nothing can change
    # and the dispatcher does not see.
    preparing_since = models.DateTimeField(_("preparing since"), null=True, blank=True)
    start_error = models.CharField(
        _("why it did not start"), max_length=300, blank=True
    )  # why the last start did not happen
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("created by"),
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    class Meta:
        verbose_name = _("mailing")
        verbose_name_plural = _("mailings")
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["tenant", "status"])]

    def __str__(self) -> str:
        return self.name

    @property
    def is_running(self) -> bool:
        return self.status in RUNNING


# Sending, waiting for limits, or unable to send until someone acts: the
# dispatcher may still send for it (a pause or a cancel stops it).
RUNNING = (Mailing.Status.ACTIVE, Mailing.Status.WAITING, Mailing.Status.BLOCKED)
FINISHED = (Mailing.Status.COMPLETED, Mailing.Status.CANCELLED)


def restrict_unless_finished(collector: Collector, field: models.Field, sub_objs: QuerySet, using: str) -> None:
    """on_delete of MailingServer.server. A server that a mailing yet to
    finish may send through is kept: RESTRICT, so that deleting the whole
    tenant, mailings included, still works where PROTECT would refuse it.
    A finished mailing only loses the link; its letters keep their history
    (Letter.server is SET_NULL). Migrations name this function: keep it here."""
    links = sub_objs.defer(None)  # the collector asked for primary keys only
    finished = Q(mailing__status__in=FINISHED)
    models.CASCADE(collector, field, links.filter(finished), using)
    # With their mailing, which names them in the refusal (str()).
    models.RESTRICT(collector, field, links.exclude(finished).select_related("mailing"), using)


class MailingServer(models.Model):
    """The servers a mailing may use, in the order it tries them."""

    mailing = models.ForeignKey(
        Mailing, on_delete=models.CASCADE, related_name="server_links", verbose_name=_("mailing"), db_index=False
    )
    # The refusal is the deletion's own (RestrictedError, listing these
    # links), so servers.services and the admin need not know mailings.
    server = models.ForeignKey(
        SmtpServer, on_delete=restrict_unless_finished, related_name="mailing_links", verbose_name=_("sending server")
    )
    position = models.PositiveIntegerField(_("position"))
    # Why this mailing goes on without the server (its own international
    # From or Reply-To, which the server cannot carry): in the mailing's
    # organisation's language; empty while the server may send it.
    passed_over = models.CharField(
        _("passed over because"), max_length=300, blank=True, default="", db_default="", editable=False
    )
    # The same as servers.words, worded for each reader: "note" is what the
    # mailing's page says, "reason" the sentence its pause note gives for
    # this server when every server is passed over.
    passed_over_words = models.JSONField(
        _("passed over because (words)"), default=dict, blank=True, db_default={}, editable=False
    )

    class Meta:
        verbose_name_plural = _("mailings using the server")
        ordering = ["position"]
        constraints = [models.UniqueConstraint(fields=["mailing", "server"], name="mailing_server_unique")]
        verbose_name = _("mailing using the server")

    def __str__(self) -> str:
        # What a refused server deletion shows, on the tenant's page and in the admin.
        return f"«{self.mailing.name}» ({self.mailing.get_status_display().lower()})"

    @property
    def passed_over_note(self) -> str:
        """Why the mailing goes on without this server, in the reader's language."""
        return words.shown(self.passed_over_words, "note", self.passed_over) if self.passed_over else ""


class DispatchChain(models.Model):
    """A chain of batches sending a mailing: each task runs one batch and
    queues the next. DISPATCH_CHAINS slots per mailing let that many workers
    send one mailing side by side; a slot whose chain stopped renewing (its
    worker died) is free again after its lease."""

    mailing = models.ForeignKey(
        Mailing, on_delete=models.CASCADE, related_name="chains", verbose_name=_("mailing"), db_index=False
    )
    slot = models.PositiveSmallIntegerField(_("slot"))
    until = models.DateTimeField(_("until"), null=True, blank=True)

    class Meta:
        verbose_name = _("dispatch chain")
        verbose_name_plural = _("dispatch chains")
        constraints = [models.UniqueConstraint(fields=["mailing", "slot"], name="dispatch_chain_unique")]

    def __str__(self) -> str:
        return f"{self.mailing} chain {self.slot}"


class MailingEvent(models.Model):
    """Every state change, with who and when."""

    mailing = models.ForeignKey(Mailing, on_delete=models.CASCADE, related_name="events", verbose_name=_("mailing"))
    from_status = models.CharField(_("previous status"), max_length=10, choices=Mailing.Status.choices)
    to_status = models.CharField(_("new status"), max_length=10, choices=Mailing.Status.choices)
    by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, verbose_name=_("changed by")
    )
    note = models.CharField(_("note"), max_length=300, blank=True)
    # The note as servers.words sentences, worded for each reader: members of
    # an organisation need not share its language. The note above stays, in
    # the organisation's language (rows written before, the admin).
    note_words = models.JSONField(_("note (words)"), default=list, blank=True, db_default=[])
    at = models.DateTimeField(_("when"), default=timezone.now)

    class Meta:
        verbose_name = _("mailing event")
        verbose_name_plural = _("mailing events")
        ordering = ["at", "pk"]

    def __str__(self) -> str:
        return f"{self.mailing}: {self.from_status} → {self.to_status}"

    @property
    def said(self) -> str:
        """The note in the reader's language."""
        return words.shown_sentences(self.note_words, self.note)


class Letter(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        SENDING = "sending", _("Sending")
        SENT = "sent", _("Sent")
        DEFERRED = "deferred", _("Deferred")
        FAILED = "failed", _("Failed")
        BOUNCED = "bounced", _("Bounced")

    # The public id is also the letter's Message-ID local part and the value
    # of its X-Postroute-Letter header, which ties a bounce back to it.
    public_id = models.UUIDField(_("public ID"), default=uuid.uuid4, unique=True, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+", verbose_name=_("organisation"))
    # No index of its own (nor has any foreign key whose column leads another
    # index of its table; tests/test_indexes.py): the indexes below serve every
    # look-up by mailing, and each write would update one index more for
    # nothing (17% of the PostgreSQL CPU of the UPDATE that records a letter).
    mailing = models.ForeignKey(
        Mailing, on_delete=models.CASCADE, related_name="letters", verbose_name=_("mailing"), db_index=False
    )
    contact = models.ForeignKey(
        Contact, on_delete=models.SET_NULL, null=True, blank=True, related_name="letters", verbose_name=_("contact")
    )
    email = models.EmailField(_("email address"), max_length=254)
    # The contact's fields at start: with the mailing's template snapshot
    # they make the exact message (mailing.dispatch.messages.build_message).
    context = models.JSONField(_("context"), default=dict)
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.QUEUED)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    server = models.ForeignKey(
        SmtpServer,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="letters",
        verbose_name=_("sending server"),
    )
    last_reply = models.TextField(_("last reply"), blank=True)
    next_attempt_at = models.DateTimeField(_("next attempt"), null=True, blank=True)
    # The servers that cannot carry this letter (its recipient's mailbox
    # needs SMTPUTF8, or it is above the size they announce), as ",12,34,":
    # their claims skip it, and it goes through another of the mailing's.
    passed_over = models.TextField(_("passed over by"), blank=True, default="", db_default="", editable=False)
    # A worker claims letters by writing its token; a claim it never
    # finishes (the worker died) runs out at lease_until and is taken again.
    claim_token = models.UUIDField(_("claim token"), null=True, blank=True)
    lease_until = models.DateTimeField(_("leased until"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    sent_at = models.DateTimeField(_("sent"), null=True, blank=True)

    class Meta:
        verbose_name = _("letter")
        verbose_name_plural = _("letters")
        ordering = ["pk"]
        indexes = [
            models.Index(fields=["mailing", "status", "id"], name="letter_mailing_status_idx"),
            models.Index(fields=["mailing", "id"], name="letter_mailing_id_idx"),
            # The dashboard's current rate: a mailing's letters sent in the
            # last minutes, a short range scan whatever the mailing's size.
            models.Index(
                fields=["mailing", "sent_at"], name="letter_mailing_sent_at_idx", condition=Q(sent_at__isnull=False)
            ),
            # The letters in flight: a handful per tenant, read by every
            # dashboard poll (its stamp and the servers' in-flight counts).
            models.Index(fields=["tenant", "server"], name="letter_sending_idx", condition=Q(status="sending")),
            # A mailing's letters to an address in any case: the letters an
            # address's suppression withdraws (mailing.withdrawals). Not
            # unique: a start makes one letter per mailbox (mailings.
            # recipients), but mailings started before that may hold two
            # spellings of one, and their history stays. It replaced the
            # unique (mailing, email), which only a start's conflicts read.
            models.Index(F("mailing"), Lower("email"), name="letter_mailing_address_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.email} ({self.status})"


# A letter waiting for a worker: queued, or deferred until a retry.
PENDING_LETTERS = (Letter.Status.QUEUED, Letter.Status.DEFERRED)
