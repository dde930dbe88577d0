"""The tenant's home (the live dashboard, under the getting-started
checklist until that is done), creating another organisation, and switching
between the user's organisations."""

import uuid

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import translation
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from mailing.views.dashboard import page_context

from .. import selectors, services
from ..access import tenant_required
from ..forms import TenantForm
from ..middleware import SESSION_TENANT_KEY
from ..models import Membership


@tenant_required
def home(request: HttpRequest) -> HttpResponse:
    """The live dashboard, under a compact checklist until that is done."""
    checklist = selectors.getting_started(request.tenant)
    context = {"checklist": checklist, "done_count": sum(item.done for item in checklist)}
    return render(request, "accounts/home.html", {**context, **page_context(request.tenant)})


def tenant_new(request: HttpRequest) -> HttpResponse:
    refusal = selectors.organisation_refusal(request.user)
    form = TenantForm(request.POST or None)
    if request.method == "POST" and refusal is None and form.is_valid():
        try:
            tenant = services.tenant_create(
                name=form.cleaned_data["name"], owner=request.user, language=translation.get_language()
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
