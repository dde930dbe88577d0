"""Bounce pages: the tenant's unmatched reports, one report, and the
bounces of one mailing. Read-only; every member may look."""

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from accounts.access import tenant_required

from ..access import get_mailing
from ..bounces import selectors as bounces

PAGE_SIZE = 50


@tenant_required
def unmatched(request: HttpRequest) -> HttpResponse:
    reports = bounces.unmatched_reports(request.tenant)
    page = Paginator(reports, PAGE_SIZE).get_page(request.GET.get("page"))
    mailbox = getattr(request.tenant, "bounce_mailbox", None)
    return render(request, "bounces/unmatched.html", {"page": page, "mailbox": mailbox})


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
