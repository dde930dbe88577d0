"""Three pieces of request plumbing, each in one place:

AccessGateMiddleware keeps a signed-in user on the onboarding step they have
reached (verify the email, enrol two-factor, pass the second factor) until it
is done: everything else redirects there.

TenantMiddleware picks the current tenant from the session, among the user's
own memberships only, sets request.tenant and request.membership, and makes
the tenant's time zone the current one for the request (accounts.timezones).

LanguageMiddleware activates the request's language (accounts.languages)
once the user and the tenant are known, and keeps the language cookie in
step with a signed-in user's saved choice, so the pages after logging out
stay in it."""

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.middleware.locale import LocaleMiddleware
from django.shortcuts import redirect
from django.utils import timezone, translation

from . import languages
from .models import Membership
from .services import has_confirmed_totp
from .timezones import zone_of

SESSION_TENANT_KEY = "tenant"

# URL names each unfinished step may still reach (besides public pages).
STEP_URLS = {
    "verify": {"accounts:verify_pending", "accounts:verify_resend", "accounts:verify_email"},
    "enrol": {"accounts:2fa_setup"},
    "otp": {"accounts:login_otp"},
}
ALWAYS = {"accounts:logout"}
STEP_HOME = {"verify": "accounts:verify_pending", "enrol": "accounts:2fa_setup", "otp": "accounts:login_otp"}


def onboarding_step(request: HttpRequest) -> str | None:
    """The step a signed-in user must finish next, or None when done."""
    user = request.user
    if not user.is_email_verified:
        return "verify"
    if user.is_verified():
        return None
    return "otp" if has_confirmed_totp(user) else "enrol"


class AccessGateMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view_func, view_args, view_kwargs) -> HttpResponse | None:
        if not request.user.is_authenticated:
            return None
        match = request.resolver_match
        if match is None or match.namespace == "admin":
            return None  # the staff admin enforces OTP itself
        step = onboarding_step(request)
        request.onboarding_step = step
        if step is None or not getattr(view_func, "login_required", True):
            return None
        if match.view_name in STEP_URLS[step] | ALWAYS:
            return None
        return redirect(STEP_HOME[step])


class TenantMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.membership = None
        request.tenant = None
        if request.user.is_authenticated:
            membership = current_membership(request)
            if membership is not None:
                request.membership, request.tenant = membership, membership.tenant
        if request.tenant is None:
            return self.get_response(request)
        timezone.activate(zone_of(request.tenant.time_zone))
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()


def current_membership(request: HttpRequest) -> Membership | None:
    memberships = Membership.objects.filter(user=request.user).select_related("tenant")
    wanted = request.session.get(SESSION_TENANT_KEY)
    membership = memberships.filter(tenant__public_id=wanted).first() if wanted else None
    return membership or memberships.order_by("created_at").first()


class LanguageMiddleware(LocaleMiddleware):
    def process_request(self, request: HttpRequest) -> None:
        translation.activate(languages.for_request(request))
        request.LANGUAGE_CODE = translation.get_language()

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        response = super().process_response(request, response)
        user = getattr(request, "user", None)
        saved = user.language if user is not None and user.is_authenticated else ""
        if cookie_out_of_step(request, saved):
            set_language_cookie(response, saved)
        return response


def cookie_out_of_step(request: HttpRequest, saved: str) -> bool:
    """Whether the language cookie must be set to the user's saved choice."""
    return saved in languages.CODES and request.COOKIES.get(settings.LANGUAGE_COOKIE_NAME) != saved


def set_language_cookie(response: HttpResponse, language: str) -> None:
    response.set_cookie(
        settings.LANGUAGE_COOKIE_NAME,
        language,
        max_age=settings.LANGUAGE_COOKIE_AGE,
        samesite=settings.LANGUAGE_COOKIE_SAMESITE or "Lax",
        secure=settings.LANGUAGE_COOKIE_SECURE,
        httponly=settings.LANGUAGE_COOKIE_HTTPONLY,
    )
