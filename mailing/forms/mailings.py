from django import forms
from django.utils.translation import gettext_lazy as _

from accounts.models import Tenant
from accounts.timezones import LocalDateTimeField, zone_label, zone_of
from servers.models import SmtpServer

from ..mailings import available_servers
from ..models import ContactList, Mailing, MailTemplate


class ServerChoiceField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj) -> str:
        owner = "platform" if obj.is_platform else obj.host or "internal"
        return f"{obj.name} — {obj.sender_email} ({owner})"


class MailingForm(forms.ModelForm):
    lists = forms.ModelMultipleChoiceField(
        label=_("Lists"), queryset=ContactList.objects.none(), widget=forms.CheckboxSelectMultiple
    )
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
        self.fields["template"].queryset = MailTemplate.objects.filter(tenant=tenant)
        self.fields["lists"].queryset = ContactList.objects.filter(tenant=tenant)
        # The start time is typed and shown in the tenant's zone (a time the
        # clocks show twice is the first of the two: accounts.timezones).
        scheduled = self.fields["scheduled_at"]
        scheduled.zone = zone_of(tenant.time_zone)
        scheduled.help_text = _(
            "Optional: start later by itself, at this time in %(zone)s. Empty: you start it by hand."
        ) % {"zone": zone_label(tenant.time_zone)}
        servers = available_servers(tenant)
        self.fields["servers"].queryset = SmtpServer.objects.filter(pk__in=[s.pk for s in servers])
        self.server_order = [s.pk for s in servers]
        if not self.instance.pk:
            self.initial.setdefault("servers", self.server_order)
        else:
            self.initial["servers"] = list(self.instance.servers.values_list("pk", flat=True))

    def ordered_servers(self) -> list:
        chosen = {s.pk: s for s in self.cleaned_data["servers"]}
        return [chosen[pk] for pk in self.server_order if pk in chosen]
