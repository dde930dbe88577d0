"""The live mailing pages: the mailings list and a mailing's own page poll
these JSON views, and render the very same dictionaries at load, as the
dashboard does (mailing.views.dashboard makes the texts of a mailing once,
for all three). static/js/mailing.js puts them in place.

Each answer takes a fixed number of queries whatever the number of
mailings, letters and events: the list reads the mailings and their letter
counts (2); a mailing's page reads the mailing, the dashboard's reads when
it is running (its finish estimate depends on the tenant's other mailings
and servers) or its letter counts otherwise, a page of letters and the
history."""

from datetime import datetime

from django.db.models import Count
from django.http import HttpRequest, JsonResponse
from django.urls import reverse
from django.utils import dateformat, timezone
from django.utils.formats import localize
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.cache import never_cache

from accounts.access import tenant_required
from accounts.models import Tenant
from accounts.timezones import when, zone_abbreviation

from .. import mailings as services
from .. import selectors
from ..access import get_mailing
from ..dashboard import selectors as board
from ..dashboard.selectors import MailingRow
from ..dispatch.replies import shown_reply
from ..models import Letter, Mailing, MailingEvent
from .dashboard import blank_mailing_row, mailing_fields

S = Mailing.Status
# What a person may do from the pages; the other transitions are the dispatcher's.
USER_ACTIONS = ("start", "schedule", "unschedule", "pause", "resume", "cancel")
GROUPS = {
    "running": (S.ACTIVE, S.WAITING, S.BLOCKED, S.PAUSED, S.SCHEDULED),
    "drafts": (S.DRAFT,),
    "finished": (S.COMPLETED, S.CANCELLED),
}
LIST_SIZE = 200
LETTERS_SHOWN = 100


def _updated(now: datetime) -> str:
    return f"{dateformat.format(timezone.localtime(now), 'H:i:s')} {zone_abbreviation(now)}"


def _stamp(moment: datetime) -> str:
    return when(moment)


# A mailing's page


def detail_payload(mailing: Mailing, *, status: str | None, now: datetime | None = None) -> dict:
    now = now or timezone.now()
    letters = selectors.letters_page(mailing, status=status, after=None, size=LETTERS_SHOWN)
    return {
        "updated": _updated(now),
        "mailing": _mailing(_row(mailing, now), now),
        "letters": [letter_fields(letter) for letter in letters[:LETTERS_SHOWN]],
        "more_letters": len(letters) > LETTERS_SHOWN,
        "events": _history(mailing),
    }


def _row(mailing: Mailing, now: datetime) -> MailingRow:
    """The dashboard's row of a running mailing (with its finish estimate),
    or one with its letter counts only."""
    if mailing.status in board.RUNNING:
        rows = {row.mailing.pk: row for row in board.dashboard(mailing.tenant, now).mailings}
        if mailing.pk in rows:
            return rows[mailing.pk]
    return MailingRow(mailing, selectors.progress_for([mailing])[mailing.pk], 0, None)


def _mailing(row: MailingRow, now: datetime) -> dict:
    mailing = row.mailing
    fields = mailing_fields(row, now)
    if mailing.status not in board.RUNNING:
        fields["finish_text"] = ""
    if mailing.status in (S.DRAFT, S.SCHEDULED, S.COMPLETED, S.CANCELLED):
        fields["rate_text"] = ""
    actions = services.allowed_actions(mailing)
    fields["actions"] = [action for action in USER_ACTIONS if action in actions]
    fields["preparing"] = mailing.preparing_since is not None
    return fields


def letter_fields(letter: Letter) -> dict:
    return {
        "id": str(letter.pk),
        "email": letter.email,
        "status": letter.status,
        "status_label": letter.get_status_display(),
        "server": letter.server.name if letter.server else "—",
        "attempts": str(letter.attempts),
        "last_reply": shown_reply(letter.last_reply) or "—",
    }


def _history(mailing: Mailing) -> list[dict]:
    at = _stamp(mailing.created_at)
    if mailing.created_by:
        created = _("Created %(at)s by %(email)s") % {"at": at, "email": mailing.created_by.email}
    else:
        created = _("Created %(at)s") % {"at": at}
    items = [{"id": "created", "text": created}]
    events = MailingEvent.objects.filter(mailing=mailing).select_related("by")
    return items + [{"id": str(e.pk), "text": _event_text(e)} for e in events]


def _event_text(event: MailingEvent) -> str:
    note = event.said  # in the reader's language
    if event.from_status == event.to_status and note:  # a line of history, no change of state
        return _("%(at)s: %(note)s") % {"at": _stamp(event.at), "note": note}
    moved = {"at": _stamp(event.at), "from": event.get_from_status_display(), "to": event.get_to_status_display()}
    text = _("%(at)s: %(from)s → %(to)s") % moved
    if event.by:
        text = _("%(change)s by %(email)s") % {"change": text, "email": event.by.email}
    return text + (f" — {note}" if note else "")


@never_cache
@tenant_required
def mailing_live(request: HttpRequest, public_id: str) -> JsonResponse:
    mailing = get_mailing(request.tenant, public_id)
    status = request.GET.get("status") or None
    if status not in (None, *Letter.Status.values):
        status = None
    return JsonResponse(detail_payload(mailing, status=status))


# The mailings list


def list_payload(tenant: Tenant, now: datetime | None = None) -> dict:
    now = now or timezone.now()
    mailings = list(Mailing.objects.filter(tenant=tenant).select_related("template")[:LIST_SIZE])
    progress = selectors.progress_for(mailings)
    rows = [_list_row(MailingRow(m, progress[m.pk], 0, None), now) for m in mailings]
    data: dict = {"updated": _updated(now), "counts": _group_counts(tenant)}
    for group, statuses in GROUPS.items():
        data[group] = [row for row in rows if row["status"] in statuses]
    return data


def _group_counts(tenant: Tenant) -> dict[str, int]:
    """How many mailings each group holds: all of them, not only the
    LIST_SIZE newest shown (numbers: the page writes them in its language)."""
    by_status = dict(Mailing.objects.filter(tenant=tenant).order_by().values_list("status").annotate(Count("pk")))
    return {group: sum(by_status.get(status, 0) for status in statuses) for group, statuses in GROUPS.items()}


def _list_row(row: MailingRow, now: datetime) -> dict:
    mailing = row.mailing
    fields = mailing_fields(row, now)
    fields["template"] = mailing.template.name if mailing.template_id else ""
    fields["note"] = _note(mailing)
    actions = services.allowed_actions(mailing)
    fields["actions"] = {
        action: reverse("mailings:action", args=[mailing.public_id, action])
        for action in ("pause", "resume", "cancel")
        if action in actions
    }
    fields["cancel_confirm"] = _("Cancel %(name)s? Letters not yet sent will not go out.") % {"name": mailing.name}
    return fields


def _note(mailing: Mailing) -> str:
    if mailing.preparing_since is not None:
        n = mailing.letter_count
        return ngettext("preparing %(n)s letter…", "preparing %(n)s letters…", n) % {"n": localize(n)}
    if mailing.status == S.WAITING and mailing.resume_at:
        return _("resumes %(when)s") % {"when": when(mailing.resume_at, zone=True)}
    if mailing.status == S.SCHEDULED and mailing.scheduled_at:
        return _("starts %(when)s") % {"when": when(mailing.scheduled_at, zone=True)}
    return ""


def blank_list_row() -> dict:
    """The row the list's script clones for a mailing that appears later."""
    return _list_row(blank_mailing_row(), timezone.now())


@never_cache
@tenant_required
def mailings_live(request: HttpRequest) -> JsonResponse:
    return JsonResponse(list_payload(request.tenant))
