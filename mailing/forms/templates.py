from django import forms
from django.utils.translation import gettext_lazy as _

from servers.validators import no_control_chars, visible_name

from .. import rendering
from ..models import MailTemplate

NO_PLACEHOLDERS = _("Placeholders work in the subject and the bodies only; the sender is the same for every letter.")


class _HeaderFieldMixin:
    """A value that goes into a mail header. Control characters are refused,
    never trimmed away: a stripped "\\r\\n" would hide an injection attempt.
    Only spaces and tabs around the value are trimmed."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.strip = False

    def to_python(self, value: object) -> str:
        return super().to_python(value).strip(" \t")

    def run_validators(self, value: str) -> None:
        # Alone, before the address syntax: the control character is the one thing to fix.
        no_control_chars(value)
        super().run_validators(value)


class HeaderCharField(_HeaderFieldMixin, forms.CharField):
    pass


class HeaderEmailField(_HeaderFieldMixin, forms.EmailField):
    pass


class MailTemplateForm(forms.ModelForm):
    class Meta:
        model = MailTemplate
        fields = ["name", "subject", "text_body", "html_body", "sender_email", "sender_name", "reply_to"]
        field_classes = {
            "subject": HeaderCharField,
            "sender_name": HeaderCharField,
            "sender_email": HeaderEmailField,
            "reply_to": HeaderEmailField,
        }
        labels = {
            "name": _("Name"),
            "subject": _("Subject"),
            "text_body": _("Text"),
            "html_body": _("HTML"),
            "sender_name": _("Sender name"),
            "reply_to": _("Reply-To address"),
        }
        help_texts = {
            "html_body": _("Shown by mail programs that display HTML; the text part is the fallback."),
            "sender_email": _(
                "The fixed sender. Used only by servers that allow sender substitution; "
                "the others send from their own address."
            ),
            "sender_name": _("The name recipients see next to the address."),
            "reply_to": _("Where replies go, if not to the sender."),
        }
        widgets = {
            "text_body": forms.Textarea(attrs={"rows": 12, "spellcheck": "true"}),
            "html_body": forms.Textarea(attrs={"rows": 12, "spellcheck": "false", "class": "code-input"}),
            "sender_email": forms.EmailInput(attrs={"autocomplete": "off"}),
            "reply_to": forms.EmailInput(attrs={"autocomplete": "off"}),
        }

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.known = rendering.known_names(self.instance.tenant)
        for name in ("name", "sender_name"):
            self.fields[name].validators.append(visible_name)
        for name in ("text_body", "html_body"):
            # The model's size limit, already here: a body too large is not
            # checked for placeholders.
            self.fields[name].validators.extend(MailTemplate._meta.get_field(name).validators)

    def clean(self) -> dict:
        data = super().clean()
        sources = {name: data[name] for name in rendering.TEMPLATE_FIELDS if data.get(name)}
        for name, errors in rendering.check_fields(sources, known=self.known).items():
            for error in errors:
                self.add_error(name, error)
        if "{{" in data.get("sender_name", ""):
            self.add_error("sender_name", NO_PLACEHOLDERS)
        return data
