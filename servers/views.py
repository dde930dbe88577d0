"""The tenant's sending servers and bounce mailbox. Everyone in the tenant
may look; owners and admins change them."""

from collections.abc import Callable

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils.formats import localize
from django.utils.translation import gettext as _
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST, require_safe

from accounts.access import manager_required, tenant_required

from . import deliverability, presets, probes, selectors, services
from .access import get_connection_test, get_mailbox, get_server
from .forms import BounceMailboxForm, SmtpServerForm, TestForm
from .models import BounceMailbox, SmtpServer


@manager_required
def server_list(request: HttpRequest) -> HttpResponse:
    return _list_page(request)


def _list_page(request: HttpRequest, tested: SmtpServer | None = None, form: TestForm | None = None) -> HttpResponse:
    """The servers; `form` is the refused test form of `tested`, shown
    in its row with what was typed."""
    tenant = request.tenant
    servers = list(selectors.platform_servers())
    quotas = selectors.platform_quotas(servers, tenant)
    for server in servers:
        server.quota_share = quotas[server.pk]  # with the quota it shares with its creator's other organisations
    platform = [(s, quotas[s.pk].own) for s in servers]
    own = list(selectors.tenant_servers(tenant).select_related("bounce_mailbox"))
    routes = selectors.report_routes(tenant.pk, [*servers, *own])
    for server in [*servers, *own]:
        server.route = routes[server.pk]
        server.own_mailbox = getattr(server, "bounce_mailbox", None) if server.tenant_id else None
    # Will receivers accept letters from each server's own address?
    verdicts = deliverability.check_pairs((s, s.sender_email, s.route.address) for s in [*servers, *own])
    for server, verdict in zip([*servers, *own], verdicts or [], strict=False):
        server.verdict = verdict
    context = {
        "platform": platform,
        "servers": own,
        "mailbox": get_mailbox(tenant),
        "test_form": form or TestForm(),
        "tested": tested.public_id if tested else None,
    }
    return render(request, "servers/list.html", context, status=400 if form else 200)


def _preset_initial(key: str | None) -> dict:
    provider = presets.BY_KEY.get(key or "")
    if provider is None or provider.smtp is None:
        return {"allow_sender_substitution": provider is not None and provider.allows_substitution}
    return {
        "name": provider.name,
        "host": provider.smtp.host,
        "port": provider.smtp.port,
        "security": provider.smtp.security,
        "allow_sender_substitution": provider.allows_substitution,
    }


def _read_only(request: HttpRequest, form: SmtpServerForm | BounceMailboxForm) -> bool:
    """A member sees the settings but cannot change them: every field is
    disabled and the page offers no Save (a POST is still a 403)."""
    if request.membership.can_manage:
        return False
    for field in form.fields.values():
        field.disabled = True
    return True


def _server_form_page(request: HttpRequest, form: SmtpServerForm, server: SmtpServer | None) -> HttpResponse:
    context = {
        "read_only": _read_only(request, form),
        "form": form,
        "server": server,
        # As saved: a form being corrected holds values not yet in force.
        "verdict": _own_verdict(request, server) if server is not None and request.method == "GET" else None,
        "providers": presets.PROVIDERS,
        "custom": presets.CUSTOM,
        "presets_json": presets.as_json(),
        "chosen": request.GET.get("preset"),
    }
    return render(request, "servers/form.html", context, status=400 if form.errors else 200)


def _own_verdict(request: HttpRequest, server: SmtpServer) -> deliverability.Verdict | None:
    """Will receivers accept letters from the server's own address?"""
    route = selectors.report_routes(request.tenant.pk, [server])[server.pk]
    verdicts = deliverability.check_pairs([(server, server.sender_email, route.address)])
    return verdicts[0] if verdicts else None


def _saved(form: SmtpServerForm | BounceMailboxForm, save: Callable[[], object]) -> bool:
    """Save through the service; its refusal goes on the form. The service
    checks again what the form checked, and the answer may differ: a host's
    DNS answer may have changed to a private address in between."""
    try:
        save()
    except ValidationError as exc:
        for field, errors in exc.update_error_dict({}).items():
            form.add_error(field if field in form.fields else None, errors)
        return False
    return True


@sensitive_post_parameters("password", "imap_password")
@manager_required
def server_add(request: HttpRequest) -> HttpResponse:
    server = SmtpServer(tenant=request.tenant)
    form = SmtpServerForm(request.POST or None, instance=server, initial=_preset_initial(request.GET.get("preset")))
    if request.method == "POST" and form.is_valid() and _saved(form, lambda: _save_server(form)):
        messages.success(request, _("%(name)s was added. Test its connection before sending.") % {"name": server.name})
        return redirect("servers:list")
    return _server_form_page(request, form, None)


@transaction.atomic
def _save_server(form: SmtpServerForm) -> None:
    password = form.new_password()
    server = services.server_save(server=form.save(commit=False), password=password)
    services.server_mailbox_save(server=server, reading=form.bounce_reading(), password_changed=bool(password))


@sensitive_post_parameters("password", "imap_password")
@manager_required
def server_edit(request: HttpRequest, public_id: str) -> HttpResponse:
    server = get_server(request.tenant, public_id)
    form = SmtpServerForm(request.POST or None, instance=server)
    if request.method == "POST" and form.is_valid() and _saved(form, lambda: _save_server(form)):
        messages.success(request, _("%(name)s was saved.") % {"name": server.name})
        return redirect("servers:list")
    return _server_form_page(request, form, server)


@require_POST
@manager_required
def server_delete(request: HttpRequest, public_id: str) -> HttpResponse:
    server = get_server(request.tenant, public_id)
    try:
        services.server_delete(server=server)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, _("%(name)s was deleted.") % {"name": server.name})
    return redirect("servers:list")


@require_POST
@manager_required
def server_toggle(request: HttpRequest, public_id: str) -> HttpResponse:
    server = get_server(request.tenant, public_id)
    services.server_set_enabled(server=server, enabled=not server.enabled)
    return redirect("servers:list")


@require_POST
@manager_required
def server_move(request: HttpRequest, public_id: str) -> HttpResponse:
    services.server_move(server=get_server(request.tenant, public_id), up=request.POST.get("direction") == "up")
    return redirect("servers:list")


@require_POST
@manager_required
def server_reorder(request: HttpRequest) -> HttpResponse:
    # Each server once, at its first place: a repeated id was a place (and
    # an UPDATE) each time.
    public_ids = list(dict.fromkeys(request.POST.getlist("order")))
    services.server_reorder(tenant=request.tenant, public_ids=public_ids)
    return JsonResponse({"ok": True})


@require_POST
@manager_required
def server_test(request: HttpRequest, public_id: str) -> HttpResponse:
    server = get_server(request.tenant, public_id)
    form = TestForm(request.POST)
    if not form.is_valid():  # say so, rather than test without the letter asked for
        return _list_page(request, tested=server, form=form)
    return _start_test(request, server=server, send_to=form.cleaned_data["send_to"])


@require_POST
@manager_required
def server_mailbox_test(request: HttpRequest, public_id: str) -> HttpResponse:
    """The connection test of the server's own mailbox, read for bounces."""
    server = get_server(request.tenant, public_id)
    mailbox = getattr(server, "bounce_mailbox", None)
    if mailbox is None:
        return redirect("servers:edit", public_id=server.public_id)
    return _start_test(request, mailbox=mailbox)


@sensitive_post_parameters("password")
@manager_required
def mailbox_edit(request: HttpRequest) -> HttpResponse:
    mailbox = get_mailbox(request.tenant) or BounceMailbox(tenant=request.tenant)
    form = BounceMailboxForm(request.POST or None, instance=mailbox)
    if (
        request.method == "POST"
        and form.is_valid()
        and _saved(form, lambda: services.mailbox_save(mailbox=form.save(commit=False), password=form.new_password()))
    ):
        messages.success(request, _("The bounce mailbox was saved. Test its connection."))
        return redirect("servers:list")
    context = {
        "read_only": _read_only(request, form),
        "form": form,
        "mailbox": mailbox if mailbox.pk else None,
        "presets_json": presets.as_json(),
    }
    return render(request, "servers/mailbox_form.html", context, status=400 if form.errors else 200)


@require_POST
@manager_required
def mailbox_delete(request: HttpRequest) -> HttpResponse:
    if mailbox := get_mailbox(request.tenant):
        mailbox.delete()
        messages.success(request, _("The bounce mailbox was removed."))
    return redirect("servers:list")


@require_POST
@manager_required
def mailbox_test(request: HttpRequest) -> HttpResponse:
    mailbox = get_mailbox(request.tenant)
    if mailbox is None:
        return redirect("servers:mailbox")
    return _start_test(request, mailbox=mailbox)


def _start_test(request: HttpRequest, **target: object) -> HttpResponse:
    try:
        test = services.connection_test_start(tenant=request.tenant, by=request.user, **target)
    except services.TooManyTests as exc:
        messages.error(request, str(exc))
        return redirect("servers:list")
    return redirect("servers:test", public_id=test.public_id)


@require_safe
@tenant_required
def test_detail(request: HttpRequest, public_id: str) -> HttpResponse:
    test = get_connection_test(request.tenant, public_id)
    return render(request, "servers/test.html", {"test": test, "data": _test_data(test)})


@require_safe
@tenant_required
def test_json(request: HttpRequest, public_id: str) -> JsonResponse:
    return JsonResponse(_test_data(get_connection_test(request.tenant, public_id)))


def _test_data(test) -> dict:
    return {
        "status": test.status,
        "status_label": test.get_status_display(),
        "finished": test.finished_at is not None,
        # Each step's time also as the page writes numbers ("1 500"), for the script.
        "steps": [{**step, "shown_ms": localize(step.get("ms") or 0)} for step in probes.shown_steps(test.steps)],
        "error": test.error_message,
        "hint": test.error_hint,
        "category": test.category,
    }
