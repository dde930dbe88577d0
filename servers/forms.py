import json

from django import forms
from django.conf import settings
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from . import presets, rules
from .addresses import validate_address
from .models import BounceMailbox, Security, SmtpServer
from .services import BounceReading
from .validators import no_control_chars, no_line_breaks, visible_name

# Long enough for any mailbox or app password, short enough for one AUTH line.
PASSWORD_MAX_LENGTH = 1024
HOST_CHANGED = gettext_lazy(
    "The server name changed: type the password again. A stored password never goes to a new host."
)

# The security choices of a mailbox, worded for its protocol (the model's
# labels name the SMTP ports). The script swaps them when the protocol changes.
MAILBOX_SECURITY_LABELS = {
    "imap": {
        Security.NONE: gettext_lazy("None (plain text, usually port 143)"),
        Security.SSL: gettext_lazy("SSL/TLS (implicit, usually port 993)"),
        Security.STARTTLS: gettext_lazy("STARTTLS (usually port 143)"),
    },
    "pop3": {
        Security.NONE: gettext_lazy("None (plain text, usually port 110)"),
        Security.SSL: gettext_lazy("SSL/TLS (implicit, usually port 995)"),
        Security.STARTTLS: gettext_lazy("STARTTLS (STLS, usually port 110)"),
    },
}


def _no_line_breaks(value: str) -> None:
    """no_line_breaks, but a NUL is left to the validator Django gives every
    CharField, which names it: it was refused twice, once as a line break."""
    no_line_breaks(value.replace("\x00", ""))


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
            field.help_text = _("A password is stored. Leave empty to keep it.")

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
            and "password" not in self.errors  # typed, and refused: that is the error
        ):
            self.add_error("password", HOST_CHANGED)


# Renders the password typed in this very POST when the form comes back
# with an error, so it need not be typed again; never a stored one (no
# field holds it: the model keeps only password_encrypted).
TYPED_PASSWORD = forms.PasswordInput(render_value=True, attrs={"autocomplete": "new-password"})
NO_IMAP_PASSWORD = gettext_lazy("Type the password for the incoming server, or log in with the SMTP password.")


class SmtpServerForm(_PasswordFormMixin, forms.ModelForm):
    password = forms.CharField(
        label=gettext_lazy("SMTP password"),
        required=False,
        strip=False,
        max_length=PASSWORD_MAX_LENGTH,
        validators=[_no_line_breaks],
        widget=TYPED_PASSWORD,
    )
    accept_warning = forms.BooleanField(
        label=gettext_lazy("I know; save these port and security settings anyway"), required=False
    )
    # Reading the server's own mailbox for bounces (BounceMailbox.server):
    # where a server that sends from its own address gets its reports.
    read_bounces = forms.BooleanField(
        label=gettext_lazy("Read this mailbox for bounces"),
        required=False,
        help_text=gettext_lazy(
            "Delivery reports for letters sent from this mailbox come back to it. Postroute reads them "
            "over IMAP with the same login, moves only the reports to the folder Postroute/Processed, and leaves "
            "everything else untouched and unread."
        ),
    )
    imap_host = forms.CharField(
        label=gettext_lazy("Incoming (IMAP) server"), required=False, max_length=253, validators=[no_control_chars]
    )
    imap_port = forms.IntegerField(label=gettext_lazy("IMAP port"), required=False, min_value=1, max_value=65535)
    imap_security = forms.ChoiceField(
        label=gettext_lazy("IMAP security"), choices=list(MAILBOX_SECURITY_LABELS["imap"].items()), required=False
    )
    imap_same_password = forms.BooleanField(label=gettext_lazy("Log in with the SMTP password"), required=False)
    imap_password = forms.CharField(
        label=gettext_lazy("IMAP password"),
        required=False,
        strip=False,
        help_text=gettext_lazy("Only if the mailbox wants another password (an app password) for IMAP."),
        max_length=PASSWORD_MAX_LENGTH,
        validators=[_no_line_breaks],
        widget=TYPED_PASSWORD,
    )

    class Meta:
        model = SmtpServer
        fields = [
            "name", "kind", "sender_email", "sender_name", "host", "port", "security", "login", "password",
            "max_per_minute", "max_per_hour", "max_per_day", "allow_sender_substitution", "verify_tls", "enabled",
        ]  # fmt: skip
        labels = {
            "name": gettext_lazy("Name"),
            "kind": gettext_lazy("Kind"),
            "security": gettext_lazy("SMTP security"),
            "max_per_minute": gettext_lazy("Max letters per minute"),
            "max_per_hour": gettext_lazy("Max letters per hour"),
            "max_per_day": gettext_lazy("Max letters per day"),
            "allow_sender_substitution": gettext_lazy("Allow sender substitution"),
            "enabled": gettext_lazy("Enabled"),
        }
        # As mailing.limits counts them: rolling, not the clock hour or the
        # calendar day in the organisation's zone.
        help_texts = {
            "max_per_hour": gettext_lazy("Counted over the last 60 minutes, not the clock hour. Empty: no limit."),
            "max_per_day": gettext_lazy("Counted over the last 24 hours, not the calendar day. Empty: no limit."),
        }
        widgets = {
            "sender_email": forms.EmailInput(attrs={"autocomplete": "off", "data-autofill": "smtp"}),
        }

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self._setup_password()
        _refuse_controls(self, rules.HEADER_FIELDS)
        for name in ("name", "sender_name"):
            self.fields[name].validators.append(visible_name)
        self.warning: str | None = None
        if rules.is_saas():
            # SaaS tenants have neither internal servers nor unverified TLS.
            del self.fields["kind"]
            del self.fields["verify_tls"]
        self._setup_reading()

    def _setup_reading(self) -> None:
        """Initial values: the mailbox already read, else the provider's
        IMAP server (on by default for a known provider)."""
        self.mailbox: BounceMailbox | None = (
            getattr(self.instance, "bounce_mailbox", None) if self.instance.pk else None
        )
        if self.mailbox is not None:
            m = self.mailbox
            initial = {"read_bounces": True, "imap_host": m.host, "imap_port": m.port, "imap_security": m.security}
            initial["imap_same_password"] = m.shares_server_password
            if m.password_encrypted:
                self.fields["imap_password"].help_text = _("A password is stored. Leave empty to keep it.")
        else:
            host = self.initial.get("host") or self.instance.host
            email = self.initial.get("sender_email") or self.instance.sender_email
            provider = presets.for_host(host or "") or presets.for_email(email or "")
            endpoint = provider.imap if provider else (presets.imap_for(host, email) if email else None)
            initial = {"read_bounces": bool(provider and provider.imap) and not self.instance.pk}
            initial["imap_same_password"] = True
            if endpoint is not None:
                initial.update(imap_host=endpoint.host, imap_port=endpoint.port, imap_security=endpoint.security)
        for name, value in initial.items():
            self.initial.setdefault(name, value)

    def bounce_reading(self) -> BounceReading | None:
        """What to read for bounces (None: do not read the mailbox)."""
        data = self.cleaned_data
        if not data.get("read_bounces"):
            return None
        return BounceReading(
            host=data["imap_host"].strip(),
            port=data["imap_port"],
            security=data.get("imap_security") or Security.SSL,
            same_password=bool(data.get("imap_same_password")),
            password=data.get("imap_password") or None,
        )

    def _clean_reading(self, data: dict) -> None:
        if not data.get("read_bounces"):
            return
        host = (data.get("imap_host") or "").strip()
        if not host:
            self.add_error("imap_host", _("Enter the incoming server, e.g. imap.yandex.ru."))
        elif message := rules.host_name_error(host) or (rules.is_saas() and rules.host_error(host)):
            self.add_error("imap_host", message)
        if not data.get("imap_port"):
            self.add_error("imap_port", _("Enter the IMAP port, e.g. 993."))
        if not host:
            return
        stored = self.mailbox
        if data.get("imap_same_password"):
            if not rules.may_share_password(data.get("host") or "", host):
                self.add_error("imap_same_password", rules.SHARED_PASSWORD_REFUSED)
        elif not data.get("imap_password") and "imap_password" not in self.errors:
            if stored is None or not stored.password_encrypted:
                self.add_error("imap_password", NO_IMAP_PASSWORD)
            elif host.lower() != stored.host.lower():
                self.add_error("imap_password", HOST_CHANGED)

    def clean(self) -> dict:
        data = super().clean()
        kind = data.get("kind", SmtpServer.Kind.EXTERNAL)
        if kind == SmtpServer.Kind.EXTERNAL or (data.get("host") or "").strip():
            # An internal server with the host emptied, as the page tells,
            # sends its password to no new host. One that keeps a new host
            # is asked: switched back to external, it would connect there.
            self._check_host_change()
        self._clean_reading(data)
        if rules.is_saas():
            # What the SaaS form means, whatever the record said before (edited
            # behind the form's back, or made before a switch to SaaS). A rule
            # broken on a field the form does not show would otherwise be an
            # error Django cannot place: a crash instead of a page.
            self.instance.kind = SmtpServer.Kind.EXTERNAL
            self.instance.verify_tls = True
        if kind == SmtpServer.Kind.EXTERNAL and data.get("security"):  # none chosen: that is the error
            self.warning = rules.port_security_warning(data.get("port"), data["security"])
        if not self.warning and data.get("read_bounces"):
            # As bounce_reading() stores it: no choice is SSL.
            security = data.get("imap_security") or Security.SSL
            self.warning = rules.port_security_warning(data.get("imap_port"), security)
        if self.warning and not data.get("accept_warning"):
            self.add_error("accept_warning", self.warning + _(" Tick the box to keep them."))
        provider = presets.for_host(data.get("host") or "") or presets.for_email(data.get("sender_email") or "")
        if data.get("allow_sender_substitution") and provider and not provider.allows_substitution:
            self.add_error("allow_sender_substitution", presets.NO_SUBSTITUTION.format(name=provider.name))
        return data


class BounceMailboxForm(_PasswordFormMixin, forms.ModelForm):
    password = forms.CharField(
        label=gettext_lazy("Password"),
        required=False,
        strip=False,
        max_length=PASSWORD_MAX_LENGTH,
        validators=[_no_line_breaks],
        widget=TYPED_PASSWORD,
    )
    accept_warning = forms.BooleanField(
        label=gettext_lazy("I know; save these port and security settings anyway"), required=False
    )

    class Meta:
        model = BounceMailbox
        fields = [
            "email", "protocol", "host", "port", "security", "login", "password", "folder", "verify_tls",
            "delete_after_processing", "plus_addressing", "enabled",
        ]  # fmt: skip
        labels = {
            "protocol": gettext_lazy("Protocol"),
            "port": gettext_lazy("Port"),
            "security": gettext_lazy("Security"),
            "login": gettext_lazy("Login"),
            "folder": gettext_lazy("Folder"),
            "enabled": gettext_lazy("Enabled"),
        }
        widgets = {"email": forms.EmailInput(attrs={"autocomplete": "off", "data-autofill": "imap"})}

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self._setup_password()
        _refuse_controls(self, rules.MAILBOX_HEADER_FIELDS)
        self.warning: str | None = None
        # Older clients (and the API-like posts in tests) send no protocol: IMAP.
        self.fields["protocol"].required = False
        protocol = self["protocol"].value() or BounceMailbox.Protocol.IMAP
        labels = MAILBOX_SECURITY_LABELS.get(protocol, MAILBOX_SECURITY_LABELS["imap"])
        security = self.fields["security"]
        security.choices = [(value, labels.get(value, label)) for value, label in security.choices]
        security.widget.attrs["data-labels"] = json.dumps(
            {
                protocol: {value: str(label) for value, label in labels.items()}
                for protocol, labels in MAILBOX_SECURITY_LABELS.items()
            }
        )
        if settings.DEPLOYMENT_MODE == "saas":
            del self.fields["verify_tls"]

    def clean_protocol(self) -> str:
        return self.cleaned_data.get("protocol") or self.instance.protocol or BounceMailbox.Protocol.IMAP

    def clean(self) -> dict:
        data = super().clean()
        self._check_host_change()
        if rules.is_saas():
            self.instance.verify_tls = True  # see SmtpServerForm.clean
        if data.get("security"):  # none chosen: that is the error
            self.warning = rules.port_security_warning(data.get("port"), data["security"])
        if self.warning and not data.get("accept_warning"):
            self.add_error("accept_warning", self.warning + _(" Tick the box to keep them."))
        return data


class TestForm(forms.Form):
    send_to = forms.EmailField(
        label=gettext_lazy("Also send a test letter to"),
        required=False,
        help_text=gettext_lazy("Optional: an address you can read."),
        validators=[validate_address],  # a recipient like any contact
    )
