"""The link every letter carries. It works without login: the signed token
names the tenant and the address. GET only asks (link scanners and
prefetchers must not unsubscribe anyone); POST unsubscribes, including the
RFC 8058 one-click POST that mailbox providers send with the body
`List-Unsubscribe=One-Click` and no CSRF token — the signature is the
protection, so the view is exempt from CSRF."""

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from .. import contacts


@login_not_required
@csrf_exempt
@require_http_methods(["GET", "HEAD", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    try:
        tenant, email = contacts.unsubscribe_target(token=token)
    except contacts.BadUnsubscribeLink:
        return render(request, "unsubscribe/invalid.html", status=400)
    context = {"tenant": tenant, "email": email}
    if request.method == "POST":
        contacts.unsubscribe(token=token)
        return render(request, "unsubscribe/done.html", context)
    return render(request, "unsubscribe/confirm.html", context)
