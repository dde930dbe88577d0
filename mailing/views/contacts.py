"""The contacts pages: lists, contacts, custom fields, the suppression list
and CSV imports. Everyone in the tenant may use them (members work with
content); tenant objects come through the access helpers, so another
tenant's object is a 404."""

import csv
import uuid
from collections.abc import Iterable

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Page, Paginator
from django.forms import Form
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_POST

from accounts.access import tenant_required

from .. import contacts, imports
from ..access import get_contact, get_contact_import, get_contact_list
from ..forms.contacts import (
    ContactForm,
    ContactListForm,
    CustomFieldForm,
    ImportMappingForm,
    ImportUploadForm,
    SearchForm,
    SuppressionForm,
    SuppressionRemoveForm,
)
from ..models import Contact, ContactImport, ContactList, CustomField, Suppression

PAGE_SIZE = 50
REJECTIONS_SHOWN = 100
DELIMITER_NAMES = {",": "commas", ";": "semicolons", "\t": "tabs"}


def _invalid(form: Form, exc: ValidationError) -> None:
    """Put a service's ValidationError on the form, by field where it can."""
    if hasattr(exc, "error_dict"):
        for name, errors in exc.error_dict.items():
            form.add_error(name if name in form.fields else None, errors)
    else:
        form.add_error(None, exc)


def _page(request: HttpRequest, items: Iterable) -> Page:
    return Paginator(items, PAGE_SIZE).get_page(request.GET.get("page"))


def _back(request: HttpRequest, default: str) -> HttpResponse:
    """Return to the page the form was on, if it is one of ours."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return redirect(target)
    return redirect(default)


def _query(request: HttpRequest) -> str:
    form = SearchForm(request.GET)
    return form.cleaned_data["q"] if form.is_valid() else ""


# ---------- Lists ----------


@tenant_required
def index(request: HttpRequest) -> HttpResponse:
    return _index_page(request, ContactListForm(), CustomFieldForm())


def _index_page(request: HttpRequest, list_form: ContactListForm, field_form: CustomFieldForm) -> HttpResponse:
    tenant = request.tenant
    context = {
        "lists": contacts.lists_with_counts(tenant),
        "total": Contact.objects.filter(tenant=tenant).count(),
        "suppressed": Suppression.objects.filter(tenant=tenant).count(),
        "custom_fields": CustomField.objects.filter(tenant=tenant),
        "imports": ContactImport.objects.filter(tenant=tenant).select_related("contact_list")[:5],
        "list_form": list_form,
        "field_form": field_form,
    }
    status = 400 if list_form.errors or field_form.errors else 200
    return render(request, "contacts/index.html", context, status=status)


@require_POST
@tenant_required
def list_create(request: HttpRequest) -> HttpResponse:
    form = ContactListForm(request.POST)
    if form.is_valid():
        try:
            contact_list = contacts.list_create(tenant=request.tenant, name=form.cleaned_data["name"])
        except ValidationError as exc:
            _invalid(form, exc)
        else:
            messages.success(request, f"The list “{contact_list.name}” was created.")
            return redirect("contacts:list", public_id=contact_list.public_id)
    return _index_page(request, form, CustomFieldForm())


@tenant_required
def list_detail(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    contact_list = get_contact_list(request.tenant, public_id)
    return _contacts_page(request, contact_list, ContactListForm(initial={"name": contact_list.name}))


@tenant_required
def all_contacts(request: HttpRequest) -> HttpResponse:
    return _contacts_page(request, None, None)


def _contacts_page(
    request: HttpRequest, contact_list: ContactList | None, rename_form: ContactListForm | None
) -> HttpResponse:
    query = _query(request)
    found = contacts.contacts_search(tenant=request.tenant, contact_list=contact_list, query=query)
    if contact_list is None:
        found = found.prefetch_related("lists")
    context = {
        "contact_list": contact_list,
        "page": _page(request, found),
        "query": query,
        "search_form": SearchForm(initial={"q": query}),
        "rename_form": rename_form,
    }
    status = 400 if rename_form is not None and rename_form.errors else 200
    return render(request, "contacts/contacts.html", context, status=status)


@require_POST
@tenant_required
def list_rename(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    contact_list = get_contact_list(request.tenant, public_id)
    form = ContactListForm(request.POST)
    if form.is_valid():
        try:
            contacts.list_rename(contact_list=contact_list, name=form.cleaned_data["name"])
        except ValidationError as exc:
            _invalid(form, exc)
            contact_list.refresh_from_db()
        else:
            messages.success(request, "The list was renamed.")
            return redirect("contacts:list", public_id=contact_list.public_id)
    return _contacts_page(request, contact_list, form)


@require_POST
@tenant_required
def list_delete(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    contact_list = get_contact_list(request.tenant, public_id)
    try:
        contacts.list_delete(contact_list=contact_list)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("contacts:list", public_id=contact_list.public_id)
    messages.success(request, f"The list “{contact_list.name}” was deleted. Its contacts are still under All contacts.")
    return redirect("contacts:index")


# ---------- Contacts ----------


def _list_from_query(request: HttpRequest) -> ContactList | None:
    try:
        public_id = uuid.UUID(request.GET.get("list", ""))
    except ValueError:
        return None
    return ContactList.objects.filter(tenant=request.tenant, public_id=public_id).first()


@tenant_required
def contact_add(request: HttpRequest) -> HttpResponse:
    chosen = _list_from_query(request)
    initial = {"lists": [chosen]} if chosen else {}
    form = ContactForm(request.POST or None, tenant=request.tenant, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            contact = contacts.contact_create(tenant=request.tenant, **_contact_data(form))
        except ValidationError as exc:
            _invalid(form, exc)
        else:
            messages.success(request, f"{contact.email} was added.")
            return redirect("contacts:list", public_id=chosen.public_id) if chosen else redirect("contacts:all")
    return _contact_form_page(request, form, None, chosen)


@tenant_required
def contact_edit(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    contact = get_contact(request.tenant, public_id)
    form = ContactForm(request.POST or None, tenant=request.tenant, initial=ContactForm.initial_for(contact))
    if request.method == "POST" and form.is_valid():
        try:
            contacts.contact_update(contact=contact, **_contact_data(form))
        except ValidationError as exc:
            _invalid(form, exc)
            contact.refresh_from_db()
        else:
            messages.success(request, f"{contact.email} was saved.")
            return redirect("contacts:edit", public_id=contact.public_id)
    return _contact_form_page(request, form, contact, None)


def _contact_data(form: ContactForm) -> dict:
    data = form.cleaned_data
    return {
        "email": data["email"],
        "first_name": data["first_name"],
        "last_name": data["last_name"],
        "fields": form.custom_values(),
        "lists": data["lists"],
    }


def _contact_form_page(
    request: HttpRequest, form: ContactForm, contact: Contact | None, chosen: ContactList | None
) -> HttpResponse:
    context = {
        "form": form,
        "contact": contact,
        "chosen": chosen,
        "suppressed": contact is not None and contacts.is_suppressed(request.tenant, contact.email),
    }
    return render(request, "contacts/contact_form.html", context, status=400 if form.errors else 200)


@require_POST
@tenant_required
def contact_delete(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    contact = get_contact(request.tenant, public_id)
    contacts.contact_delete(contact=contact)
    messages.success(request, f"{contact.email} was deleted.")
    return _back(request, "contacts:all")


@require_POST
@tenant_required
def field_add(request: HttpRequest) -> HttpResponse:
    form = CustomFieldForm(request.POST)
    if form.is_valid():
        try:
            field = contacts.custom_field_create(tenant=request.tenant, **form.cleaned_data)
        except ValidationError as exc:
            _invalid(form, exc)
        else:
            messages.success(request, f"The field “{field.label}” was added: use {{{{ {field.key} }}}} in templates.")
            return redirect("contacts:index")
    return _index_page(request, ContactListForm(), form)


# ---------- Suppression list ----------


@tenant_required
def suppressions(request: HttpRequest) -> HttpResponse:
    return _suppressions_page(request, SuppressionForm())


def _suppressions_page(request: HttpRequest, form: SuppressionForm) -> HttpResponse:
    query = _query(request)
    context = {
        "page": _page(request, contacts.suppressions_search(tenant=request.tenant, query=query)),
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
            _invalid(form, exc)
        else:
            messages.success(request, f"{suppression.email} will receive no letters.")
            return redirect("contacts:suppressions")
    return _suppressions_page(request, form)


@require_POST
@tenant_required
def suppression_remove(request: HttpRequest) -> HttpResponse:
    form = SuppressionRemoveForm(request.POST)
    if form.is_valid() and contacts.suppression_remove(tenant=request.tenant, email=form.cleaned_data["email"]):
        messages.success(request, f"{form.cleaned_data['email']} may receive letters again.")
    return redirect("contacts:suppressions")


@tenant_required
def suppression_export(request: HttpRequest) -> StreamingHttpResponse:
    rows = (
        Suppression.objects.filter(tenant=request.tenant)
        .order_by("email")
        .values_list("email", "reason", "note", "created_at")
        .iterator(chunk_size=2000)
    )
    return _csv_response("suppressions.csv", ["email", "reason", "note", "added"], rows)


# ---------- Imports ----------


@csrf_exempt
@tenant_required
def import_upload(request: HttpRequest) -> HttpResponse:
    # The size limit must be in place before the body is parsed, which the
    # CSRF check would do; so the check runs after it, in _import_upload.
    handler = imports.SizeLimitUploadHandler(request)
    request.upload_handlers.insert(0, handler)
    return _import_upload(request, handler)


@csrf_protect
def _import_upload(request: HttpRequest, handler: imports.SizeLimitUploadHandler) -> HttpResponse:
    form = ImportUploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST":
        if not form.is_valid() and handler.exceeded:
            form.errors["file"] = form.error_class([f"The file is larger than {imports.size_label()}."])
        elif form.is_valid():
            try:
                imp = imports.import_upload(tenant=request.tenant, by=request.user, upload=form.cleaned_data["file"])
            except ValidationError as exc:
                form.add_error("file", exc)
            else:
                return redirect("contacts:import_mapping", public_id=imp.public_id)
    context = {"form": form, "max_size": imports.size_label()}
    return render(request, "contacts/import_upload.html", context, status=400 if form.errors else 200)


@tenant_required
def import_mapping(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    imp = get_contact_import(request.tenant, public_id)
    if imp.status != ContactImport.Status.UPLOADED:
        return redirect("contacts:import", public_id=imp.public_id)
    form = ImportMappingForm(request.POST or None, contact_import=imp)
    if request.method == "POST" and form.is_valid():
        try:
            imports.import_start(
                contact_import=imp,
                columns=form.columns(),
                contact_list=form.cleaned_data["contact_list"],
                new_list_name=form.cleaned_data["new_list_name"],
            )
        except ValidationError as exc:
            _invalid(form, exc)
        else:
            return redirect("contacts:import", public_id=imp.public_id)
    context = {"form": form, "imp": imp, "delimiter": DELIMITER_NAMES.get(imp.delimiter, "commas")}
    return render(request, "contacts/import_mapping.html", context, status=400 if form.errors else 200)


@require_POST
@tenant_required
def import_discard(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    imp = get_contact_import(request.tenant, public_id)
    try:
        imports.import_discard(contact_import=imp)
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
    }


@tenant_required
def import_rejections(request: HttpRequest, public_id: uuid.UUID) -> StreamingHttpResponse:
    imp = get_contact_import(request.tenant, public_id)
    rows = imp.rejections.order_by("line", "pk").values_list("line", "reason", "raw").iterator(chunk_size=2000)
    return _csv_response(f"rejected-rows-{imp.public_id}.csv", ["line", "reason", "raw"], rows)


# ---------- CSV downloads ----------


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_response(filename: str, header: list[str], rows: Iterable[Iterable[object]]) -> StreamingHttpResponse:
    writer = csv.writer(_Echo())

    def lines() -> Iterable[str]:
        yield "\ufeff"  # so that Excel reads the file as UTF-8
        yield writer.writerow(header)
        for row in rows:
            yield writer.writerow([_cell(value) for value in row])

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _cell(value: object) -> str:
    """A spreadsheet must not run a cell as a formula: the rows come from
    files and forms anyone could have filled."""
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
