"""Accepting an invitation: a new person creates an account from the link,
a signed-in person with the invited address joins with one click."""

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.debug import sensitive_post_parameters

from .. import services
from ..forms import SignupForm
from ..middleware import SESSION_TENANT_KEY
from ..models import User
from ..tokens import LinkError, read_invitation_token


@login_not_required
@sensitive_post_parameters("password")
def invitation(request: HttpRequest, token: str) -> HttpResponse:
    try:
        invite = read_invitation_token(token)
    except LinkError as exc:
        return render(request, "accounts/link_invalid.html", {"error": str(exc)}, status=400)
    if request.user.is_authenticated:
        return _accept_signed_in(request, invite)
    has_account = User.objects.filter(email=invite.email).exists()
    form = SignupForm(request.POST or None, invitation_email=invite.email)
    if request.method == "POST" and not has_account and form.is_valid():
        try:
            user, membership = services.user_signup_invited(
                invitation=invite, password=form.cleaned_data["password"], full_name=form.cleaned_data["full_name"]
            )
        except services.AccountExists:
            return redirect("accounts:login")  # made a moment ago, with this password: log in
        except ValidationError as exc:  # revoked, used or lapsed since the check above: no account made
            return render(request, "accounts/link_invalid.html", {"error": " ".join(exc.messages)}, status=400)
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        request.session[SESSION_TENANT_KEY] = str(membership.tenant.public_id)
        return redirect("home")
    context = {"invite": invite, "form": form, "has_account": has_account}
    return render(request, "accounts/invitation.html", context)


def _accept_signed_in(request: HttpRequest, invite) -> HttpResponse:
    if getattr(request, "onboarding_step", None) is not None:
        return redirect("home")  # finish signing in first; the gate says how
    if request.method == "POST":
        try:
            membership = services.invitation_accept(invitation=invite, user=request.user)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        else:
            request.session[SESSION_TENANT_KEY] = str(membership.tenant.public_id)
            messages.success(request, _("Welcome to %(name)s.") % {"name": membership.tenant.name})
            return redirect("home")
    return render(request, "accounts/invitation.html", {"invite": invite, "signed_in": True})
