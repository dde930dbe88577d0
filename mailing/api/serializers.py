"""What the API reads and writes. Output serializers are read-only views
of the models (public ids, never database ids); input serializers check
only shapes and sizes: the services check the rest, as for the pages."""

from datetime import UTC

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.settings import api_settings
from rest_framework.utils import humanize_datetime

from accounts.timezones import instant
from servers.validators import visible_name

from .. import contacts
from ..models import Mailing

# The most keys a contact's `fields` may send: each is one of the
# organisation's fields, and far fewer are defined.
MAX_FIELD_KEYS = 1000


class BoundedListField(serializers.ListField):
    """A list refused for its length before its items are read: DRF reads
    every item first, and a body of four million bad ids (4 MB) held a web
    process for minutes to answer forty megabytes of errors, one an item."""

    def to_internal_value(self, data):
        if self.max_length is not None and isinstance(data, list) and len(data) > self.max_length:
            self.fail("max_length", max_length=self.max_length)
        return super().to_internal_value(data)


class BoundedDictField(serializers.DictField):
    """An object of at most `max_length` keys, refused for their number
    before any value is read (BoundedListField's reason)."""

    default_error_messages = {"max_length": _("Ensure this field has no more than {max_length} keys.")}

    def __init__(self, *, max_length: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.max_length = max_length  # the requests' maxProperties in the schema (schema.BoundedDictSchema)

    def to_internal_value(self, data):
        if isinstance(data, dict) and len(data) > self.max_length:
            self.fail("max_length", max_length=self.max_length)
        return super().to_internal_value(data)


UUIDS = BoundedListField(child=serializers.UUIDField(), max_length=100)


class LocalDateTimeField(serializers.DateTimeField):
    """An ISO 8601 time read as the page's form reads it: with an offset or
    Z as given, without one as a wall-clock time in the organisation's zone
    (the serializer's context["zone"]), a time the clocks skip refused with
    the form's words, not DRF's generic make_aware refusal or an hour off."""

    def enforce_timezone(self, value):
        # DRF's own refusal, with the formats written out (its bare message
        # template showed "{format}").
        formats = getattr(self, "input_formats", api_settings.DATETIME_INPUT_FORMATS)
        invalid = str(self.error_messages["invalid"]).format(format=humanize_datetime.datetime_formats(formats))
        try:
            return instant(value, self.context.get("zone", UTC), invalid=invalid)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from None


class ListIdsField(BoundedListField):
    """A contact's lists by id, both ways: a request names the lists to
    join, an answer names the lists it is in (so the schema shows it in
    both, as the answers carry it)."""

    def to_representation(self, data):
        return [str(contact_list.public_id) for contact_list in data.all()]


class ContactSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="public_id", read_only=True)
    email = serializers.CharField(max_length=254)
    first_name = serializers.CharField(max_length=contacts.MAX_NAME_LENGTH, allow_blank=True, required=False)
    last_name = serializers.CharField(max_length=contacts.MAX_NAME_LENGTH, allow_blank=True, required=False)
    fields = BoundedDictField(
        child=serializers.CharField(max_length=contacts.MAX_VALUE_LENGTH, allow_blank=True),
        max_length=MAX_FIELD_KEYS,
        required=False,
    )
    lists = ListIdsField(child=serializers.UUIDField(), max_length=100, required=False)
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)


class BulkContactSerializer(serializers.Serializer):
    """One row of a bulk upsert (documentation: rows are checked one by
    one by the import, and a bad row is reported, not the request)."""

    email = serializers.CharField()
    first_name = serializers.CharField(max_length=contacts.MAX_NAME_LENGTH, allow_blank=True, required=False)
    last_name = serializers.CharField(max_length=contacts.MAX_NAME_LENGTH, allow_blank=True, required=False)
    fields = serializers.DictField(
        child=serializers.CharField(max_length=contacts.MAX_VALUE_LENGTH, allow_blank=True), required=False
    )


@extend_schema_field(BulkContactSerializer)
class BulkRowField(serializers.JSONField):
    def validate_empty_values(self, data):
        """A null row is a bad row like a string or a number: the import
        rejects it alone (README: a bad row does not stop the others), where
        DRF refused the whole request for it. Not allow_null: the schema's
        row stays an object."""
        if data is None:
            return (False, None)
        return super().validate_empty_values(data)


class BulkUpsertSerializer(serializers.Serializer):
    list = serializers.UUIDField(help_text=_("The list the contacts join (as a CSV import's target list)."))
    contacts = BoundedListField(child=BulkRowField(), min_length=1, max_length=settings.API_BULK_MAX_ROWS)


class RejectionSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text=_("The row's position in `contacts`, from 0."))
    reason = serializers.CharField()


class BulkResultSerializer(serializers.Serializer):
    import_id = serializers.UUIDField()
    rows = serializers.IntegerField()
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    rejected = serializers.IntegerField()
    rejections = RejectionSerializer(many=True)


class ContactListSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="public_id", read_only=True)
    name = serializers.CharField(max_length=120, validators=[visible_name])
    contact_count = serializers.IntegerField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)


class SuppressionSerializer(serializers.Serializer):
    email = serializers.CharField(max_length=254)
    reason = serializers.CharField(read_only=True)
    note = serializers.CharField(max_length=300, allow_blank=True, required=False)
    created_at = serializers.DateTimeField(read_only=True)


class TemplateSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    name = serializers.CharField()
    subject = serializers.CharField()
    sender_email = serializers.CharField()
    sender_name = serializers.CharField()
    reply_to = serializers.CharField()
    text_body = serializers.CharField()
    html_body = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class ProgressSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    queued = serializers.IntegerField()
    sending = serializers.IntegerField()
    deferred = serializers.IntegerField()
    sent = serializers.IntegerField()
    failed = serializers.IntegerField()
    bounced = serializers.IntegerField()


SCHEDULED_AT = _(
    "When it starts by itself once scheduled (POST …/schedule/): ISO 8601, with an offset or Z as given, without "
    "one in the organisation's time zone; a time the clocks skip is refused, one they show twice is the first."
)


class PassedOverSerializer(serializers.Serializer):
    server = serializers.UUIDField()
    reason = serializers.CharField()


class MailingSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="public_id", read_only=True)
    name = serializers.CharField(max_length=150, validators=[visible_name])
    template = serializers.UUIDField()
    lists = BoundedListField(child=serializers.UUIDField(), min_length=1, max_length=100)
    servers = BoundedListField(
        child=serializers.UUIDField(),
        max_length=100,
        required=False,
        help_text=_(
            "The servers it may use, tried in the organisation's order (as on the page). Left out: every server "
            "available."
        ),
    )
    passed_over = PassedOverSerializer(
        many=True,
        read_only=True,
        help_text=_(
            "The servers it goes on without, each with why (its own sender or Reply-To address needs SMTPUTF8, "
            "which they lack); a resume tries them again."
        ),
    )
    status = serializers.CharField(read_only=True)
    preparing = serializers.BooleanField(read_only=True, help_text=_("Its letters are being made after a start."))
    start_error = serializers.CharField(read_only=True)
    letter_count = serializers.IntegerField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    started_at = serializers.DateTimeField(read_only=True, allow_null=True)
    finished_at = serializers.DateTimeField(read_only=True, allow_null=True)
    resume_at = serializers.DateTimeField(
        read_only=True, allow_null=True, help_text=_("While waiting for limits: when sending resumes.")
    )
    wait_reason = serializers.ChoiceField(
        choices=Mailing.WaitReason.values,
        read_only=True,
        allow_null=True,
        help_text=_(
            "While waiting: what for (limits: its servers' limits; rest: its servers resting after refusals "
            "or connection trouble; retry: letters due to be tried again)."
        ),
    )
    scheduled_at = LocalDateTimeField(
        required=False,
        allow_null=True,
        help_text=SCHEDULED_AT,
    )
    progress = ProgressSerializer(read_only=True)


class MailingActionSerializer(serializers.Serializer):
    confirm_rejected = serializers.BooleanField(
        required=False,
        default=False,
        help_text=_("Start even though receivers will reject the letters of some server (DMARC p=reject)."),
    )
    scheduled_at = LocalDateTimeField(
        required=False,
        allow_null=True,
        help_text=_("For schedule: when it starts, read as a mailing's scheduled_at; left out, the time it has."),
    )


class WindowSerializer(serializers.Serializer):
    limit = serializers.IntegerField(allow_null=True)
    used = serializers.IntegerField(allow_null=True)
    left = serializers.IntegerField(allow_null=True)


class ServerSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    platform = serializers.BooleanField()
    enabled = serializers.BooleanField()
    health = serializers.CharField()
    state = serializers.CharField()
    state_label = serializers.CharField()
    left = serializers.IntegerField(allow_null=True, help_text=_("Letters it may take now; null: no limit."))
    resume_at = serializers.DateTimeField(allow_null=True)
    minute = WindowSerializer()
    hour = WindowSerializer()
    day = WindowSerializer()
    quota = WindowSerializer(help_text=_("Your daily quota on a platform server."))


class BounceSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    email = serializers.CharField(source="letter.email")
    kind = serializers.CharField(
        help_text=_(
            "hard: the address does not exist; soft: it could not take the letter for now; refused: not because of "
            "the address (spam, policy, size); complaint: the recipient marked the letter as spam."
        )
    )
    status = serializers.CharField()
    diagnostic = serializers.CharField()
    mailing = serializers.UUIDField(source="letter.mailing.public_id")
    letter = serializers.UUIDField(source="letter.public_id")
    received_at = serializers.DateTimeField()


class UnsubscribeSerializer(serializers.Serializer):
    email = serializers.CharField()
    note = serializers.CharField()
    created_at = serializers.DateTimeField()


def paged(item: type[serializers.Serializer], name: str) -> type[serializers.Serializer]:
    """The schema of a page: results and the next cursor."""
    return type(
        name,
        (serializers.Serializer,),
        {"results": item(many=True), "next_cursor": serializers.CharField(allow_null=True)},
    )
