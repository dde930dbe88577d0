import uuid

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django.utils.deconstruct import deconstructible
from django.utils.formats import localize
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts.models import Tenant
from servers.addresses import address_errors
from servers.validators import no_control_chars

# A body's size in UTF-8: well below the request body limit
# (DATA_UPLOAD_MAX_MEMORY_SIZE, 4 MiB), so that both bodies, percent-encoded
# by the browser, still reach the form and the error shows next to the field.
BODY_MAX_BYTES = 512 * 1024


@deconstructible
class MaxBytes:
    """Refuses a text longer than `limit` bytes in UTF-8, saying by how much."""

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def __call__(self, value: str) -> None:
        if (size := len(value.encode("utf-8", "surrogatepass"))) > self.limit:
            raise ValidationError(
                _(
                    "This is %(value)s KB; at most %(value2)s KB are allowed. Shorten it, "
                    "or link to large content instead of including it."
                )
                % {"value": localize(round(size / 1024)), "value2": localize(self.limit // 1024)},
                code="max_bytes",
            )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MaxBytes) and other.limit == self.limit


class MailTemplate(models.Model):
    """What a mailing sends. The sender address and name are the optional
    *fixed sender*; whether a letter may carry them depends on the server
    (mailing.sender.resolve_sender)."""

    public_id = models.UUIDField(gettext_lazy("public ID"), default=uuid.uuid4, unique=True, editable=False)
    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, related_name="mail_templates", verbose_name=gettext_lazy("organisation")
    )
    name = models.CharField(gettext_lazy("name"), max_length=120)
    subject = models.CharField(gettext_lazy("subject"), max_length=250, validators=[no_control_chars])
    text_body = models.TextField(gettext_lazy("text body"), validators=[MaxBytes(BODY_MAX_BYTES)])
    html_body = models.TextField(gettext_lazy("HTML body"), blank=True, validators=[MaxBytes(BODY_MAX_BYTES)])
    sender_email = models.EmailField(gettext_lazy("sender address"), blank=True, validators=[no_control_chars])
    sender_name = models.CharField(
        gettext_lazy("sender name"), max_length=100, blank=True, validators=[no_control_chars]
    )
    reply_to = models.EmailField(gettext_lazy("reply-to address"), blank=True, validators=[no_control_chars])
    created_at = models.DateTimeField(gettext_lazy("created"), default=timezone.now)
    updated_at = models.DateTimeField(gettext_lazy("updated"), auto_now=True)

    class Meta:
        verbose_name = gettext_lazy("template")
        verbose_name_plural = gettext_lazy("templates")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        super().clean()
        # The same addresses a server's sender and a contact may have here.
        if errors := address_errors(self, ["sender_email", "reply_to"]):
            raise ValidationError(errors)
