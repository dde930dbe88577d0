"""Sign-up, email verification, the two-step login and logout."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import authenticate, login, update_session_auth_hash
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone, translation
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST
from django_otp import login as otp_login
from django_otp.plugins.otp_static.models import StaticDevice

from .. import emails, recovery, services, sessions, throttle
from ..forms import LoginForm, OTPForm, SignupForm
from ..models import User
from ..tokens import LinkError, read_verification_token

NEXT_KEY = "login_next"
RESEND_INTERVAL = 60
SIGNUP_EMAIL = "signup_email"


def _safe_next(request: HttpRequest, url: str | None) -> str | None:
    if url and url_has_allowed_host_and_scheme(url, {request.get_host()}, require_https=request.is_secure()):
        return url
    return None


@login_not_required
@sensitive_post_parameters("password")
def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("home")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            services.user_signup(
                email=data["email"],
                password=data["password"],
                organisation=data["organisation"],
                full_name=data["full_name"],
                base_url=settings.SITE_URL,
                time_zone=data["time_zone"],
                language=translation.get_language(),
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            # Alike whether or not the address had an account (then its
            # owner got a letter instead): nobody is signed in, the new
            # account's owner logs in once the link proved the address.
            request.session[SIGNUP_EMAIL] = data["email"]
            return redirect("accounts:signup_sent")
    return render(request, "accounts/signup.html", {"form": form})


@login_not_required
def signup_sent(request: HttpRequest) -> HttpResponse:
    email = request.session.get(SIGNUP_EMAIL)
    if not email:
        return redirect("accounts:signup")
    return render(request, "accounts/signup_sent.html", {"email": email})


def verify_pending(request: HttpRequest) -> HttpResponse:
    if request.user.is_email_verified:
        return redirect("home")
    context = {"valid_for": emails.valid_for(settings.EMAIL_VERIFICATION_MAX_AGE)}
    return render(request, "accounts/verify_pending.html", context)


@require_POST
def verify_resend(request: HttpRequest) -> HttpResponse:
    last = request.session.get("verify_sent_at", 0)
    now = timezone.now().timestamp()
    if now - last < RESEND_INTERVAL:
        messages.warning(request, _("We just sent a link. Wait a minute before asking for another one."))
    elif not request.user.is_email_verified:
        services.email_verification_send(user=request.user, base_url=settings.SITE_URL)
        request.session["verify_sent_at"] = now
        messages.success(request, _("A new link is on its way to %(email)s.") % {"email": request.user.email})
    return redirect("accounts:verify_pending")


@login_not_required
def verify_email(request: HttpRequest, token: str) -> HttpResponse:
    try:
        user = read_verification_token(token)
    except LinkError as exc:
        return render(request, "accounts/link_invalid.html", {"error": str(exc)}, status=400)
    services.email_verify(user=user)
    if request.user.is_authenticated and request.user.pk == user.pk:
        messages.success(request, _("Email address verified. Now secure your account with two-factor login."))
        return redirect("accounts:2fa_setup")
    messages.success(request, _("Email address verified. Log in to continue."))
    return redirect("accounts:login")


WRONG = gettext_lazy(
    "Email or password is wrong, or the address is not confirmed yet: a new account logs in once the link "
    "we sent it is opened."
)


def _authenticated(request: HttpRequest, email: str, password: str) -> User | None:
    """The account, once its address is confirmed. Before, the password
    typed at sign-up must not log in: it would, for a new address and not
    for a taken one, and tell whether the address had an account."""
    user = authenticate(request, email=email, password=password)
    return user if user is not None and user.is_email_verified else None


@login_not_required
@sensitive_post_parameters("password")
def login_view(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("home")
    form = LoginForm(request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        email, password = form.cleaned_data["email"], form.cleaned_data["password"]
        keys = throttle.keys_for(request, email)
        if until := throttle.locked_until(keys):
            form.add_error(None, throttle.lockout_message(until))
            status = 429
        elif (user := _authenticated(request, email, password)) is None:
            throttle.record_failure(keys)
            until = throttle.locked_until(keys)
            form.add_error(None, throttle.lockout_message(until) if until else WRONG)
            status = 429 if until else 200
        else:
            throttle.reset(keys[:1])
            login(request, user)
            request.session[NEXT_KEY] = _safe_next(request, request.GET.get("next"))
            return redirect("home")
    return render(request, "accounts/login.html", {"form": form}, status=status)


@sensitive_post_parameters("token")
def login_otp(request: HttpRequest) -> HttpResponse:
    user = request.user
    if user.is_verified():
        return redirect("home")
    form = OTPForm(request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        keys = throttle.code_keys_for(request, user.email)
        if until := throttle.locked_until(keys):
            form.add_error(None, throttle.lockout_message(until))
            status = 429
        elif (device := recovery.match(user, form.cleaned_data["token"])) is None:
            throttle.record_failure(keys)
            until = throttle.locked_until(keys)
            form.add_error("token", throttle.lockout_message(until) if until else _("That code is not valid."))
            status = 429 if until else 200
        else:
            throttle.reset(keys[:1])
            otp_login(request, device)
            if isinstance(device, StaticDevice):
                left = device.token_set.count()
                messages.warning(
                    request,
                    _("You used a recovery code; %(left)s remain. Make new ones on the Security page.")
                    % {"left": left},
                )
            return redirect(request.session.pop(NEXT_KEY, None) or "home")
    return render(request, "accounts/login_otp.html", {"form": form}, status=status)


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    """Django's view of the emailed link; a new password also ends every
    session of the user, but the current one when it is the user's own."""

    def form_valid(self, form) -> HttpResponse:
        response = super().form_valid(form)
        own = self.request.user.pk == form.user.pk
        if own:
            update_session_auth_hash(self.request, form.user)
        sessions.end_sessions(user=form.user, keep=self.request.session.session_key if own else None)
        return response
