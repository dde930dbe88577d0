"""The suppression list: addresses no mailing of the tenant writes to."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from accounts.access import tenant_required

from .. import contacts
from ..forms.contacts import (
    SearchForm,
    SuppressionForm,
    SuppressionRemoveForm,
)
from ..models import Suppression
from .common import csv_response, invalid, page_of, search_query


@tenant_required
def suppressions(request: HttpRequest) -> HttpResponse:
    return _suppressions_page(request, SuppressionForm())


def _suppressions_page(request: HttpRequest, form: SuppressionForm) -> HttpResponse:
    query = search_query(request)
    context = {
        "page": page_of(request, contacts.suppressions_search(tenant=request.tenant, query=query)),
        "query": query,
        "search_form": SearchForm(initial={"q": query}),
        "form": form,
    }
    return render(request, "contacts/suppressions.html", context, status=400 if form.errors else 200)


@require_POST
@tenant_required
def suppression_add(request: HttpRequest) -> HttpResponse:
    form = SuppressionForm(request.POST)
    if form.is_valid():
        try:
            suppression = contacts.suppression_add(
                tenant=request.tenant, reason=Suppression.Reason.MANUAL, **form.cleaned_data
            )
        except ValidationError as exc:
            invalid(form, exc)
        else:
            messages.success(request, _("%(email)s will receive no letters.") % {"email": suppression.email})
            return redirect("contacts:suppressions")
    return _suppressions_page(request, form)


@require_POST
@tenant_required
def suppression_remove(request: HttpRequest) -> HttpResponse:
    form = SuppressionRemoveForm(request.POST)
    if form.is_valid() and contacts.suppression_remove(tenant=request.tenant, email=form.cleaned_data["email"]):
        messages.success(request, _("%(email)s may receive letters again.") % {"email": form.cleaned_data["email"]})
    return redirect("contacts:suppressions")


@tenant_required
def suppression_export(request: HttpRequest) -> StreamingHttpResponse:
    # Worded now: the rows are written after the response has left the
    # request's language.
    reasons = {value: str(label) for value, label in Suppression.Reason.choices}
    rows = (
        (email, reasons.get(reason, reason), note, added)
        for email, reason, note, added in Suppression.objects.filter(tenant=request.tenant)
        .order_by("email")
        .values_list("email", "reason", "note", "created_at")
        .iterator(chunk_size=2000)
    )
    return csv_response("suppressions.csv", [_("Email"), _("Reason"), _("Note"), _("Added")], rows)
