"""The contacts pages: lists, contacts and custom fields. Everyone in the
tenant may use them (members work with content); tenant objects come
through the access helpers, so another tenant's object is a 404."""

import uuid

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from accounts.access import tenant_required

from .. import contacts
from ..access import get_contact, get_contact_list
from ..forms.contacts import (
    ContactForm,
    ContactListForm,
    CustomFieldForm,
    SearchForm,
)
from ..models import Contact, ContactImport, ContactList, CustomField, Suppression
from .common import back, invalid, page_of, search_query

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
            invalid(form, exc)
        else:
            messages.success(request, _("The list “%(name)s” was created.") % {"name": contact_list.name})
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
    query = search_query(request)
    found = contacts.contacts_search(tenant=request.tenant, contact_list=contact_list, query=query)
    if contact_list is None:
        found = found.prefetch_related("lists")
    context = {
        "contact_list": contact_list,
        "page": page_of(request, found),
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
            invalid(form, exc)
            contact_list.refresh_from_db()
        else:
            messages.success(request, _("The list was renamed."))
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
    messages.success(
        request,
        _("The list “%(name)s” was deleted. Its contacts are still under All contacts.") % {"name": contact_list.name},
    )
    return redirect("contacts:index")


# ---------- Contacts ----------


def _list_fromsearch_query(request: HttpRequest) -> ContactList | None:
    try:
        public_id = uuid.UUID(request.GET.get("list", ""))
    except ValueError:
        return None
    return ContactList.objects.filter(tenant=request.tenant, public_id=public_id).first()


@tenant_required
def contact_add(request: HttpRequest) -> HttpResponse:
    chosen = _list_fromsearch_query(request)
    initial = {"lists": [chosen]} if chosen else {}
    form = ContactForm(request.POST or None, tenant=request.tenant, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            contact = contacts.contact_create(tenant=request.tenant, **_contact_data(form))
        except ValidationError as exc:
            invalid(form, exc)
        else:
            messages.success(request, _("%(email)s was added.") % {"email": contact.email})
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
            invalid(form, exc)
            contact.refresh_from_db()
        else:
            messages.success(request, _("%(email)s was saved.") % {"email": contact.email})
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
    messages.success(request, _("%(email)s was deleted.") % {"email": contact.email})
    return back(request, "contacts:all")


@require_POST
@tenant_required
def field_add(request: HttpRequest) -> HttpResponse:
    form = CustomFieldForm(request.POST)
    if form.is_valid():
        try:
            field = contacts.custom_field_create(tenant=request.tenant, **form.cleaned_data)
        except ValidationError as exc:
            invalid(form, exc)
        else:
            messages.success(
                request,
                _("The field “%(label)s” was added: use {{ %(key)s }} in templates.")
                % {"label": field.label, "key": field.key},
            )
            return redirect("contacts:index")
    return _index_page(request, ContactListForm(), form)
