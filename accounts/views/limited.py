"""The platform mail limits (accounts.mail_limits) in front of the views
that send the platform's own letters without a service of ours in between:
sign-up and the verification resend (accounts.views.auth, wrapped in
urls.py) and Django's password reset. Invitations are limited by their
service."""

from collections.abc import Callable
from functools import wraps

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from .. import ratelimits
from ..forms import SignupForm
from ..mail_limits import Kind, MailLimited, allow
from ..throttle import client_ip

View = Callable[..., HttpResponse]
VERIFY_SENT_AT = "verify_sent_at"  # set by auth.verify_resend when it queues a letter


def signup_limited(view: View) -> View:
    """A sign-up counts against its address and the client address; one
    that did not go through (the form was invalid) gives its count back."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        if request.method != "POST" or request.user.is_authenticated:
            return view(request, *args, **kwargs)
        try:
            counted = allow(Kind.SIGNUP, to=request.POST.get("email", ""), client=client_ip(request))
        except MailLimited as exc:
            form = SignupForm(request.POST)
            form.is_valid()
            form.add_error(None, exc.message)
            return render(request, "accounts/signup.html", {"form": form}, status=429)
        response = view(request, *args, **kwargs)
        if response.status_code != 302:
            ratelimits.give_back(counted)
        return response

    return wrapper


def resend_limited(view: View) -> View:
    """A verification resend counts against the address, the user and the
    client address; one the view itself holds back (a minute after the
    last) gives its count back."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        user = request.user
        if request.method != "POST" or user.is_email_verified:
            return view(request, *args, **kwargs)
        try:
            counted = allow(Kind.VERIFICATION, to=user.email, user=user, client=client_ip(request))
        except MailLimited as exc:
            messages.error(request, exc.message)
            return redirect("accounts:verify_pending")
        sent_before = request.session.get(VERIFY_SENT_AT)
        response = view(request, *args, **kwargs)
        if request.session.get(VERIFY_SENT_AT) == sent_before:
            ratelimits.give_back(counted)
        return response

    return wrapper


class PasswordResetView(auth_views.PasswordResetView):
    """Counted against the address typed and the client address alike
    whether or not the address has an account, so that a refusal tells
    nothing about it."""

    def form_valid(self, form) -> HttpResponse:
        try:
            allow(Kind.PASSWORD_RESET, to=form.cleaned_data["email"], client=client_ip(self.request))
        except MailLimited as exc:
            form.add_error(None, exc.message)
            return self.render_to_response(self.get_context_data(form=form), status=429)
        return super().form_valid(form)
