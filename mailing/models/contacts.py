import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from accounts.models import Tenant
from servers.validators import no_control_chars


class ContactList(models.Model):
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="contact_lists")
    name = models.CharField(max_length=120)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="contact_list_name_unique")]

    def __str__(self) -> str:
        return self.name


class CustomField(models.Model):
    """A contact field the tenant added (a CSV column mapped to it); its key
    is the placeholder name templates may use: {{ company }}."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="custom_fields")
    key = models.SlugField(max_length=50)  # a valid placeholder name: [a-z_][a-z0-9_]*
    label = models.CharField(max_length=100)

    class Meta:
        ordering = ["key"]
        constraints = [models.UniqueConstraint(fields=["tenant", "key"], name="custom_field_key_unique")]

    def __str__(self) -> str:
        return self.key


class Contact(models.Model):
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="contacts")
    # Normalised with email-validator: domain lower-cased, local part kept.
    # The To header: no control characters, even in a quoted local part.
    email = models.EmailField(max_length=254, validators=[no_control_chars])
    # Names reach the subject of letters: no control characters. Custom
    # field values may hold line breaks (for bodies); in a subject they
    # become spaces (mailing.rendering).
    first_name = models.CharField(max_length=100, blank=True, validators=[no_control_chars])
    last_name = models.CharField(max_length=100, blank=True, validators=[no_control_chars])
    fields = models.JSONField(default=dict, blank=True)  # custom field key -> string value
    lists = models.ManyToManyField(ContactList, related_name="contacts", blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
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


class Suppression(models.Model):
    """Addresses that never receive a letter from this tenant."""

    class Reason(models.TextChoices):
        UNSUBSCRIBED = "unsubscribed", _("Unsubscribed")
        HARD_BOUNCE = "hard_bounce", _("Hard bounce")
        SOFT_BOUNCES = "soft_bounces", _("Repeated soft bounces")
        MANUAL = "manual", _("Added by hand")

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="suppressions")
    email = models.EmailField(max_length=254)
    reason = models.CharField(max_length=20, choices=Reason.choices)
    note = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["tenant", "email"], name="suppression_email_unique")]

    def __str__(self) -> str:
        return f"{self.email} ({self.reason})"


class ContactImport(models.Model):
    class Status(models.TextChoices):
        UPLOADED = "uploaded", _("Waiting for the column mapping")
        QUEUED = "queued", _("Queued")
        RUNNING = "running", _("Importing")
        DONE = "done", _("Done")
        FAILED = "failed", _("Failed")

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="contact_imports")
    contact_list = models.ForeignKey(ContactList, on_delete=models.SET_NULL, null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    file_name = models.CharField(max_length=255)
    file_path = models.CharField(max_length=500)  # under IMPORTS_DIR; deleted when the import ends
    file_size = models.PositiveBigIntegerField(default=0)
    encoding = models.CharField(max_length=20, blank=True)
    delimiter = models.CharField(max_length=1, blank=True)
    header = models.JSONField(default=list)
    mapping = models.JSONField(default=dict)  # column index (str) -> "email" | "first_name" | ... | "field:<key>" | ""
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.UPLOADED)
    bytes_read = models.PositiveBigIntegerField(default=0)
    rows_seen = models.PositiveIntegerField(default=0)
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.file_name


class ImportRejection(models.Model):
    contact_import = models.ForeignKey(ContactImport, on_delete=models.CASCADE, related_name="rejections")
    line = models.PositiveIntegerField()
    reason = models.CharField(max_length=300)
    raw = models.TextField(blank=True)  # the row as it was, for the downloadable CSV

    class Meta:
        ordering = ["line"]
        indexes = [models.Index(fields=["contact_import", "line"], name="import_rejection_line_idx")]

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"
