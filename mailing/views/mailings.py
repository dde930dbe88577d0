"""Mailings: the active-mailings page, a mailing's page with its letters,
and the actions that move it through its states."""

import re

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.formats import localize
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from accounts.access import tenant_required
from servers import deliverability
from servers.selectors import report_routes

from .. import dispatch, selectors
from .. import mailings as services
from ..access import get_mailing
from ..bounces import selectors as bounces
from ..forms.mailings import MailingForm
from ..models import Letter, Mailing
from ..sender import default_reply_to, readable_from, resolve_sender
from . import mailings_live as live

S = Mailing.Status
# The letters page's cursor: a letter's id, in ASCII digits ("²".isdigit()
# is true) and short enough for a bigint.
CURSOR = re.compile(r"[0-9]{1,18}")


@tenant_required
def mailing_list(request: HttpRequest) -> HttpResponse:
    context = {"groups": live.list_payload(request.tenant), "blank": live.blank_list_row()}
    return render(request, "mailings/list.html", context)


def _form_page(request: HttpRequest, form: MailingForm, mailing: Mailing | None) -> HttpResponse:
    status = 400 if form.errors else 200
    return render(request, "mailings/form.html", {"form": form, "mailing": mailing}, status=status)


@tenant_required
def mailing_new(request: HttpRequest) -> HttpResponse:
    return _save(request, Mailing(tenant=request.tenant))


@tenant_required
def mailing_edit(request: HttpRequest, public_id: str) -> HttpResponse:
    mailing = get_mailing(request.tenant, public_id)
    if mailing.status != S.DRAFT or mailing.preparing_since is not None:
        messages.info(request, _("Only a draft can be edited."))
        return redirect("mailings:detail", public_id=mailing.public_id)
    return _save(request, mailing)


def _save(request: HttpRequest, mailing: Mailing) -> HttpResponse:
    form = MailingForm(request.POST or None, instance=mailing, tenant=request.tenant)
    if request.method == "POST" and form.is_valid():
        try:
            services.mailing_save(
                mailing=form.save(commit=False),
                lists=form.cleaned_data["lists"],
                servers=form.ordered_servers(),
                by=request.user,
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            return redirect("mailings:detail", public_id=mailing.public_id)
    return _form_page(request, form, mailing if mailing.pk else None)


def sender_preview(mailing: Mailing) -> tuple[list[dict], bool]:
    """The From each of the mailing's servers will produce, where its
    reports go, and whether a fixed sender in the template is honoured by
    none of them."""
    source = mailing.template if mailing.status in (S.DRAFT, S.SCHEDULED) else mailing
    links = list(mailing.server_links.select_related("server"))
    routes = report_routes(mailing.tenant_id, [link.server for link in links])
    reply_to = default_reply_to(mailing.tenant_id)
    rows = []
    for link in links:
        server = link.server
        resolved = resolve_sender(server, source, reply_to=reply_to)
        row = {"server": server, "from": readable_from(resolved.name, resolved.email), "resolved": resolved}
        rows.append({**row, "route": routes[server.pk], "passed_over": link.passed_over_note})
    unhonoured = bool(source.sender_email) and not any(r["resolved"].substituted for r in rows)
    if mailing.status in (S.DRAFT, S.SCHEDULED):
        _check_receivers(rows)
    return rows, unhonoured


def _check_receivers(rows: list[dict]) -> None:
    """Each row's verdict: will receivers accept its From from its server
    (SPF, DMARC, DKIM)? Nothing is added when the checks are off."""
    pairs = [(row["server"], row["resolved"].email, row["route"].address) for row in rows]
    for row, verdict in zip(rows, deliverability.check_pairs(pairs) or [], strict=False):
        row["verdict"] = verdict


def rejected(rows: list[dict]) -> list[dict]:
    """The rows whose letters receivers will refuse (DMARC p=reject)."""
    return [row for row in rows if "verdict" in row and row["verdict"].rejected]


@tenant_required
def mailing_detail(request: HttpRequest, public_id: str) -> HttpResponse:
    mailing = get_mailing(request.tenant, public_id)
    status = request.GET.get("status") or None
    if status and status not in Letter.Status.values:
        raise Http404("Unknown status.")
    after = request.GET.get("after") or None
    if after is not None and not CURSOR.fullmatch(after):
        raise Http404("Unknown page.")
    data = live.detail_payload(mailing, status=status)
    if after:
        page = selectors.letters_page(mailing, status=status, after=int(after))
        letters, more = [live.letter_fields(letter) for letter in page[:100]], len(page) > 100
    else:
        letters, more = data["letters"], data["more_letters"]
    preview, unhonoured = sender_preview(mailing)
    context = {
        "mailing": mailing,
        "preview": preview,
        "checked": any("verdict" in row for row in preview),
        "rejected": rejected(preview),
        "unhonoured": unhonoured,
        "unread_reports": [row["server"] for row in preview if not row["route"].read],
        "recipients": services.recipient_count(mailing) if mailing.status == S.DRAFT else None,
        "live": data,
        "m": data["mailing"],
        "letters": letters,
        "next_after": letters[-1]["id"] if more else None,
        "paged": bool(after),
        "status_filter": status,
        "statuses": Letter.Status.choices,
        "actions": services.allowed_actions(mailing),
        "bounce_summary": bounces.mailing_bounce_summary(mailing),
        "bounces": bounces.mailing_bounces(mailing)[:20],
        "blocked_reasons": dispatch.blocked_reasons(mailing, timezone.now()) if mailing.status == S.BLOCKED else [],
    }
    return render(request, "mailings/detail.html", context)


ACTIONS = {"start", "schedule", "unschedule", "pause", "resume", "cancel"}


@require_POST
@tenant_required
def mailing_action(request: HttpRequest, public_id: str, action: str) -> HttpResponse:
    mailing = get_mailing(request.tenant, public_id)
    if action not in ACTIONS:
        raise Http404("Unknown action.")
    try:
        _run(request, mailing, action)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    return redirect("mailings:detail", public_id=mailing.public_id)


def _run(request: HttpRequest, mailing: Mailing, action: str) -> None:
    if mailing.preparing_since is not None:
        # Refused here, without waiting for the row the start task holds.
        raise ValidationError(services.PREPARING)
    if action in ("start", "schedule") and not request.POST.get("confirm_rejected"):
        _refuse_rejected(mailing)
    if action == "start":
        count = services.mailing_start_async(mailing=mailing, by=request.user)
        started = ngettext("Starting: preparing %(count)s letter.", "Starting: preparing %(count)s letters.", count)
        messages.success(request, started % {"count": localize(count)})
    elif action == "schedule":
        if mailing.scheduled_at is None:
            raise ValidationError(_("Set a start time first (Edit)."))
        services.mailing_schedule(mailing=mailing, at=mailing.scheduled_at, by=request.user)
        messages.success(request, _("Scheduled."))
    else:
        services.transition(mailing=mailing, action=action, by=request.user)


def _refuse_rejected(mailing: Mailing) -> None:
    """A start whose letters receivers will refuse (DMARC p=reject) needs
    the box ticked that says so; DNS trouble never stops it."""
    refused = rejected(sender_preview(mailing)[0])
    if refused:
        names = ", ".join(f"«{row['server'].name}»" for row in refused)
        raise ValidationError(
            gettext(
                "Receivers will reject the letters sent through %(servers)s: their From domain publishes DMARC "
                "p=reject and does not authorise the server. Fix the records shown below, or tick “Send anyway” "
                "to start all the same."
            )
            % {"servers": names}
        )
