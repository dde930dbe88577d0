"""The team page: members, roles, invitations. Owners and admins change it;
members may look."""

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from .. import selectors, services
from ..access import get_invitation, get_membership, manager_required, tenant_required
from ..emails import valid_for
from ..forms import InviteForm, RoleForm
from ..mail_limits import MailLimited
from ..middleware import SESSION_TENANT_KEY
from ..models import Membership
from ..throttle import client_ip


def _page(request: HttpRequest, invite_form: InviteForm, status: int = 200) -> HttpResponse:
    tenant = request.tenant
    context = {
        "members": Membership.objects.filter(tenant=tenant).select_related("user").order_by("user__email"),
        "invitations": selectors.standing_invitations(tenant),
        "invite_form": invite_form,
        "role_choices": RoleForm.base_fields["role"].choices,
        "valid_for": valid_for(settings.INVITATION_MAX_AGE),
    }
    return render(request, "accounts/team.html", context, status=status)


@manager_required
def team(request: HttpRequest) -> HttpResponse:
    form = InviteForm(request.POST or None, inviter_role=request.membership.role)
    status = 200
    if request.method == "POST" and form.is_valid():
        try:
            invitation = services.invitation_create(
                tenant=request.tenant,
                by=request.membership,
                base_url=settings.SITE_URL,
                client=client_ip(request),
                **form.cleaned_data,
            )
        except MailLimited as exc:
            form.add_error(None, exc.message)
            status = 429
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, _("Invitation sent to %(email)s.") % {"email": invitation.email})
            return redirect("accounts:team")
    return _page(request, form, status=400 if status == 200 and form.errors else status)


@require_POST
@manager_required
def member_role(request: HttpRequest, public_id: str) -> HttpResponse:
    membership = get_membership(request.tenant, public_id)
    form = RoleForm(request.POST)
    if form.is_valid():
        _apply(request, services.membership_change_role, membership=membership, role=form.cleaned_data["role"])
    return redirect("accounts:team")


@require_POST
@manager_required
def member_remove(request: HttpRequest, public_id: str) -> HttpResponse:
    membership = get_membership(request.tenant, public_id)
    _apply(request, services.membership_remove, membership=membership)
    return redirect("accounts:team")


@require_POST
@manager_required
def invitation_revoke(request: HttpRequest, public_id: str) -> HttpResponse:
    services.invitation_revoke(invitation=get_invitation(request.tenant, public_id), by=request.membership)
    return redirect("accounts:team")


@require_POST
@tenant_required
def team_leave(request: HttpRequest) -> HttpResponse:
    if _apply(request, services.membership_remove, membership=request.membership):
        request.session.pop(SESSION_TENANT_KEY, None)
        messages.success(request, _("You left %(name)s.") % {"name": request.tenant.name})
        return redirect("home")
    return redirect("accounts:team")


def _apply(request: HttpRequest, action, **kwargs: object) -> bool:
    try:
        action(by=request.membership, **kwargs)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return False
    return True
