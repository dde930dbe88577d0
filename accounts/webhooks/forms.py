from django import forms
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

from .events import TYPES


class EndpointForm(forms.Form):
    url = forms.CharField(
        label=_("URL"),
        max_length=500,
        widget=forms.URLInput(attrs={"placeholder": "https://crm.example.com/hooks", "inputmode": "url"}),
        help_text=_("We POST each event here as JSON. Redirects are not followed."),
    )
    description = forms.CharField(label=_("Description"), max_length=150, required=False)
    events = forms.MultipleChoiceField(
        label=_("Events"),
        choices=[(name, format_lazy("{} — {}", name, label)) for name, label in TYPES.items()],
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": _("Choose at least one event.")},
    )
