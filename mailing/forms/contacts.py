"""Forms of the contacts pages. They check shapes; the services in
mailing.contacts and mailing.imports hold the rules."""

from django import forms
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts.models import Tenant
from servers.validators import no_control_chars, visible_name

from .. import contacts
from ..imports import code_pages
from ..imports.limits import FIELD_PREFIX
from ..imports.mapping import check_mapping, guess_target
from ..models import Contact, ContactImport, ContactList, CustomField

CUSTOM_PREFIX = "cf_"
STANDARD_CHOICES = [
    ("", gettext_lazy("Ignore")),
    ("email", gettext_lazy("Email address")),
    ("first_name", gettext_lazy("First name")),
    ("last_name", gettext_lazy("Last name")),
]


class ContactListForm(forms.Form):
    name = forms.CharField(label=gettext_lazy("List name"), max_length=120, validators=[visible_name])


class CustomFieldForm(forms.Form):
    label = forms.CharField(
        label=gettext_lazy("Field name"),
        max_length=100,
        help_text=gettext_lazy("For example: Company, City, Phone."),
        validators=[visible_name],
    )
    key = forms.CharField(
        label=gettext_lazy("Placeholder"),
        max_length=50,
        required=False,
        help_text=gettext_lazy("Used in templates as {{ key }}. Leave empty to make it from the name."),
    )


class ContactForm(forms.Form):
    email = forms.CharField(label=gettext_lazy("Email address"), max_length=254, widget=forms.EmailInput())
    # Names go into subjects; custom values may hold line breaks (bodies).
    first_name = forms.CharField(
        label=gettext_lazy("First name"), max_length=100, required=False, validators=[no_control_chars]
    )
    last_name = forms.CharField(
        label=gettext_lazy("Last name"), max_length=100, required=False, validators=[no_control_chars]
    )
    lists = forms.ModelMultipleChoiceField(
        label=gettext_lazy("Lists"),
        queryset=ContactList.objects.none(),
        to_field_name="public_id",
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )

    def __init__(self, *args: object, tenant: Tenant, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.fields["lists"].queryset = ContactList.objects.filter(tenant=tenant)
        self.custom_fields = list(CustomField.objects.filter(tenant=tenant))
        for cf in self.custom_fields:
            self.fields[CUSTOM_PREFIX + cf.key] = forms.CharField(
                label=cf.label, max_length=1000, required=False, help_text=f"{{{{ {cf.key} }}}}"
            )

    def custom_bound_fields(self) -> list[forms.BoundField]:
        return [self[CUSTOM_PREFIX + cf.key] for cf in self.custom_fields]

    def custom_values(self) -> dict[str, str]:
        return {cf.key: self.cleaned_data.get(CUSTOM_PREFIX + cf.key, "") for cf in self.custom_fields}

    @staticmethod
    def initial_for(contact: Contact) -> dict:
        initial = {
            "email": contact.email,
            "first_name": contact.first_name,
            "last_name": contact.last_name,
            "lists": list(contact.lists.all()),
        }
        initial.update({CUSTOM_PREFIX + k: v for k, v in (contact.fields or {}).items()})
        return initial


class SearchForm(forms.Form):
    q = forms.CharField(label=gettext_lazy("Search"), max_length=200, required=False)


class SuppressionForm(forms.Form):
    email = forms.CharField(label=gettext_lazy("Email address"), max_length=254, widget=forms.EmailInput())
    note = forms.CharField(label=gettext_lazy("Note"), max_length=300, required=False)


class SuppressionRemoveForm(forms.Form):
    email = forms.CharField(label=gettext_lazy("Email address"), max_length=254)


class ImportUploadForm(forms.Form):
    file = forms.FileField(
        label=gettext_lazy("CSV file"),
        help_text=gettext_lazy(
            "UTF-8, UTF-16, Windows-1251, KOI8-R, KOI8-U, CP866, Mac Cyrillic or Windows-1258, comma, "
            "semicolon or tab separated, with a header row."
        ),
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,.txt,text/csv"}),
    )


class ImportMappingForm(forms.Form):
    """One choice per column of the file, and the list the contacts go into."""

    contact_list = forms.ModelChoiceField(
        label=gettext_lazy("Add the contacts to"),
        queryset=ContactList.objects.none(),
        to_field_name="public_id",
        required=False,
        empty_label=gettext_lazy("A new list…"),
    )
    new_list_name = forms.CharField(
        label=gettext_lazy("New list name"), max_length=120, required=False, validators=[visible_name]
    )

    def __init__(self, *args: object, contact_import: ContactImport, **kwargs: object) -> None:
        tenant = contact_import.tenant
        existing = list(CustomField.objects.filter(tenant=tenant))
        # Choices the user made before the file was read again in another encoding.
        kept: dict = kwargs.pop("initial", {})
        taken = {value for key, value in kept.items() if key.startswith("col_")}
        initial = self._guesses(contact_import.header, {cf.key for cf in existing}, taken=taken)
        lists = ContactList.objects.filter(tenant=tenant)
        stem = contact_import.file_name.rsplit(".", 1)[0][:120]
        if stem and not lists.filter(name__iexact=stem).exists():
            initial["new_list_name"] = stem
        super().__init__(*args, initial={**initial, **kept}, **kwargs)
        self.fields["contact_list"].queryset = lists
        self.header = contact_import.header
        choices = self._choices(existing)
        for i, name in enumerate(self.header):
            self.fields[f"col_{i}"] = forms.ChoiceField(
                label=name, required=False, choices=[*choices, ("new", _("New field “%(name)s”") % {"name": name})]
            )

    @staticmethod
    def _guesses(header: list[str], keys: set[str], *, taken: set[str]) -> dict[str, str]:
        """A first mapping to start from; each field offered to one column
        only, and not to one a kept choice already fills."""
        initial: dict[str, str] = {}
        for i, name in enumerate(header):
            target = guess_target(name, keys)
            initial[f"col_{i}"] = "" if target in initial.values() or target in taken else target
        return initial

    @staticmethod
    def _choices(existing: list[CustomField]) -> list:
        if not existing:
            return STANDARD_CHOICES
        custom = [(f"{FIELD_PREFIX}{cf.key}", f"{cf.label} {{{{ {cf.key} }}}}") for cf in existing]
        return [*STANDARD_CHOICES, (_("Custom fields"), custom)]

    def column_fields(self) -> list[forms.BoundField]:
        return [self[f"col_{i}"] for i in range(len(self.header))]

    def columns(self) -> dict[int, str]:
        return {i: self.cleaned_data.get(f"col_{i}") or "" for i in range(len(self.header))}

    def clean(self) -> dict:
        data = super().clean()
        if not data.get("contact_list") and not (data.get("new_list_name") or "").strip():
            self.add_error("new_list_name", _("Name the new list, or choose an existing one."))
        check_mapping({str(i): t for i, t in self.columns().items() if t != "new"} | self._new_keys())
        return data

    def _new_keys(self) -> dict[str, str]:
        """New fields as the keys they will get, so two columns that would
        land in one field are caught here too."""
        new = [i for i, target in self.columns().items() if target == "new"]
        return {str(i): FIELD_PREFIX + contacts.field_key(self.header[i]) for i in new}


class ImportEncodingForm(forms.Form):
    """The encoding to read an upload in, when the detected one shows wrong
    letters: only the code pages the import reads (a codec's name from the
    request never reaches Python's codecs)."""

    encoding = forms.ChoiceField(
        label=gettext_lazy("Encoding"),
        choices=list(code_pages.NAMES.items()),
    )
