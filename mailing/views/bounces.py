"""Bounce pages: the tenant's bounce page (where reports go, unconfirmed
and unmatched reports), one report, and the bounces of one mailing.
Read-only; every member may look."""

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from accounts.access import tenant_required
from servers.access import get_mailbox
from servers.selectors import platform_servers, report_routes, tenant_servers

from ..access import get_mailing
from ..bounces import selectors as bounces

PAGE_SIZE = 50


@tenant_required
def unmatched(request: HttpRequest) -> HttpResponse:
    """The tenant's bounce page: where each server's reports go and whether
    Postroute reads them, the unconfirmed reports and the unmatched ones."""
    tenant = request.tenant
    page = Paginator(bounces.unmatched_reports(tenant), PAGE_SIZE).get_page(request.GET.get("page"))
    servers = [*tenant_servers(tenant), *platform_servers()]
    routes = report_routes(tenant.pk, servers)
    context = {
        "page": page,
        "unconfirmed": bounces.unconfirmed_reports(tenant)[:PAGE_SIZE],
        "mailbox": get_mailbox(tenant),
        "routes": [(server, routes[server.pk]) for server in servers],
    }
    return render(request, "bounces/unmatched.html", context)


@tenant_required
def report_detail(request: HttpRequest, public_id: str) -> HttpResponse:
    report = bounces.get_report(request.tenant, public_id)
    return render(request, "bounces/report.html", {"report": report})


@tenant_required
def mailing_bounces(request: HttpRequest, public_id: str) -> HttpResponse:
    mailing = get_mailing(request.tenant, public_id)
    page = Paginator(bounces.mailing_bounces(mailing), PAGE_SIZE).get_page(request.GET.get("page"))
    context = {"mailing": mailing, "page": page, "summary": bounces.mailing_bounce_summary(mailing)}
    return render(request, "bounces/mailing.html", context)
