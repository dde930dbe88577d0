"""Choosing the interface language: anyone from the header (kept in a
cookie, and on the account when signed in), and an organisation's default
by its owners and admins."""

from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from .. import languages
from ..access import manager_required
from ..middleware import set_language_cookie


def _back(request: HttpRequest) -> str:
    url = request.POST.get("next") or ""
    safe = url_has_allowed_host_and_scheme(url, allowed_hosts={request.get_host()}, require_https=request.is_secure())
    return url if safe and url.startswith("/") else "/"


@login_not_required
@require_POST
def language_set(request: HttpRequest) -> HttpResponse:
    language = request.POST.get("language", "")
    response = redirect(_back(request))
    if language not in languages.CODES:
        return response
    if request.user.is_authenticated and request.user.language != language:
        request.user.language = language
        request.user.save(update_fields=["language"])
    set_language_cookie(response, language)
    return response


@require_POST
@manager_required
def tenant_language(request: HttpRequest) -> HttpResponse:
    language = request.POST.get("language", "")
    if language in languages.CODES:
        tenant = request.tenant
        tenant.default_language = language
        tenant.save(update_fields=["default_language"])
        messages.success(request, _("The organisation's language is saved."))
    return redirect(_back(request))
