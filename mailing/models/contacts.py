import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, OuterRef, Value
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from accounts.models import Tenant
from servers.validators import no_control_chars


class ContactList(models.Model):
    public_id = models.UUIDField(_("public ID"), default=uuid.uuid4, unique=True, editable=False)
    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, related_name="contact_lists", verbose_name=_("organisation"), db_index=False
    )
    name = models.CharField(_("name"), max_length=120)
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    class Meta:
        verbose_name = _("contact list")
        verbose_name_plural = _("contact lists")
        ordering = ["name"]
        # "Clients" and "clients" are one name: the database says so, not
        # only mailing.contacts' check, which two racing requests both pass.
        constraints = [models.UniqueConstraint(F("tenant"), Lower("name"), name="contact_list_name_any_case_unique")]

    def __str__(self) -> str:
        return self.name


class CustomField(models.Model):
    """A contact field the tenant added (a CSV column mapped to it); its key
    is the placeholder name templates may use: {{ company }}."""

    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, related_name="custom_fields", verbose_name=_("organisation"), db_index=False
    )
    key = models.SlugField(_("placeholder"), max_length=50)  # a valid placeholder name: [a-z_][a-z0-9_]*
    label = models.CharField(_("label"), max_length=100)

    class Meta:
        verbose_name = _("custom field")
        verbose_name_plural = _("custom fields")
        ordering = ["key"]
        constraints = [models.UniqueConstraint(fields=["tenant", "key"], name="custom_field_key_unique")]

    def __str__(self) -> str:
        return self.key


class Contact(models.Model):
    public_id = models.UUIDField(_("public ID"), default=uuid.uuid4, unique=True, editable=False)
    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, related_name="contacts", verbose_name=_("organisation"), db_index=False
    )
    # Normalised with email-validator: domain lower-cased, local part kept.
    # The To header: no control characters, even in a quoted local part.
    email = models.EmailField(_("email address"), max_length=254, validators=[no_control_chars])
    # Names reach the subject of letters: no control characters. Custom
    # field values may hold line breaks (for bodies); in a subject they
    # become spaces (mailing.rendering).
    first_name = models.CharField(_("first name"), max_length=100, blank=True, validators=[no_control_chars])
    last_name = models.CharField(_("last name"), max_length=100, blank=True, validators=[no_control_chars])
    fields = models.JSONField(_("custom fields"), default=dict, blank=True)  # custom field key -> string value
    lists = models.ManyToManyField(ContactList, related_name="contacts", blank=True, verbose_name=_("contact lists"))
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("contact")
        verbose_name_plural = _("contacts")
        ordering = ["email"]
        constraints = [models.UniqueConstraint(fields=["tenant", "email"], name="contact_email_unique")]

    def __str__(self) -> str:
        return self.email

    def clean(self) -> None:
        # PostgreSQL cannot store a NUL; the form and the import refuse or
        # strip it already, this keeps every other path from reaching it.
        # (The names' validator refuses it with the other controls.)
        if any("\x00" in str(value) for value in (self.fields or {}).values()):
            raise ValidationError({"fields": gettext("A NUL character is not allowed.")})


class SuppressionQuerySet(models.QuerySet):
    def of(self, tenant_id: int, email: "str | models.Expression | OuterRef") -> "SuppressionQuerySet":
        """The tenant's suppressions of `email` (an address, or an
        expression such as OuterRef("email")) in any case: receivers read
        the part before the @ without regard to case (RFC 5321 lets them
        not; Gmail, Yandex, Mail.ru, Outlook all do), so Ann@ who
        unsubscribed is ann@, and a list that writes her Ann@ must not mail
        her again. Compared over the index on the lower case (Meta)."""
        value = Value(email) if isinstance(email, str) else email
        return self.filter(tenant_id=tenant_id).annotate(key=Lower("email")).filter(key=Lower(value))


class Suppression(models.Model):
    """Addresses that never receive a letter from this tenant."""

    class Reason(models.TextChoices):
        UNSUBSCRIBED = "unsubscribed", _("Unsubscribed")
        HARD_BOUNCE = "hard_bounce", _("Hard bounce")
        SOFT_BOUNCES = "soft_bounces", _("Repeated soft bounces")
        COMPLAINT = "complaint", _("Complaint (marked as spam)")
        MANUAL = "manual", _("Added by hand")

    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, related_name="suppressions", verbose_name=_("organisation"), db_index=False
    )
    email = models.EmailField(_("email address"), max_length=254)
    reason = models.CharField(_("reason"), max_length=20, choices=Reason.choices)
    note = models.CharField(_("note"), max_length=300, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    objects = SuppressionQuerySet.as_manager()

    class Meta:
        verbose_name = _("suppressed address")
        verbose_name_plural = _("suppressed addresses")
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["tenant", "email"], name="suppression_email_unique")]
        # A suppression holds for the address in any case (objects.of).
        indexes = [models.Index(F("tenant"), Lower("email"), name="suppression_email_any_case")]

    def __str__(self) -> str:
        return f"{self.email} ({self.reason})"


class ContactImport(models.Model):
    class Status(models.TextChoices):
        UPLOADED = "uploaded", _("Waiting for the column mapping")
        QUEUED = "queued", _("Queued")
        RUNNING = "running", _("Importing")
        DONE = "done", _("Done")
        FAILED = "failed", _("Failed")

    public_id = models.UUIDField(_("public ID"), default=uuid.uuid4, unique=True, editable=False)
    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, related_name="contact_imports", verbose_name=_("organisation")
    )
    contact_list = models.ForeignKey(
        ContactList, on_delete=models.SET_NULL, null=True, blank=True, verbose_name=_("contact list")
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+", verbose_name=_("created by")
    )
    file_name = models.CharField(_("file name"), max_length=255)
    file_path = models.CharField(_("file path"), max_length=500)  # under IMPORTS_DIR; deleted when the import ends
    file_size = models.PositiveBigIntegerField(_("file size"), default=0)
    encoding = models.CharField(_("encoding"), max_length=20, blank=True)
    delimiter = models.CharField(_("delimiter"), max_length=1, blank=True)
    header = models.JSONField(_("header row"), default=list)
    mapping = models.JSONField(
        _("column mapping"), default=dict
    )  # column index (str) -> "email" | "first_name" | ... | "field:<key>" | ""
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.UPLOADED)
    bytes_read = models.PositiveBigIntegerField(_("bytes read"), default=0)
    rows_seen = models.PositiveIntegerField(_("rows read"), default=0)
    created = models.PositiveIntegerField(_("contacts created"), default=0)
    updated = models.PositiveIntegerField(_("contacts updated"), default=0)
    rejected = models.PositiveIntegerField(_("rows rejected"), default=0)
    error = models.TextField(_("error"), blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)

    class Meta:
        verbose_name = _("contact import")
        verbose_name_plural = _("contact imports")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.file_name


class ImportRejection(models.Model):
    contact_import = models.ForeignKey(
        ContactImport,
        on_delete=models.CASCADE,
        related_name="rejections",
        verbose_name=_("contact import"),
        db_index=False,
    )
    line = models.PositiveIntegerField(_("line"))
    reason = models.CharField(_("reason"), max_length=300)
    raw = models.TextField(_("row as read"), blank=True)  # the row as it was, for the downloadable CSV

    class Meta:
        verbose_name = _("rejected import row")
        verbose_name_plural = _("rejected import rows")
        ordering = ["line"]
        indexes = [models.Index(fields=["contact_import", "line"], name="import_rejection_line_idx")]

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"
