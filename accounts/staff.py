"""The staff admin's door. One form asks for email, password and the code
of the app together, and any failure gets the same answer, so the page
never tells whether the password alone was right; the tenant login's
throttle counts every failure against the account (its passwords and its
codes) and the client address (accounts.throttle).

django-otp's OTPAdminSite keeps deciding who may stay in (a verified
device); only its login form, with a device list and a challenge button
behind a password check, is replaced."""

from django import forms
from django.contrib.auth import REDIRECT_FIELD_NAME, authenticate, login
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django_otp import login as otp_login
from django_otp.admin import OTPAdminSite
from django_otp.models import Device

from . import recovery, throttle

FAILED = _("Email, password or code is wrong.")


class StaffLoginForm(forms.Form):
    email = forms.EmailField(
        label=_("Email address"),
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "username", "autofocus": True}),
    )
    password = forms.CharField(
        label=_("Password"), strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "current-password"})
    )
    code = forms.CharField(
        label=_("Code from the app"),
        max_length=16,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )

    def clean_code(self) -> str:
        return self.cleaned_data["code"].replace(" ", "")


def _staff_device(request: HttpRequest, email: str, password: str, code: str) -> Device | None:
    """The device that took the code, when all three are right and the
    account is staff; None for any other case, whichever it is."""
    user = authenticate(request, email=email, password=password)
    if user is None or not user.is_staff:
        return None
    return recovery.match(user, code)


def _keys(request: HttpRequest, email: str) -> list[str]:
    """The account's password and code keys, then the address's: a wrong
    code here counts as the tenant login's wrong codes do."""
    return [throttle.password_key(email), throttle.code_key(email), throttle.address_key(request)]


def staff_login(request: HttpRequest, site: OTPAdminSite) -> HttpResponse:
    form = StaffLoginForm(request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        email, password, code = (form.cleaned_data[f] for f in ("email", "password", "code"))
        keys = _keys(request, email)
        if until := throttle.locked_until(keys):
            form.add_error(None, throttle.lockout_message(until))
            status = 429
        elif (device := _staff_device(request, email, password, code)) is None:
            throttle.record_failure(keys)
            until = throttle.locked_until(keys)
            form.add_error(None, throttle.lockout_message(until) if until else FAILED)
            status = 429 if until else 200
        else:
            throttle.reset(keys[:2])
            login(request, device.user)
            otp_login(request, device)
            return HttpResponseRedirect(_next(request) or reverse("admin:index", current_app=site.name))
    context = {
        **site.each_context(request),
        "title": gettext("Log in"),
        "form": form,
        "app_path": request.get_full_path(),
        REDIRECT_FIELD_NAME: _next(request) or "",
    }
    request.current_app = site.name
    return render(request, "admin/staff_login.html", context, status=status)


def _next(request: HttpRequest) -> str | None:
    url = request.POST.get(REDIRECT_FIELD_NAME) or request.GET.get(REDIRECT_FIELD_NAME)
    if url and url_has_allowed_host_and_scheme(url, {request.get_host()}, require_https=request.is_secure()):
        return url
    return None


class StaffAdminSite(OTPAdminSite):
    """The admin site: staff with a verified device only (OTPAdminSite), and
    the one-step login above."""

    @method_decorator(never_cache)
    @method_decorator(sensitive_post_parameters("password", "code"))
    @login_not_required
    def login(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        if request.method == "GET" and self.has_permission(request):
            return HttpResponseRedirect(reverse("admin:index", current_app=self.name))
        return staff_login(request, self)
