from datetime import datetime

from django import forms
from django.core.exceptions import ValidationError
from django.db.models import Case, Value, When
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.models import Tenant
from accounts.timezones import LocalDateTimeField, zone_label_all_year, zone_of
from servers.models import SmtpServer
from servers.validators import visible_name

from ..mailings import PAST, available_servers
from ..models import ContactList, Mailing, MailTemplate

INTEGER_MAX = 2**63 - 1  # a database's largest integer (a bigint's, SQLite's)


def _to_the_minute(value: datetime) -> datetime:
    return value.replace(second=0, microsecond=0)


class ChoicesField(forms.ModelMultipleChoiceField):
    """Choices by id, where an id beyond the database's integers is not one
    of them: SQLite (development) raised OverflowError binding it in the
    IN of the check, a 500 for a form field; PostgreSQL found no row. (One
    choice is looked up with `=`, which Django answers with no row itself.)"""

    def _check_values(self, value):
        try:
            return super()._check_values(value)
        except OverflowError:
            beyond = next((v for v in map(str, value) if v.isascii() and v.isdigit() and int(v) > INTEGER_MAX), "")
            raise ValidationError(
                self.error_messages["invalid_choice"], code="invalid_choice", params={"value": beyond}
            ) from None


class ServerChoiceField(ChoicesField):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.positions: dict[int, int] = {}  # a server's place in the default order, set by the form

    def label_from_instance(self, obj) -> str:
        owner = _("platform") if obj.is_platform else obj.host or _("internal")
        place = f"{self.positions[obj.pk]}. " if obj.pk in self.positions else ""
        return f"{place}{obj.name} — {obj.sender_email} ({owner})"


class MailingForm(forms.ModelForm):
    lists = ChoicesField(label=_("Lists"), queryset=ContactList.objects.none(), widget=forms.CheckboxSelectMultiple)
    servers = ServerChoiceField(
        label=_("Servers"),
        queryset=None,
        widget=forms.CheckboxSelectMultiple,
        help_text=_(
            "Letters go through the first allowed server until its limit is spent, then the next, in this order."
        ),
    )
    scheduled_at = LocalDateTimeField(
        label=_("Start at"),
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text=_("Optional: start later by itself. Empty: you start it by hand."),
    )

    class Meta:
        model = Mailing
        fields = ["name", "template", "lists", "servers", "scheduled_at"]
        labels = {
            "name": _("Name"),
            "template": _("Template"),
        }

    def __init__(self, *args: object, tenant: Tenant, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.fields["name"].validators.append(visible_name)
        templates = MailTemplate.objects.filter(tenant=tenant)
        self.fields["template"].queryset = templates
        self.fields["template"].empty_label = _("Choose a template…")
        self.fields["lists"].queryset = ContactList.objects.filter(tenant=tenant)
        # The start time is typed and shown in the tenant's zone (a time the
        # clocks show twice is the first of the two: accounts.timezones).
        scheduled = self.fields["scheduled_at"]
        scheduled.zone = zone_of(tenant.time_zone)
        scheduled.help_text = _(
            "Optional: start later by itself, at this time in %(zone)s. Empty: you start it by hand."
        ) % {"zone": zone_label_all_year(tenant.time_zone)}
        servers = available_servers(tenant)
        self.server_order = [s.pk for s in servers]
        # Offered in the order they are tried, numbered.
        place = Case(*[When(pk=pk, then=Value(i)) for i, pk in enumerate(self.server_order)], default=Value(0))
        self.fields["servers"].queryset = SmtpServer.objects.filter(pk__in=self.server_order).order_by(place)
        self.fields["servers"].positions = {pk: i + 1 for i, pk in enumerate(self.server_order)}
        if not self.instance.pk:
            # A new mailing may use every enabled server of the tenant, then the
            # platform's; the unsaved instance's empty m2m must not hide that.
            self.initial["servers"] = self.server_order
            only = list(templates[:2])
            if len(only) == 1 and not self.initial.get("template"):
                self.initial["template"] = only[0].pk
        else:
            self.initial["servers"] = list(self.instance.servers.values_list("pk", flat=True))

    def clean_scheduled_at(self):
        """A time typed in the past is refused here, next to the field, not
        when Schedule is pressed; a draft's stored time that has passed
        since is kept as it is, so that the draft can still be edited."""
        at = self.cleaned_data.get("scheduled_at")
        stored = self.instance.scheduled_at if self.instance.pk else None
        if at is None or at > timezone.now():
            return at
        if stored is None or _to_the_minute(at) != _to_the_minute(stored):  # the field shows minutes
            raise ValidationError(PAST, code="past")
        return stored

    def ordered_servers(self) -> list:
        chosen = {s.pk: s for s in self.cleaned_data["servers"]}
        return [chosen[pk] for pk in self.server_order if pk in chosen]
