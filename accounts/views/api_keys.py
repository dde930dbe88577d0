"""The organisation's API keys: owners and admins make them (the secret is
shown once, on the answer to the POST, never again) and revoke them;
members may look at the list."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from .. import api_keys
from ..access import get_api_key, manager_required
from ..forms import ApiKeyForm
from ..models import ApiKey


@never_cache
@manager_required
def api_key_list(request: HttpRequest) -> HttpResponse:
    form = ApiKeyForm(request.POST or None)
    secret = None
    status = 200
    if request.method == "POST" and form.is_valid():
        try:
            key, secret = api_keys.api_key_create(tenant=request.tenant, by=request.user, **form.cleaned_data)
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            form = ApiKeyForm()
            messages.success(
                request, _("Key “%(name)s” created. Copy it now: it is not shown again.") % {"name": key.name}
            )
    if form.errors:
        status = 400
    keys = ApiKey.objects.filter(tenant=request.tenant).select_related("created_by")
    context = {"form": form, "secret": secret, "keys": keys}
    return render(request, "accounts/api_keys.html", context, status=status)


@require_POST
@manager_required
def api_key_revoke(request: HttpRequest, public_id: str) -> HttpResponse:
    key = get_api_key(request.tenant, public_id)
    api_keys.api_key_revoke(api_key=key)
    messages.success(request, _("Key “%(name)s” revoked.") % {"name": key.name})
    return redirect("accounts:api_keys")
