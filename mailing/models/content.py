import uuid

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from accounts.models import Tenant
from servers.addresses import address_errors
from servers.validators import no_control_chars


class MailTemplate(models.Model):
    """What a mailing sends. The sender address and name are the optional
    *fixed sender*; whether a letter may carry them depends on the server
    (mailing.sender.resolve_sender)."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="mail_templates")
    name = models.CharField(max_length=120)
    subject = models.CharField(max_length=250, validators=[no_control_chars])
    text_body = models.TextField()
    html_body = models.TextField(blank=True)
    sender_email = models.EmailField("sender address", blank=True, validators=[no_control_chars])
    sender_name = models.CharField(max_length=100, blank=True, validators=[no_control_chars])
    reply_to = models.EmailField(blank=True, validators=[no_control_chars])
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        super().clean()
        # The same addresses a server's sender and a contact may have here.
        if errors := address_errors(self, ["sender_email", "reply_to"]):
            raise ValidationError(errors)
