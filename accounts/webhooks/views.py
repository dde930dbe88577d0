"""The organisation's webhook endpoints: owners and admins add, edit,
enable, disable, delete them, rotate a secret and send a test event;
members may look. A secret is shown once, on the page the browser is sent
to right after it was made, and never again."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from ..access import get_webhook_endpoint, manager_required
from . import delivery, services
from .events import TYPES
from .forms import EndpointForm
from .models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

# The secret just made, kept in the session only until its page shows it.
FRESH_SECRET_KEY = "fresh_webhook_secret"
LOG_PAGE_SIZE = 50


def _show_once(request: HttpRequest, endpoint: WebhookEndpoint, secret: str) -> HttpResponse:
    request.session[FRESH_SECRET_KEY] = {"endpoint": str(endpoint.public_id), "secret": secret}
    return redirect("accounts:webhooks:detail", public_id=endpoint.public_id)


def _fresh_secret(request: HttpRequest, endpoint: WebhookEndpoint) -> str | None:
    fresh = request.session.get(FRESH_SECRET_KEY)
    if not fresh or fresh.get("endpoint") != str(endpoint.public_id):
        return None
    del request.session[FRESH_SECRET_KEY]
    return fresh["secret"]


@manager_required
def endpoints(request: HttpRequest) -> HttpResponse:
    form = EndpointForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            endpoint, secret = services.endpoint_create(tenant=request.tenant, **form.cleaned_data)
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, _("Endpoint added. Copy its signing secret now: it is shown only once."))
            return _show_once(request, endpoint, secret)
    context = {
        "endpoints": WebhookEndpoint.objects.filter(tenant=request.tenant),
        "form": form,
        "event_types": TYPES,
        "max_endpoints": services.MAX_ENDPOINTS,
    }
    return render(request, "accounts/webhooks/list.html", context, status=400 if form.errors else 200)


@manager_required
def endpoint(request: HttpRequest, public_id: str) -> HttpResponse:
    endpoint = get_webhook_endpoint(request.tenant, public_id)
    initial = {"url": endpoint.url, "description": endpoint.description, "events": endpoint.events}
    form = EndpointForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            services.endpoint_update(endpoint=endpoint, **form.cleaned_data)
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, _("Endpoint saved."))
            return redirect("accounts:webhooks:detail", public_id=endpoint.public_id)
    attempts = WebhookAttempt.objects.filter(delivery__endpoint=endpoint).select_related("delivery")
    context = {
        "endpoint": endpoint,
        "form": form,
        "secret": _fresh_secret(request, endpoint),
        "page": Paginator(attempts, LOG_PAGE_SIZE).get_page(request.GET.get("page")),
        "waiting": endpoint.deliveries.filter(status=WebhookDelivery.Status.PENDING).count(),
    }
    response = render(request, "accounts/webhooks/detail.html", context, status=400 if form.errors else 200)
    response["Cache-Control"] = "no-store"  # the secret, once, must not stay in a cache
    return response


@require_POST
@manager_required
def endpoint_enabled(request: HttpRequest, public_id: str) -> HttpResponse:
    endpoint = get_webhook_endpoint(request.tenant, public_id)
    enabled = request.POST.get("enabled") == "1"
    services.endpoint_set_enabled(endpoint=endpoint, enabled=enabled)
    messages.success(request, _("Endpoint enabled.") if enabled else _("Endpoint disabled: no events are sent to it."))
    return redirect("accounts:webhooks:detail", public_id=endpoint.public_id)


@require_POST
@manager_required
def endpoint_rotate(request: HttpRequest, public_id: str) -> HttpResponse:
    endpoint = get_webhook_endpoint(request.tenant, public_id)
    secret = services.endpoint_rotate_secret(endpoint=endpoint)
    messages.success(request, _("New secret made; the old one no longer signs anything. Copy it now."))
    return _show_once(request, endpoint, secret)


@require_POST
@manager_required
def endpoint_test(request: HttpRequest, public_id: str) -> HttpResponse:
    endpoint = get_webhook_endpoint(request.tenant, public_id)
    delivery.send_test(endpoint=endpoint)
    messages.success(request, _("Test event sent. Its attempt appears in the log below in a moment."))
    return redirect("accounts:webhooks:detail", public_id=endpoint.public_id)


@require_POST
@manager_required
def endpoint_delete(request: HttpRequest, public_id: str) -> HttpResponse:
    endpoint = get_webhook_endpoint(request.tenant, public_id)
    services.endpoint_delete(endpoint=endpoint)
    messages.success(request, _("Endpoint deleted."))
    return redirect("accounts:webhooks:list")
