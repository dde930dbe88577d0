"""The link every letter carries. It works without login: the signed token
names the tenant and the address. GET only asks (link scanners and
prefetchers must not unsubscribe anyone); POST unsubscribes, including the
RFC 8058 one-click POST that mailbox providers send with the body
`List-Unsubscribe=One-Click` and no CSRF token — the signature is the
protection, so the view is exempt from CSRF.

The page is in the language any page would choose (accounts.languages),
with the organisation that sent the letter in place of the visitor's: a
browser that asks for no language we have gets the organisation's, as its
letters are, not English."""

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import translation
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from accounts import languages
from accounts.models import Tenant

from .. import contacts


@login_not_required
@csrf_exempt
@require_http_methods(["GET", "HEAD", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    try:
        tenant, email = contacts.unsubscribe_target(token=token)
    except contacts.BadUnsubscribeLink:
        return render(request, "unsubscribe/invalid.html", status=400)
    _speak_as(request, tenant)
    context = {"tenant": tenant, "email": email}
    if request.method == "POST":
        contacts.unsubscribe(token=token)
        return render(request, "unsubscribe/done.html", context)
    return render(request, "unsubscribe/confirm.html", context)


def _speak_as(request: HttpRequest, tenant: Tenant) -> None:
    user = request.user
    saved = user.language if user.is_authenticated else ""
    translation.activate(languages.of_request(request, saved=saved, tenant=tenant))
    request.LANGUAGE_CODE = translation.get_language()
