"""Mail templates: list, create, edit, delete, and the preview with a chosen
contact. Every member of the tenant may write templates."""

import uuid
from dataclasses import dataclass, replace

from csp.decorators import csp_update
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext
from django.views.decorators.cache import never_cache
from django.views.decorators.clickjacking import xframe_options_sameorigin

from accounts.access import tenant_required
from accounts.models import Tenant
from servers import deliverability
from servers.models import SmtpServer
from servers.selectors import platform_servers, report_routes, tenant_servers

from .. import rendering, templates_services
from ..access import get_contact, get_template
from ..forms.templates import MailTemplateForm
from ..models import Contact, CustomField, MailTemplate
from ..sender import ResolvedSender, readable_from, resolve_sender
from ..unsubscribe import unsubscribe_url

PREVIEW_CONTACTS = 200
# The rendered HTML is the tenant's own markup: in its own sandboxed,
# script-less origin it can neither run nor reach the app.
PREVIEW_HTML_CSP = "sandbox; default-src 'none'; img-src https: data:; style-src 'unsafe-inline'"

NOTE_SUBSTITUTED = gettext_lazy("Uses the template's sender: this server allows sender substitution.")
NOTE_REPLACED = gettext_lazy("Replaced with the server's address: this server does not allow sender substitution.")
NOTE_NO_FIXED = gettext_lazy("The template has no fixed sender address, so the server's own address is used.")


@tenant_required
def template_list(request: HttpRequest) -> HttpResponse:
    templates = MailTemplate.objects.filter(tenant=request.tenant).order_by("name", "pk")
    return render(request, "mail_templates/list.html", {"templates": templates})


@tenant_required
def template_add(request: HttpRequest) -> HttpResponse:
    return _edit(request, MailTemplate(tenant=request.tenant))


@tenant_required
def template_edit(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    return _edit(request, get_template(request.tenant, public_id))


def _edit(request: HttpRequest, template: MailTemplate) -> HttpResponse:
    is_new = template.pk is None
    form = MailTemplateForm(request.POST or None, instance=template)
    if request.method == "POST" and form.is_valid():
        try:
            templates_services.template_save(template=form.save(commit=False))
        except ValidationError as exc:  # a custom field removed meanwhile
            form.add_error(None, exc)
        else:
            done = (
                pgettext("mail template", "%(name)s was created.")
                if is_new
                else pgettext("mail template", "%(name)s was saved.")
            )
            messages.success(request, done % {"name": template.name})
            if rendering.has_script(template.html_body):
                messages.warning(request, rendering.SCRIPT_WARNING)
            return redirect("templates:preview", public_id=template.public_id)
    context = {
        "form": form,
        "template": None if is_new else template,
        "placeholders": [f"{{{{ {name} }}}}" for name in rendering.ordered(form.known)],
    }
    return render(request, "mail_templates/form.html", context, status=400 if form.errors else 200)


@tenant_required
def template_delete(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    template = get_template(request.tenant, public_id)
    if request.method != "POST":
        return render(request, "mail_templates/confirm.html", {"template": template})
    try:
        templates_services.template_delete(template=template)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, _("%(name)s was deleted.") % {"name": template.name})
    return redirect("templates:list")


@csp_update({"frame-src": ["'self'"]})
@tenant_required
def template_preview(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    tenant = request.tenant
    template = get_template(tenant, public_id)
    contact = _chosen_contact(request, tenant)
    rows = from_rows(tenant, template)
    context = {
        "template": template,
        "contact": contact,
        "contacts": _contact_choices(tenant, contact),
        "rows": rows,
        "unhonoured": bool(template.sender_email) and not any(row.sender.substituted for row in rows),
        **_rendered(template, _context(tenant, contact)),
    }
    return render(request, "mail_templates/preview.html", context)


@never_cache
@xframe_options_sameorigin
@tenant_required
def template_preview_html(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    """The HTML part alone, for the preview page's sandboxed iframe."""
    template = get_template(request.tenant, public_id)
    if not template.html_body:
        raise Http404("This template has no HTML part.")
    context = _context(request.tenant, _chosen_contact(request, request.tenant))
    try:
        html = rendering.render(template.html_body, context, html=True)
    except rendering.RenderError:
        raise Http404("The HTML part has errors; edit the template.") from None
    response = HttpResponse(html, content_type="text/html; charset=utf-8")
    # Set here, so the site-wide policy (script-src 'self', frame-ancestors
    # 'none') is not applied by the middleware to this one response.
    response["Content-Security-Policy"] = PREVIEW_HTML_CSP
    return response


# ---------- Preview helpers ----------


@dataclass(frozen=True)
class FromRow:
    server: SmtpServer
    sender: ResolvedSender
    shown: str  # the From header as people read it (sender.readable_from)
    note: str
    verdict: deliverability.Verdict | None = None  # will receivers accept it (None: checks off)


def from_rows(tenant: Tenant, template: MailTemplate) -> list[FromRow]:
    """The From each of the tenant's servers, then each platform server, would
    put on a letter of this template (DOMAIN.md §3), and whether receivers
    will accept it."""
    rows = [_from_row(server, template) for server in [*tenant_servers(tenant), *platform_servers()]]
    if not rows or not deliverability.enabled():
        return rows
    routes = report_routes(tenant.pk, [row.server for row in rows])
    verdicts = deliverability.check_pairs((row.server, row.sender.email, routes[row.server.pk].address) for row in rows)
    return [replace(row, verdict=verdict) for row, verdict in zip(rows, verdicts or [], strict=True)]


def _from_row(server: SmtpServer, template: MailTemplate) -> FromRow:
    sender = resolve_sender(server, template)
    return FromRow(server, sender, readable_from(sender.name, sender.email), _note(template, sender))


def _note(template: MailTemplate, sender: ResolvedSender) -> str:
    if not template.sender_email:
        return NOTE_NO_FIXED
    return NOTE_SUBSTITUTED if sender.substituted else NOTE_REPLACED


def _chosen_contact(request: HttpRequest, tenant: Tenant) -> Contact:
    """The contact named by ?contact=, else the first one, else a sample."""
    chosen = request.GET.get("contact", "")
    if chosen:
        try:
            return get_contact(tenant, uuid.UUID(chosen))
        except ValueError:
            raise Http404("No such contact.") from None
    return _tenant_contacts(tenant).first() or _sample_contact(tenant)


def _sample_contact(tenant: Tenant) -> Contact:
    # Custom fields show their label, so one sees where each value lands.
    fields = dict(CustomField.objects.filter(tenant=tenant).values_list("key", "label"))
    return Contact(tenant=tenant, email="jane@example.com", first_name="Jane", last_name="Example", fields=fields)


def _tenant_contacts(tenant: Tenant) -> QuerySet[Contact]:
    return Contact.objects.filter(tenant=tenant).order_by("email", "pk")


def _contact_choices(tenant: Tenant, contact: Contact) -> list[Contact]:
    choices = list(_tenant_contacts(tenant)[:PREVIEW_CONTACTS])
    if contact.pk and contact not in choices:
        choices.insert(0, contact)
    return choices


def _context(tenant: Tenant, contact: Contact) -> dict[str, str]:
    url = unsubscribe_url(settings.SITE_URL, tenant.pk, contact.email)
    return rendering.contact_context(contact, unsubscribe_url=url)


def _rendered(template: MailTemplate, context: dict[str, str]) -> dict[str, str]:
    try:
        return {
            "subject": rendering.render(template.subject, context, html=False),
            "text": rendering.render(template.text_body, context, html=False),
        }
    except rendering.RenderError as exc:  # stored before validation, or by another path
        return {"render_error": str(exc)}
