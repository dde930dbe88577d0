"""Two-factor enrolment, recovery codes, and the security page where a
password confirmation guards resetting the second factor."""

import base64
from urllib.parse import quote

import segno
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import update_session_auth_hash
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST
from django_otp import login as otp_login
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from servers import crypto

from .. import services, sessions, throttle
from ..forms import PasswordChangeForm, PasswordConfirmForm, TOTPConfirmForm

CODES_KEY = "fresh_recovery_codes"
# The secret being enrolled belongs to the session that asked for it: no
# other session of the user, and no row in the database, holds it until its
# code is confirmed.
PENDING_KEY = "totp_pending_key"


def _grouped(text: str, size: int = 4) -> str:
    return " ".join(text[i : i + size] for i in range(0, len(text), size))


@never_cache  # the key and its QR code: kept by no browser or proxy
@sensitive_post_parameters("token")
def two_factor_setup(request: HttpRequest) -> HttpResponse:
    key = request.session.get(PENDING_KEY)
    replacing = services.has_confirmed_totp(request.user)
    if key is None:
        if replacing:
            return redirect("home")  # a new app is asked for on the Security page
        key = request.session[PENDING_KEY] = services.totp_new_key()
    form = TOTPConfirmForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            device = services.totp_enrol(
                user=request.user,
                key=key,
                token=form.cleaned_data["token"].strip(),
                replacing=request.user.is_verified(),
            )
        except services.EnrolmentTaken:
            del request.session[PENDING_KEY]
            return redirect("home")
        if device is not None:
            return _enrolled(request, device)
        form.add_error("token", _("That code does not match. Check your phone's clock and enter the newest code."))
    device = services.totp_device_for(user=request.user, key=key)
    context = {
        "form": form,
        "replacing": replacing,
        "qr": segno.make(device.config_url, error="m").svg_data_uri(scale=5, border=2),
        "secret": _grouped(base64.b32encode(device.bin_key).decode()),
    }
    return render(request, "accounts/2fa_setup.html", context)


def _enrolled(request: HttpRequest, device: TOTPDevice) -> HttpResponse:
    del request.session[PENDING_KEY]
    otp_login(request, device)
    _keep_for_their_page(request, services.recovery_codes_create(user=request.user, count=settings.RECOVERY_CODE_COUNT))
    sessions.end_other_sessions(request)
    return redirect("accounts:recovery_codes")


def _keep_for_their_page(request: HttpRequest, codes: list[str]) -> None:
    """The session is a database row: the codes wait there encrypted, as
    the servers' passwords are (servers.crypto), never in clear."""
    request.session[CODES_KEY] = crypto.encrypt("\n".join(codes))


def _codes_to_show(request: HttpRequest) -> list[str] | None:
    try:
        return crypto.decrypt(request.session.pop(CODES_KEY, "")).split() or None
    except ImproperlyConfigured:  # encrypted with a key dropped since: make new ones
        return None


@never_cache  # the codes, shown once: kept by no browser or proxy
def recovery_codes(request: HttpRequest) -> HttpResponse:
    codes = _codes_to_show(request)
    context = {"codes": codes}
    if codes:
        # Shown once: the download is the page's own text, not a second request.
        heading = _("Postroute recovery codes for %(email)s") % {"email": request.user.email}
        text = heading + "\n\n" + "\n".join(codes) + "\n"
        context["codes_text"] = "\n".join(codes)
        context["download_url"] = "data:text/plain;charset=utf-8," + quote(text)
    return render(request, "accounts/recovery_codes.html", context)


@sensitive_post_parameters("password")
def security(request: HttpRequest) -> HttpResponse:
    return _security_page(request, PasswordConfirmForm(user=request.user))


def _security_page(
    request: HttpRequest,
    form: PasswordConfirmForm,
    status: int = 200,
    password_form: PasswordChangeForm | None = None,
) -> HttpResponse:
    context = {
        "totp": TOTPDevice.objects.filter(user=request.user, confirmed=True).first(),
        "codes_left": StaticToken.objects.filter(device__user=request.user).count(),
        "form": form,
        "password_form": password_form or PasswordChangeForm(request.user),
        "failed_action": request.resolver_match.url_name if status != 200 else None,
    }
    return render(request, "accounts/security.html", context, status=status)


@require_POST
@sensitive_post_parameters("old_password", "new_password1", "new_password2")
def password_change(request: HttpRequest) -> HttpResponse:
    """A signed-in user changes the password by typing the current one; as a
    reset does, it logs them out everywhere else."""
    form, status = _checked(request, PasswordChangeForm, "old_password")
    if status != 200:
        return _security_page(request, PasswordConfirmForm(user=request.user), status, password_form=form)
    user = form.save()
    update_session_auth_hash(request, user)
    sessions.end_other_sessions(request)
    messages.success(request, _("Your password was changed. You were logged out everywhere else."))
    return redirect("accounts:security")


def _confirmed(request: HttpRequest) -> tuple[PasswordConfirmForm, int]:
    """The form and the page's status: 200 when the password was right."""
    return _checked(request, PasswordConfirmForm, "password")


def _checked(request: HttpRequest, form_class: type, field: str) -> tuple:
    """A form that asks for the password again, and the page's status. The
    password is guessed here as at the login, by whoever holds a session:
    wrong ones count against the same lockout (the account's and the
    address's), a right one clears the account's, and while locked none is
    checked (429)."""
    keys = throttle.keys_for(request, request.user.email)
    until = throttle.locked_until(keys)
    refusal = throttle.lockout_message(until) if until else None
    form = form_class(data=request.POST, user=request.user, refusal=refusal)
    if form.is_valid():
        throttle.reset(keys[:1])
        return form, 200
    if refusal:
        return form, 429
    if form.has_error(field, "password_incorrect"):
        throttle.record_failure(keys)
        if until := throttle.locked_until(keys):
            form.errors[field] = form.error_class([throttle.lockout_message(until)])
            return form, 429
    return form, 400


@require_POST
@sensitive_post_parameters("password")
def recovery_codes_new(request: HttpRequest) -> HttpResponse:
    form, status = _confirmed(request)
    if status != 200:
        return _security_page(request, form, status=status)
    _keep_for_their_page(request, services.recovery_codes_create(user=request.user, count=settings.RECOVERY_CODE_COUNT))
    sessions.end_other_sessions(request)
    return redirect("accounts:recovery_codes")


@require_POST
@sensitive_post_parameters("password")
def two_factor_reset(request: HttpRequest) -> HttpResponse:
    """Starts replacing the app: a new secret for this session only. The
    current app and recovery codes work until the new app is confirmed."""
    form, status = _confirmed(request)
    if status != 200:
        return _security_page(request, form, status=status)
    request.session[PENDING_KEY] = services.totp_new_key()
    sessions.end_other_sessions(request)
    messages.info(
        request,
        _(
            "Add Postroute to your new app and confirm with a code. Until then your current app and recovery codes "
            "keep working. You were logged out everywhere else."
        ),
    )
    return redirect("accounts:2fa_setup")
