from django import forms
from django.conf import settings

from . import presets, rules
from .addresses import validate_address
from .models import BounceMailbox, SmtpServer
from .validators import no_control_chars

# Long enough for any mailbox or app password, short enough for one AUTH line.
PASSWORD_MAX_LENGTH = 1024
HOST_CHANGED = "The server name changed: type the password again. A stored password never goes to a new host."


def _refuse_controls(form: forms.ModelForm, names: tuple[str, ...]) -> None:
    """The header-safety rule on the form's own fields, so that the error
    stands next to the field before any other check (the model's clean()
    applies it again for the admin and the shell)."""
    for name in names:
        if name in form.fields:
            form.fields[name].validators.append(no_control_chars)


class _PasswordFormMixin:
    """The password is never rendered back. Empty on edit keeps the stored
    one, unless the host changed (a stolen session must not be able to send
    a stored password to a host of its choosing)."""

    instance: SmtpServer | BounceMailbox
    cleaned_data: dict

    def _setup_password(self) -> None:
        field = self.fields["password"]
        if self.instance.pk and self.instance.has_password:
            field.help_text = "A password is stored. Leave empty to keep it."

    def new_password(self) -> str | None:
        """The password to store, or None to keep the stored one."""
        return self.cleaned_data.get("password") or (None if self.instance.pk else "")

    def _check_host_change(self) -> None:
        host = (self.cleaned_data.get("host") or "").strip().lower()
        original = (self.initial.get("host") or "").strip().lower()
        if (
            self.instance.pk
            and self.instance.has_password
            and host != original
            and not self.cleaned_data.get("password")
        ):
            self.add_error("password", HOST_CHANGED)


class SmtpServerForm(_PasswordFormMixin, forms.ModelForm):
    password = forms.CharField(
        label="SMTP password",
        required=False,
        strip=False,
        max_length=PASSWORD_MAX_LENGTH,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )
    accept_warning = forms.BooleanField(label="I know; save these port and security settings anyway", required=False)

    class Meta:
        model = SmtpServer
        fields = [
            "name", "kind", "sender_email", "sender_name", "host", "port", "security", "login", "password",
            "max_per_minute", "max_per_hour", "max_per_day", "allow_sender_substitution", "verify_tls", "enabled",
        ]  # fmt: skip
        widgets = {
            "sender_email": forms.EmailInput(attrs={"autocomplete": "off", "data-autofill": "smtp"}),
        }

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self._setup_password()
        _refuse_controls(self, rules.HEADER_FIELDS)
        self.warning: str | None = None
        if rules.is_saas():
            # SaaS tenants have neither internal servers nor unverified TLS.
            del self.fields["kind"]
            del self.fields["verify_tls"]

    def clean(self) -> dict:
        data = super().clean()
        self._check_host_change()
        if rules.is_saas():
            # What the SaaS form means, whatever the record said before (edited
            # behind the form's back, or made before a switch to SaaS). A rule
            # broken on a field the form does not show would otherwise be an
            # error Django cannot place: a crash instead of a page.
            self.instance.kind = SmtpServer.Kind.EXTERNAL
            self.instance.verify_tls = True
        kind = data.get("kind", SmtpServer.Kind.EXTERNAL)
        if kind == SmtpServer.Kind.EXTERNAL:
            self.warning = rules.port_security_warning(data.get("port"), data.get("security", ""))
            if self.warning and not data.get("accept_warning"):
                self.add_error("accept_warning", self.warning + " Tick the box to keep them.")
        provider = presets.for_host(data.get("host") or "") or presets.for_email(data.get("sender_email") or "")
        if data.get("allow_sender_substitution") and provider and not provider.allows_substitution:
            self.add_error("allow_sender_substitution", presets.NO_SUBSTITUTION.format(name=provider.name))
        return data


class BounceMailboxForm(_PasswordFormMixin, forms.ModelForm):
    password = forms.CharField(
        required=False,
        strip=False,
        max_length=PASSWORD_MAX_LENGTH,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )
    accept_warning = forms.BooleanField(label="I know; save these port and security settings anyway", required=False)

    class Meta:
        model = BounceMailbox
        fields = [
            "email", "protocol", "host", "port", "security", "login", "password", "folder", "verify_tls",
            "delete_after_processing", "enabled",
        ]  # fmt: skip
        widgets = {"email": forms.EmailInput(attrs={"autocomplete": "off", "data-autofill": "imap"})}

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self._setup_password()
        _refuse_controls(self, rules.MAILBOX_HEADER_FIELDS)
        self.warning: str | None = None
        # Older clients (and the API-like posts in tests) send no protocol: IMAP.
        self.fields["protocol"].required = False
        if settings.DEPLOYMENT_MODE == "saas":
            del self.fields["verify_tls"]

    def clean_protocol(self) -> str:
        return self.cleaned_data.get("protocol") or self.instance.protocol or BounceMailbox.Protocol.IMAP

    def clean(self) -> dict:
        data = super().clean()
        self._check_host_change()
        if rules.is_saas():
            self.instance.verify_tls = True  # see SmtpServerForm.clean
        self.warning = rules.port_security_warning(data.get("port"), data.get("security", ""))
        if self.warning and not data.get("accept_warning"):
            self.add_error("accept_warning", self.warning + " Tick the box to keep them.")
        return data


class TestForm(forms.Form):
    send_to = forms.EmailField(
        label="Also send a test letter to",
        required=False,
        help_text="Optional: an address you can read.",
        validators=[validate_address],  # a recipient like any contact
    )
