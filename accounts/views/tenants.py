"""The tenant's home (the live dashboard, under the getting-started
checklist until that is done), the organisation's settings, creating another
organisation, and switching between the user's organisations."""

import uuid

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import translation
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from mailing.views.dashboard import page_context

from .. import selectors, services
from ..access import manager_required, tenant_required
from ..forms import OrganisationForm, TenantForm
from ..middleware import SESSION_TENANT_KEY
from ..models import Membership
from ..timezones import zone_label


@tenant_required
def home(request: HttpRequest) -> HttpResponse:
    """The live dashboard, under a compact checklist until that is done."""
    checklist = selectors.getting_started(request.tenant)
    context = {"checklist": checklist, "done_count": sum(item.done for item in checklist)}
    return render(request, "accounts/home.html", {**context, **page_context(request.tenant)})


@manager_required
def organisation(request: HttpRequest) -> HttpResponse:
    """The organisation's settings: members see them, owners and admins change them."""
    form = OrganisationForm(request.POST or None, instance=request.tenant)
    if request.method == "POST" and form.is_valid():
        services.tenant_settings_update(tenant=request.tenant, **form.cleaned_data)
        zone = zone_label(request.tenant.time_zone)
        messages.success(request, _("Saved. Times are now shown in %(zone)s.") % {"zone": zone})
        return redirect("accounts:organisation")
    status = 400 if form.errors else 200
    context = {"form": form, "language_choices": settings.LANGUAGES}
    return render(request, "accounts/organisation.html", context, status=status)


def tenant_new(request: HttpRequest) -> HttpResponse:
    refusal = selectors.organisation_refusal(request.user)
    zone = request.tenant.time_zone if request.tenant else None
    form = TenantForm(request.POST or None, zone=zone)
    if request.method == "POST" and refusal is None and form.is_valid():
        try:
            tenant = services.tenant_create(
                owner=request.user, language=translation.get_language(), **form.cleaned_data
            )
        except ValidationError as exc:
            refusal = " ".join(exc.messages)
        else:
            request.session[SESSION_TENANT_KEY] = str(tenant.public_id)
            messages.success(request, _("%(name)s is ready.") % {"name": tenant.name})
            return redirect("home")
    status = 403 if request.method == "POST" and refusal else 200
    return render(request, "accounts/tenant_new.html", {"form": form, "refusal": refusal}, status=status)


@require_POST
def tenant_switch(request: HttpRequest) -> HttpResponse:
    try:
        public_id = uuid.UUID(request.POST.get("tenant", ""))
    except ValueError:
        raise Http404("No such organisation.") from None
    membership = (
        Membership.objects.filter(user=request.user, tenant__public_id=public_id).select_related("tenant").first()
    )
    if membership is None:
        raise Http404("No such organisation.")
    request.session[SESSION_TENANT_KEY] = str(membership.tenant.public_id)
    return redirect("home")
