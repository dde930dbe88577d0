from django import forms
from django.conf import settings
from django.contrib.auth import forms as auth_forms
from django.contrib.auth import password_validation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from servers.validators import visible_name

from . import services
from .models import ApiScope, Role, Tenant, User, normalize_email_address
from .timezones import DEFAULT_ZONE, zone_choices


def time_zone_field(*, required: bool = False) -> forms.TypedChoiceField:
    """The organisation's zone: a select of every zone, which the page's
    script sets to the browser's own on a fresh form (data-browser-zone).
    Left out of a sign-up, it is UTC."""
    return forms.TypedChoiceField(
        label=gettext_lazy("Time zone"),
        choices=zone_choices,
        initial=DEFAULT_ZONE,
        required=required,
        empty_value=DEFAULT_ZONE,
        help_text=gettext_lazy("Times are shown, and mailings scheduled, in this zone."),
    )


class SignupForm(forms.Form):
    email = forms.EmailField(label=gettext_lazy("Work email"), max_length=254)
    full_name = forms.CharField(
        label=gettext_lazy("Your name"), max_length=150, required=False, validators=[visible_name]
    )
    organisation = forms.CharField(label=gettext_lazy("Organisation name"), max_length=120, validators=[visible_name])
    password = forms.CharField(
        label=gettext_lazy("Password"), widget=forms.PasswordInput(render_value=False), strip=False
    )
    time_zone = time_zone_field()

    def __init__(self, *args: object, invitation_email: str | None = None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        if not self.is_bound:
            self.fields["time_zone"].widget.attrs["data-browser-zone"] = ""
        self.fields["email"].widget.attrs["autocomplete"] = "email"
        self.fields["password"].widget.attrs["autocomplete"] = "new-password"
        self.fields["password"].help_text = password_validation.password_validators_help_text_html()
        if invitation_email is not None:
            # An invited person joins the inviting organisation.
            del self.fields["organisation"]
            del self.fields["time_zone"]
            self.fields["email"].initial = invitation_email
            self.fields["email"].disabled = True

    def clean_email(self) -> str:
        # Whether the address has an account is not the form's to say
        # (accounts.services.user_signup).
        return normalize_email_address(self.cleaned_data["email"])

    def clean(self) -> dict:
        data = super().clean()
        if data.get("password"):
            user = User(email=data.get("email", ""), full_name=data.get("full_name", ""))
            try:
                password_validation.validate_password(data["password"], user)
            except forms.ValidationError as exc:
                self.add_error("password", exc)
        return data


class LoginForm(forms.Form):
    email = forms.EmailField(
        label=gettext_lazy("Email address"),
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "email", "autofocus": True}),
    )
    password = forms.CharField(
        label=gettext_lazy("Password"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )


class OTPForm(forms.Form):
    token = forms.CharField(
        label=gettext_lazy("Code"),
        max_length=16,
        help_text=gettext_lazy("The 6-digit code from your authenticator app, or one of your recovery codes."),
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "text", "autofocus": True}),
    )

    def clean_token(self) -> str:
        return self.cleaned_data["token"].replace(" ", "").strip()


class TOTPConfirmForm(forms.Form):
    token = forms.RegexField(
        label=gettext_lazy("Code from the app"),
        regex=r"^\s*\d{6}\s*$",
        error_messages={"invalid": gettext_lazy("Enter the 6 digits your app shows.")},
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}),
    )


class PasswordConfirmForm(forms.Form):
    """Sudo mode: sensitive actions ask for the password again."""

    password = forms.CharField(
        label=gettext_lazy("Your password"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )

    def __init__(self, *args: object, user: User, refusal: str | None = None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.user = user
        self.refusal = refusal

    def clean_password(self) -> str:
        password = self.cleaned_data["password"]
        if self.refusal:  # the account's login is locked: the password is not even checked
            raise forms.ValidationError(self.refusal, code="locked")
        if not self.user.check_password(password):
            raise forms.ValidationError(_("That is not your password."), code="password_incorrect")
        return password


class PasswordChangeForm(auth_forms.PasswordChangeForm):
    """Django's form, refused without checking the password while the
    account's login is locked (as PasswordConfirmForm)."""

    def __init__(self, *args: object, refusal: str | None = None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.refusal = refusal

    def clean_old_password(self) -> str:
        if self.refusal:
            raise forms.ValidationError(self.refusal, code="locked")
        return super().clean_old_password()


class InviteForm(forms.Form):
    email = forms.EmailField(label=gettext_lazy("Email address"), max_length=254)
    role = forms.ChoiceField(label=gettext_lazy("Role"), choices=Role.choices, initial=Role.MEMBER)

    def __init__(self, *args: object, inviter_role: str, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        if inviter_role != Role.OWNER:  # only owners make owners
            self.fields["role"].choices = [c for c in Role.choices if c[0] != Role.OWNER]


class RoleForm(forms.Form):
    role = forms.ChoiceField(label=gettext_lazy("Role"), choices=Role.choices)


class TenantForm(forms.Form):
    name = forms.CharField(label=gettext_lazy("Organisation name"), max_length=120, validators=[visible_name])
    time_zone = time_zone_field()

    def __init__(self, *args: object, zone: str | None = None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        if zone:
            self.fields["time_zone"].initial = zone
        elif not self.is_bound:
            self.fields["time_zone"].widget.attrs["data-browser-zone"] = ""


class OrganisationForm(forms.ModelForm):
    """The organisation's settings that owners and admins change."""

    time_zone = time_zone_field(required=True)

    class Meta:
        model = Tenant
        fields = ["time_zone"]


class PasswordResetForm(auth_forms.PasswordResetForm):
    """Django's form, but the letter is queued (accounts.services), not sent
    during the request."""

    def get_users(self, email: str):
        # The address as accounts keep it: an IDN domain typed in ASCII finds its account.
        return super().get_users(normalize_email_address(email))

    def send_mail(self, subject_template_name, email_template_name, context, from_email, to_email, **kwargs) -> None:
        # The link is built from SITE_URL, not from the request's Host
        # header that Django's form puts in the context.
        services.password_reset_send(user=context["user"], base_url=settings.SITE_URL)


class ApiKeyForm(forms.Form):
    name = forms.CharField(
        label=gettext_lazy("Name"),
        max_length=100,
        help_text=gettext_lazy("What uses the key, e.g. “CRM (production)”."),
        validators=[visible_name],
    )
    scopes = forms.MultipleChoiceField(
        label=gettext_lazy("Scopes"),
        choices=ApiScope.choices,
        widget=forms.CheckboxSelectMultiple,
        initial=[ApiScope.READ],
    )
