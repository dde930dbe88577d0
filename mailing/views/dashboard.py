"""The live limits dashboard: the page (the tenant's home embeds it too) and
the JSON it polls. Every text is made here, once: the template renders the
very dictionaries the JSON carries, and the script only puts them in place."""

from datetime import datetime, timedelta

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import dateformat, timezone
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import etag

from accounts.access import tenant_required
from accounts.models import Tenant
from accounts.selectors import getting_started
from accounts.timezones import day, when, zone_abbreviation
from servers.models import SmtpServer

from .. import dashboard as selectors
from ..dashboard import MailingRow, ServerRow, State
from ..dashboard_stamp import dashboard_stamp
from ..limits import NEVER, Usage
from ..models import Letter, Mailing
from ..selectors import Progress

L = Letter.Status
CHART_HEIGHT = 48  # the chart's viewBox: 24 bars of 8 units, 10 apart
BAR_STEP = 10
STATE_LABELS = {
    State.SENDING: "Sending",
    State.IDLE: "Idle",
    State.LIMIT: "Limit reached",
    State.RESTING: "Resting",
    State.RATE_LIMITED: "Rate-limited by the server",
    State.HELD: "Held back for your letters",
    State.FAILING: "Failing",
    State.DISABLED: "Disabled",
}


@tenant_required
def dashboard_page(request: HttpRequest) -> HttpResponse:
    return render(request, "dashboard/page.html", page_context(request.tenant))


def _stamp(request: HttpRequest) -> str | None:
    return dashboard_stamp(request.tenant)


@never_cache
@tenant_required
@etag(_stamp)
def dashboard_data(request: HttpRequest) -> JsonResponse:
    """A poll whose If-None-Match is the current stamp gets 304 with no
    body and without the dashboard being built (mailing.dashboard_stamp);
    the stamp is read first, so a change made while the JSON is built
    changes the next stamp."""
    return JsonResponse(payload(request.tenant))


def page_context(tenant: Tenant) -> dict:
    """The payload plus what only the first rendering needs: the chart bars'
    geometry and blank rows the script clones for servers and mailings that
    appear later."""
    board = payload(tenant)
    now = timezone.now()
    for server in board["servers"]:
        server["bars"] = chart_bars(server["chart"], board["hours"])
    blank_server = _server(_blank_server_row(), now)
    blank_server["bars"] = chart_bars(blank_server["chart"], board["hours"])
    return {"board": board, "blank_server": blank_server, "blank_mailing": mailing_fields(blank_mailing_row(), now)}


def payload(tenant: Tenant, now: datetime | None = None) -> dict:
    board = selectors.dashboard(tenant, now)
    return {
        "updated": f"{dateformat.format(timezone.localtime(board.now), 'H:i:s')} {zone_abbreviation(board.now)}",
        "hours": [timezone.localtime(hour).strftime("%H:%M") for hour in board.hours],
        "servers": [_server(row, board.now) for row in board.servers],
        "mailings": [mailing_fields(row, board.now) for row in board.mailings],
        "more_mailings": board.more_mailings,
        "checklist": _checklist(tenant),
    }


def _checklist(tenant: Tenant) -> dict:
    """The getting-started steps above the dashboard on the home page, ticked as they are done."""
    items = getting_started(tenant)
    done = sum(item.done for item in items)
    return {
        "items": [{"key": item.key, "done": item.done} for item in items],
        "all_done": done == len(items),
        "label": f"{done} of {len(items)} done",
        "done": done,
    }


# Servers


def _server(row: ServerRow, now: datetime) -> dict:
    server = row.server
    notice, hint = _notice(row, now)
    return {
        "id": str(server.public_id),
        "name": server.name,
        "platform": server.is_platform,
        "state": row.state.value,
        "state_label": STATE_LABELS[row.state],
        "notice": notice,
        "hint": hint,
        "resume_at": _iso(row.usage.resume_at),
        "windows": _windows(row),
        "rate_text": f"{row.recent:,} sent in the last 10 min"
        + (f", {row.in_flight:,} being sent now" if row.in_flight else ""),
        "chart": _chart(row.hourly),
    }


def _notice(row: ServerRow, now: datetime) -> tuple[str, str]:
    """What the tenant should know about a server that does not send, and
    how to fix it."""
    server = row.server
    if row.state == State.DISABLED:
        return "Turned off: mailings skip it until it is turned on again.", ""
    if row.state == State.FAILING:
        return f"Failing — {server.health_error or 'the last attempt failed.'}", server.health_hint
    if row.state == State.RATE_LIMITED and server.backoff_until:
        notice = (
            f"Rate-limited by the server — next try {when(server.backoff_until, now=now)}. It said: {server.rest_reply}"
        )
        return notice, "The provider caps letters per minute; set the server's max per minute just below it."
    if row.state == State.RESTING and server.backoff_until:
        why = "it refused every letter for now" if server.rest_reason == "refusals" else "connection trouble"
        said = f" It said: {server.rest_reply}" if server.rest_reply else ""
        return f"Resting after {why}; tries again {when(server.backoff_until, now=now)}.{said}", ""
    if row.state == State.HELD and row.hold is not None:
        if row.hold.blocked:
            return f"Blocked for your letters: {row.hold.reply}", "Staff have been told; contact support."
        notice = (
            f"Held back after your letters were refused; tries again {when(row.hold.until, now=now)}. {row.hold.reply}"
        )
        return notice, "Check the content of your template: the server refused it as spam or by policy."
    if row.state == State.LIMIT:
        return _limit_notice(row.usage, now), ""
    return "", ""


def _limit_notice(usage: Usage, now: datetime) -> str:
    windows = (
        ("per-minute limit", usage.minute_left),
        ("hourly limit", usage.hour_left),
        ("daily limit", usage.day_left),
        ("daily quota", usage.tenant_day_left),
        ("shared daily quota", usage.group_day_left),
    )
    what = " and ".join(name for name, left in windows if left == 0) or "limit"
    what = what[0].upper() + what[1:]
    if usage.resume_at is None or usage.resume_at == NEVER:
        return f"{what}: 0 — nothing goes out until it is raised."
    return f"{what} reached — resumes {when(usage.resume_at, now=now, zone=True)}"


def _windows(row: ServerRow) -> list[dict]:
    usage, shared = row.usage, row.server.is_platform
    # On a platform server the tenant sees its own letters; what is left
    # counts everybody's.
    suffix = ", shared" if shared else ""
    return [
        # Both windows roll: a letter counts until 60 minutes (24 hours) after
        # it went, not until the clock hour or the calendar day ends.
        _window("hour", _("Last 60 minutes") + suffix, row.hour_sent, usage.hour_limit, usage.hour_left, shared),
        _window("day", _("Last 24 hours") + suffix, row.day_sent, usage.day_limit, usage.day_left, shared),
        _quota_window(row),
    ]


def _quota_window(row: ServerRow) -> dict:
    """The tenant's daily quota on a platform server: its own, or, when the
    organisations of its creator share one and that one leaves no more, the
    shared quota with all their letters against it."""
    usage = row.usage
    own_left, group_left = usage.tenant_day_left, usage.group_day_left
    if usage.group_size > 1 and group_left is not None and (own_left is None or group_left <= own_left):
        label = f"Daily quota shared by {usage.group_size} organisations"
        sent_word = f"by all of them ({row.day_sent:,} here)"
        return _window("quota", label, row.group_day_sent, usage.group_quota, group_left, False, sent_word=sent_word)
    shown = usage.tenant_quota is not None
    return _window("quota", "Your daily quota", row.day_sent, usage.tenant_quota, own_left, False, shown=shown)


def _window(
    key: str,
    label: str,
    sent: int,
    limit: int | None,
    left: int | None,
    shared: bool,
    *,
    shown: bool = True,
    sent_word: str = "",
) -> dict:
    sent_text = f"{sent:,} {sent_word or ('yours' if shared else 'sent')}"
    if limit is None or left is None:
        return {"key": key, "label": label, "shown": shown, "sent": sent, "limit": None, "left": None,
                "fill": 0, "level": "none", "text": f"{sent_text} · no limit"}  # fmt: skip
    fill = 100.0 if not limit else round(100 * (limit - left) / limit, 1)
    level = "full" if not left else "high" if fill >= 80 else "ok"
    return {"key": key, "label": label, "shown": shown, "sent": sent, "limit": limit, "left": left,
            "fill": fill, "level": level, "text": f"{sent_text} · {left:,} left of {limit:,}"}  # fmt: skip


def _chart(hourly: list[int]) -> dict:
    peak, total = max(hourly, default=0), sum(hourly)
    return {
        "counts": hourly,
        # A non-empty hour stays visible however high the peak.
        "heights": [max(1.0, round((CHART_HEIGHT - 2) * n / peak, 2)) if n else 0 for n in hourly],
        "caption": f"{total:,} in 24 h · peak {peak:,} an hour",
        "label": f"Letters per hour over the last 24 hours: {total:,} in all, at most {peak:,} in one hour.",
    }


def chart_bars(chart: dict, hours: list[str]) -> list[dict]:
    """The bars as the first rendering draws them (dashboard.js does the same)."""
    return [
        {"x": i * BAR_STEP + 1, "y": CHART_HEIGHT - height, "height": height, "title": f"{hours[i]} · {count:,}"}
        for i, (count, height) in enumerate(zip(chart["counts"], chart["heights"], strict=True))
    ]


# Mailings


def mailing_fields(row: MailingRow, now: datetime) -> dict:
    """A mailing as the live pages show it (the dashboard, the mailings list
    and the mailing's own page)."""
    mailing, progress = row.mailing, row.progress
    counts = _counts(progress)
    return {
        "id": str(mailing.public_id),
        "name": mailing.name,
        "url": reverse("mailings:detail", args=[mailing.public_id]),
        "status": mailing.status,
        "status_label": mailing.get_status_display(),
        "total": f"{progress.total:,}",
        "counts": [{"key": key, "label": label, "count": f"{n:,}"} for key, label, n in counts],
        "bars": _segments(counts, progress.total),
        "bar_label": f"{progress.done:,} of {progress.total:,} letters done",
        "rate_text": _rate_text(row, now),
        "waiting_text": _waiting_text(mailing, now),
        "finish_text": _finish_text(row, now),
        "finish_at": _iso(row.finish_at),
    }


def _counts(progress: Progress) -> list[tuple[str, str, int]]:
    """The letters by outcome; queued includes the deferred and those being sent."""
    return [
        ("sent", "Sent", progress.count(L.SENT)),
        ("bounced", "Bounced", progress.count(L.BOUNCED)),
        ("failed", "Failed", progress.count(L.FAILED)),
        ("queued", "Queued", progress.waiting),
    ]


def _segments(counts: list[tuple[str, str, int]], total: int) -> list[dict]:
    """The stacked bar's parts, in percent of the bar."""
    segments, x = [], 0.0
    for key, label, n in counts:
        width = 100 * n / total if total else 0.0
        segments.append({"status": key, "label": label, "count": f"{n:,}", "x": round(x, 3), "width": round(width, 3)})
        x += width
    return segments


def _rate_text(row: MailingRow, now: datetime) -> str:
    if not row.recent:
        return "Nothing sent in the last 10 min"
    pace = hourly_pace(row, now)
    return f"{row.recent:,} sent in the last 10 min" + (f" (about {pace:,} an hour)" if pace else "")


def hourly_pace(row: MailingRow, now: datetime) -> int | None:
    """The finish estimate's rate: the letters left over the time they take
    at the current limits. The last burst is no guide: a server with 30 an
    hour sends its 30 in a minute, then waits."""
    pending, finish = row.progress.waiting, row.finish_at
    if not pending or finish is None or finish - now < timedelta(minutes=1):
        return None
    return round(pending * 3600 / (finish - now).total_seconds())


def _waiting_text(mailing: Mailing, now: datetime) -> str:
    if mailing.status == Mailing.Status.BLOCKED:
        return (
            "Cannot send: none of its servers can send until one is fixed (see each server's notice)."
            " It goes on by itself within seconds of the fix."
        )
    if mailing.status != Mailing.Status.WAITING:
        return ""
    if not mailing.resume_at:
        return "Waiting for limits"
    return f"Waiting for limits until {when(mailing.resume_at, now=now, zone=True)}"


def _finish_text(row: MailingRow, now: datetime) -> str:
    finish = row.finish_at
    if finish is None:
        return "At current limits it cannot finish: none of its servers can send. See the servers below."
    if finish <= now + timedelta(minutes=1):
        return "At current limits: finishes in a moment"
    if finish - now > timedelta(days=2):
        # Beyond the replayed windows the estimate is a steady pace: a day is precise enough.
        return f"At current limits: finishes around {day(finish, now=now)}"
    return f"At current limits: finishes {when(finish, now=now)}"


# Time


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None or moment == NEVER else moment.isoformat()


# Blank rows for the page's <template> elements


def _blank_server_row() -> ServerRow:
    usage = Usage(0, 0, None, None, None, None)
    return ServerRow(SmtpServer(name=""), usage, State.IDLE, 0, 0, 0, [0] * selectors.CHART_HOURS)


def blank_mailing_row() -> MailingRow:
    return MailingRow(Mailing(name="", status=Mailing.Status.ACTIVE), Progress(), 0, None)
