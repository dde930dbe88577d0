"""CSV imports of contacts: upload, column mapping, progress, rejected rows."""

import uuid

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils.formats import localize
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_POST

from accounts.access import tenant_required

from ..access import get_contact_import
from ..forms.contacts import (
    ImportMappingForm,
    ImportUploadForm,
)
from ..imports import code_pages, inspection, services, uploads
from ..imports.limits import size_label
from ..models import ContactImport
from .common import csv_response, invalid

REJECTIONS_SHOWN = 100
# Whole sentences: a language says "separated by commas" in its own words.
DELIMITER_SENTENCES = {
    ",": gettext_lazy("Columns are separated by commas."),
    ";": gettext_lazy("Columns are separated by semicolons."),
    "\t": gettext_lazy("Columns are separated by tabs."),
}


@csrf_exempt
@tenant_required
def import_upload(request: HttpRequest) -> HttpResponse:
    # The size limit must be in place before the body is parsed, which the
    # CSRF check would do; so the check runs after it, in _import_upload.
    handler = uploads.ImportUploadHandler(request)
    request.upload_handlers.insert(0, handler)
    return _import_upload(request, handler)


@csrf_protect
def _import_upload(request: HttpRequest, handler: uploads.ImportUploadHandler) -> HttpResponse:
    form = ImportUploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST":
        if not form.is_valid() and handler.exceeded:
            form.errors["file"] = form.error_class(
                [_("The file is larger than %(size_label)s.") % {"size_label": size_label()}]
            )
        elif form.is_valid():
            try:
                imp = services.import_upload(tenant=request.tenant, by=request.user, upload=form.cleaned_data["file"])
            except ValidationError as exc:
                form.add_error("file", exc)
            else:
                return redirect("contacts:import_mapping", public_id=imp.public_id)
    context = {"form": form, "max_size": size_label()}
    return render(request, "contacts/import_upload.html", context, status=400 if form.errors else 200)


@tenant_required
def import_mapping(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    imp = get_contact_import(request.tenant, public_id)
    if imp.status != ContactImport.Status.UPLOADED:
        return redirect("contacts:import", public_id=imp.public_id)
    form = ImportMappingForm(request.POST or None, contact_import=imp)
    if request.method == "POST" and form.is_valid():
        try:
            services.import_start(
                contact_import=imp,
                columns=form.columns(),
                contact_list=form.cleaned_data["contact_list"],
                new_list_name=form.cleaned_data["new_list_name"],
            )
        except ValidationError as exc:
            invalid(form, exc)
        else:
            return redirect("contacts:import", public_id=imp.public_id)
    context = {
        "form": form,
        "imp": imp,
        "delimiter": DELIMITER_SENTENCES.get(imp.delimiter, DELIMITER_SENTENCES[","]),
        "encoding": code_pages.NAMES.get(imp.encoding, code_pages.NAMES["utf-8"]),
        "preview": inspection.preview_rows(imp),
    }
    return render(request, "contacts/import_mapping.html", context, status=400 if form.errors else 200)


@require_POST
@tenant_required
def import_discard(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    imp = get_contact_import(request.tenant, public_id)
    try:
        services.import_discard(contact_import=imp)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("contacts:import", public_id=imp.public_id)
    return redirect("contacts:index")


@tenant_required
def import_detail(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    imp = get_contact_import(request.tenant, public_id)
    if imp.status == ContactImport.Status.UPLOADED:
        return redirect("contacts:import_mapping", public_id=imp.public_id)
    context = {
        "imp": imp,
        "data": _import_data(imp),
        "rejections": imp.rejections.all()[:REJECTIONS_SHOWN],
        "rejections_shown": REJECTIONS_SHOWN,
    }
    return render(request, "contacts/import_detail.html", context)


@tenant_required
def import_json(request: HttpRequest, public_id: uuid.UUID) -> JsonResponse:
    return JsonResponse(_import_data(get_contact_import(request.tenant, public_id)))


def _import_data(imp: ContactImport) -> dict:
    finished = imp.status in (ContactImport.Status.DONE, ContactImport.Status.FAILED)
    percent = 100 if finished else min(99, imp.bytes_read * 100 // imp.file_size) if imp.file_size else 0
    return {
        "status": imp.status,
        "status_label": imp.get_status_display(),
        "finished": finished,
        "percent": percent,
        "bytes_read": imp.bytes_read,
        "file_size": imp.file_size,
        "rows_seen": imp.rows_seen,
        "created": imp.created,
        "updated": imp.updated,
        "rejected": imp.rejected,
        "error": imp.error,
        # The counters as the page writes them in its language ("12 345").
        "shown": {key: localize(getattr(imp, key)) for key in ("rows_seen", "created", "updated", "rejected")},
    }


@tenant_required
def import_rejections(request: HttpRequest, public_id: uuid.UUID) -> StreamingHttpResponse:
    imp = get_contact_import(request.tenant, public_id)
    rows = imp.rejections.order_by("line", "pk").values_list("line", "reason", "raw").iterator(chunk_size=2000)
    return csv_response(f"rejected-rows-{imp.public_id}.csv", [_("Line"), _("Reason"), _("Row")], rows)
