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
    ImportEncodingForm,
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
    if request.method == "POST" and _rereading(request, imp):
        return _reread(request, imp)
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
    encoding_form = ImportEncodingForm(initial={"encoding": imp.encoding})
    return _mapping_page(request, imp, form, encoding_form, status=400 if form.errors else 200)


def _rereading(request: HttpRequest, imp: ContactImport) -> bool:
    """Whether to read the file again: "Read again" was pressed, or Import
    with another encoding chosen, whose rows are shown before anything is
    imported. (An older page without the select imports as before.)"""
    return "reread" in request.POST or request.POST.get("encoding", imp.encoding) != imp.encoding


def _reread(request: HttpRequest, imp: ContactImport) -> HttpResponse:
    """The mapping page again, of the file read in the chosen encoding, with
    the choices already made: a column keeps its target where the new
    reading gives it the same name, and the list is kept. A refused choice
    is said next to the field, the import as it was."""
    encoding_form = ImportEncodingForm(request.POST)
    before = imp.header
    reread = False
    if encoding_form.is_valid():
        try:
            imp = services.import_reread(contact_import=imp, encoding=encoding_form.cleaned_data["encoding"])
        except ValidationError as exc:
            encoding_form.add_error("encoding", exc)
        else:
            reread = True
    kept = {
        f"col_{i}": request.POST.get(f"col_{i}")
        for i, name in enumerate(imp.header)
        if i < len(before) and before[i] == name and f"col_{i}" in request.POST
    }
    kept |= {key: request.POST.get(key) for key in ("contact_list", "new_list_name") if key in request.POST}
    form = ImportMappingForm(contact_import=imp, initial=kept)
    status = 200 if reread else 400
    return _mapping_page(request, imp, form, encoding_form, status=status, reread=reread)


def _mapping_page(
    request: HttpRequest,
    imp: ContactImport,
    form: ImportMappingForm,
    encoding_form: ImportEncodingForm,
    *,
    status: int,
    reread: bool = False,
) -> HttpResponse:
    context = {
        "form": form,
        "encoding_form": encoding_form,
        "reread": reread,
        "imp": imp,
        "delimiter": DELIMITER_SENTENCES.get(imp.delimiter, DELIMITER_SENTENCES[","]),
        "encoding": code_pages.NAMES.get(imp.encoding, code_pages.NAMES["utf-8"]),
        "preview": inspection.preview_rows(imp),
    }
    return render(request, "contacts/import_mapping.html", context, status=status)


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
