"""The live limits dashboard: the page (the tenant's home embeds it too) and
the JSON it polls. Every text is made here, once: the template renders the
very dictionaries the JSON carries, and the script only puts them in place."""

from contextvars import ContextVar
from datetime import date, datetime, time, timedelta
from functools import lru_cache

from django.core.signals import setting_changed
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import dateformat, timezone, translation
from django.utils.cache import add_never_cache_headers, get_conditional_response
from django.utils.formats import localize as django_localize
from django.utils.http import quote_etag
from django.utils.translation import gettext, gettext_lazy
from django.views.decorators.cache import never_cache

from accounts.access import tenant_required
from accounts.models import Tenant
from accounts.selectors import getting_started
from accounts.timezones import day, when, zone_abbreviation
from servers.models import RestReason, SmtpServer

from ..dashboard import poll as dashboard_poll
from ..dashboard import selectors
from ..dashboard.selectors import MailingRow, ServerRow, State
from ..dashboard.stamp import Stamp, dashboard_stamp
from ..limits import NEVER, Usage
from ..models import Letter, Mailing
from ..selectors import FirstSteps, Progress

L = Letter.Status


# A poll of a tenant with 50 servers looks up about a thousand messages (the
# same few dozen over and over) and formats about six hundred numbers (the
# same limits, many of them); a message's translation and a number's format
# in a language do not change while the process runs (a test that changes
# the settings empties the caches, as Django empties its own).
@lru_cache(maxsize=1024)
def _message(language: str | None, message: str) -> str:
    return gettext(message)


@lru_cache(maxsize=4096)
def _number(language: str | None, number: int) -> str:
    return str(django_localize(number))


# Asking Django for the active language costs more than the cached lookup
# itself; payload() asks once.
_payload_language: ContextVar[str | None] = ContextVar("dashboard_payload_language", default=None)


def _language() -> str | None:
    return _payload_language.get() or translation.get_language()


def _(message: str) -> str:
    return _message(_language(), message)


def localize(number: int) -> str:
    return _number(_language(), number)


# Most servers at a limit resume at one of a few moments, the same from
# one poll to the next; the words depend on the language, the zone and the
# day it is there.
@lru_cache(maxsize=1024)
def _moment(language: str | None, zone: str, moment: datetime, today: date, with_zone: bool) -> str:
    return when(moment, now=datetime.combine(today, time(12), timezone.get_current_timezone()), zone=with_zone)


def _when(moment: datetime, now: datetime, *, zone: bool = False) -> str:
    return _moment(_language(), timezone.get_current_timezone_name(), moment, timezone.localtime(now).date(), zone)


@receiver(setting_changed)
def _forget_formats(**kwargs: object) -> None:
    _message.cache_clear()
    _number.cache_clear()
    _moment.cache_clear()


CHART_HEIGHT = 48  # the chart's viewBox: 24 bars of 8 units, 10 apart
BAR_STEP = 10
STATE_LABELS = {
    State.SENDING: gettext_lazy("Sending"),
    State.IDLE: gettext_lazy("Idle"),
    State.LIMIT: gettext_lazy("Limit reached"),
    State.RESTING: gettext_lazy("Resting"),
    State.RATE_LIMITED: gettext_lazy("Rate-limited by the server"),
    State.HELD: gettext_lazy("Held back for your letters"),
    State.FAILING: gettext_lazy("Failing"),
    State.DISABLED: gettext_lazy("Disabled"),
}


@tenant_required
def dashboard_page(request: HttpRequest) -> HttpResponse:
    return render(request, "dashboard/page.html", page_context(request.tenant))


@never_cache
@tenant_required
def dashboard_data(request: HttpRequest) -> HttpResponse:
    """A poll that went through the whole request stack. Most polls are
    answered before it, from one query (mailing.dashboard.poll); this one
    leaves them a pass for the next."""
    stamp = dashboard_poll.stamp_of(request, request.tenant, dashboard_stamp)
    dashboard_poll.remember(request)
    return answer_poll(request, request.tenant, stamp)


def answer_poll(request: HttpRequest, tenant: Tenant, stamp: Stamp | None) -> HttpResponse:
    """A poll whose If-None-Match is the current stamp gets 304 with no
    body and without the dashboard being built (mailing.dashboard.stamp);
    the stamp is read first, so a change made while the JSON is built
    changes the next stamp, and the checklist's steps are the stamp's own."""
    etag = quote_etag(stamp.value) if stamp else None
    response = get_conditional_response(request, etag=etag)
    if response is None:
        response = JsonResponse(payload(tenant, steps=stamp.steps if stamp else None))
    if etag and request.method in ("GET", "HEAD"):  # as Django's etag decorator
        response.headers.setdefault("ETag", etag)
    add_never_cache_headers(response)
    return response


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


def payload(tenant: Tenant, now: datetime | None = None, *, steps: FirstSteps | None = None) -> dict:
    """`steps`: the checklist's mailing steps when the caller read them (the stamp)."""
    board = selectors.dashboard(tenant, now)
    language = _payload_language.set(translation.get_language())
    try:
        return {
            "updated": f"{dateformat.format(timezone.localtime(board.now), 'H:i:s')} {zone_abbreviation(board.now)}",
            "hours": [timezone.localtime(hour).strftime("%H:%M") for hour in board.hours],
            "servers": [_server(row, board.now) for row in board.servers],
            "mailings": [mailing_fields(row, board.now) for row in board.mailings],
            "more_mailings": board.more_mailings,
            "checklist": _checklist(tenant, board, steps),
        }
    finally:
        _payload_language.reset(language)


def _checklist(tenant: Tenant, board: selectors.Dashboard, steps: FirstSteps | None) -> dict:
    """The getting-started steps above the dashboard on the home page, ticked as they are done."""
    has_server = any(row.server.tenant_id == tenant.pk for row in board.servers)  # its own come first
    items = getting_started(tenant, has_server=has_server, steps=steps)
    done = sum(item.done for item in items)
    return {
        # The hidden state a screen reader says after the step's title, as the page writes it.
        "items": [
            {"key": item.key, "done": item.done, "state": _("done") if item.done else _("to do")} for item in items
        ],
        "all_done": done == len(items),
        "label": _("%(done_count)s of %(checklist)s done") % {"done_count": done, "checklist": len(items)},
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
        "rate_text": _rate_text_server(row),
        "chart": _chart(row.hourly),
    }


def _notice(row: ServerRow, now: datetime) -> tuple[str, str]:
    """What the tenant should know about a server that does not send, and
    how to fix it."""
    server = row.server
    if row.state == State.DISABLED:
        return _("Turned off: mailings skip it until it is turned on again."), ""
    if row.state == State.FAILING:
        error = server.health_message or _("the last attempt failed.")
        return _("Failing — %(error)s") % {"error": error}, server.health_fix
    if row.state == State.RATE_LIMITED and server.backoff_until:
        notice = _("Rate-limited by the server — next try %(at)s. It said: %(rest_reply)s") % {
            "at": _when(server.backoff_until, now),
            "rest_reply": server.rest_reply,
        }
        return notice, _("The provider caps letters per minute; set the server's max per minute just below it.")
    if row.state == State.RESTING and server.backoff_until:
        why = _("it refused every letter for now") if server.rest_reason == "refusals" else _("connection trouble")
        said = " " + _("It said: %(reply)s") % {"reply": server.rest_reply} if server.rest_reply else ""
        return _("Resting after %(why)s; tries again %(at)s.%(said)s") % {
            "why": why,
            "at": _when(server.backoff_until, now),
            "said": said,
        }, ""
    if row.state == State.HELD and row.hold is not None:
        if row.hold.blocked:
            return _("Blocked for your letters: %(reply)s") % {"reply": row.hold.reply}, _(
                "Staff have been told; contact support."
            )
        if row.hold.reason == RestReason.SMTPUTF8:  # nothing was refused: the tenant's bounce mailbox
            notice = _("Held back for your letters; tries again %(at)s. %(reply)s") % {
                "at": _when(row.hold.until, now),
                "reply": row.hold.reply,
            }
            return notice, _(
                "Change your bounce mailbox to an address whose part before the @ is ASCII (Latin letters, "
                "digits, dots): your letters go again at once. Or send through a server of your own that "
                "offers SMTPUTF8 (Gmail, Yandex and Mail.ru do)."
            )
        notice = _("Held back after your letters were refused; tries again %(at)s. %(reply)s") % {
            "at": _when(row.hold.until, now),
            "reply": row.hold.reply,
        }
        return notice, _("Check the content of your template: the server refused it as spam or by policy.")
    if row.state == State.LIMIT:
        return _limit_notice(row.usage, now), ""
    return "", ""


def _limit_notice(usage: Usage, now: datetime) -> str:
    windows = (
        (_("per-minute limit"), usage.minute_left, usage.minute_limit),
        (_("hourly limit"), usage.hour_left, usage.hour_limit),
        (_("daily limit"), usage.day_left, usage.day_limit),
        (_("daily quota"), usage.tenant_day_left, usage.tenant_quota),
    )
    if usage.group_size > 1:  # alone, the shared quota is its own quota over the same letters
        windows += ((_("shared daily quota"), usage.group_day_left, usage.group_quota),)
    never = usage.resume_at is None or usage.resume_at == NEVER
    # Waiting cannot help: the windows to name are those whose limit is 0,
    # not the others merely spent alongside them.
    zero = [str(name) for name, _left, limit in windows if limit == 0]
    names = (zero if never else []) or [str(name) for name, left, _limit in windows if left == 0] or [str(_("limit"))]
    what = names[0]
    for name in names[1:]:  # "X and Y", whole, so each language orders and joins its own way
        what = _("%(first)s and %(second)s") % {"first": what, "second": name}
    what = what[0].upper() + what[1:]
    if never:
        return _("%(what)s: 0 — nothing goes out until it is raised.") % {"what": what}
    return _("%(what)s reached — resumes %(at)s") % {"what": what, "at": _when(usage.resume_at, now, zone=True)}


def _windows(row: ServerRow) -> list[dict]:
    usage, shared = row.usage, row.server.is_platform
    # On a platform server the tenant sees its own letters; what is left
    # counts everybody's.
    hour_label = _("Last 60 minutes, shared") if shared else _("Last 60 minutes")
    day_label = _("Last 24 hours, shared") if shared else _("Last 24 hours")
    return [
        # Both windows roll: a letter counts until 60 minutes (24 hours) after
        # it went, not until the clock hour or the calendar day ends.
        _window("hour", hour_label, row.hour_sent, usage.hour_limit, usage.hour_left, shared),
        _window("day", day_label, row.day_sent, usage.day_limit, usage.day_left, shared),
        _quota_window(row),
    ]


def _quota_window(row: ServerRow) -> dict:
    """The tenant's daily quota on a platform server: its own, or, when the
    organisations of its creator share one and that one leaves no more, the
    shared quota with all their letters against it."""
    usage = row.usage
    own_left, group_left = usage.tenant_day_left, usage.group_day_left
    if usage.group_size > 1 and group_left is not None and (own_left is None or group_left <= own_left):
        label = _("Daily quota shared by %(group_size)s organisations") % {"group_size": usage.group_size}
        numbers = {"count": localize(row.group_day_sent), "day_sent": localize(row.day_sent)}
        sent_text = _("%(count)s by all of them (%(day_sent)s here)") % numbers
        return _window("quota", label, row.group_day_sent, usage.group_quota, group_left, False, sent_text=sent_text)
    shown = usage.tenant_quota is not None
    return _window("quota", _("Your daily quota"), row.day_sent, usage.tenant_quota, own_left, False, shown=shown)


def _window(
    key: str,
    label: str,
    sent: int,
    limit: int | None,
    left: int | None,
    shared: bool,
    *,
    shown: bool = True,
    sent_text: str = "",
) -> dict:
    if not sent_text:  # else the caller's own whole phrase
        phrase = _("%(count)s yours") if shared else _("%(count)s sent")
        sent_text = phrase % {"count": localize(sent)}
    if limit is None or left is None:
        return {"key": key, "label": label, "shown": shown, "sent": sent, "limit": None, "left": None,
                "fill": 0, "level": "none", "text": _("%(sent)s · no limit") % {"sent": sent_text}}  # fmt: skip
    fill = 100.0 if not limit else round(100 * (limit - left) / limit, 1)
    level = "full" if not left else "high" if fill >= 80 else "ok"
    return {"key": key, "label": label, "shown": shown, "sent": sent, "limit": limit, "left": left,
            "fill": fill, "level": level, "text": _left_text(sent_text, left, limit)}  # fmt: skip


def _chart(hourly: list[int]) -> dict:
    peak, total = max(hourly, default=0), sum(hourly)
    return {
        "counts": hourly,
        "shown": [localize(n) for n in hourly],  # as the page writes numbers in its language
        # A non-empty hour stays visible however high the peak.
        "heights": [max(1.0, round((CHART_HEIGHT - 2) * n / peak, 2)) if n else 0 for n in hourly],
        "caption": _("%(total)s in 24 h · peak %(peak)s an hour") % {"total": localize(total), "peak": localize(peak)},
        "label": _("Letters per hour over the last 24 hours: %(total)s in all, at most %(peak)s in one hour.")
        % {"total": localize(total), "peak": localize(peak)},
    }


def chart_bars(chart: dict, hours: list[str]) -> list[dict]:
    """The bars as the first rendering draws them (dashboard.js does the same)."""
    return [
        {
            "x": i * BAR_STEP + 1,
            "y": CHART_HEIGHT - height,
            "height": height,
            "title": f"{hours[i]} · {shown}",
        }
        for i, (shown, height) in enumerate(zip(chart["shown"], chart["heights"], strict=True))
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
        "total": localize(progress.total),
        "counts": [{"key": key, "label": label, "count": localize(n)} for key, label, n in counts],
        "bars": _segments(counts, progress.total),
        "bar_label": _("%(done)s of %(total)s letters done")
        % {"done": localize(progress.done), "total": localize(progress.total)},
        "rate_text": _rate_text(row, now),
        "waiting_text": _waiting_text(mailing, now),
        "finish_text": _finish_text(row, now),
        "finish_at": _iso(row.finish_at),
    }


def _counts(progress: Progress) -> list[tuple[str, str, int]]:
    """The letters by outcome; queued includes the deferred and those being sent."""
    return [
        ("sent", _("Sent"), progress.count(L.SENT)),
        ("bounced", _("Bounced"), progress.count(L.BOUNCED)),
        ("failed", _("Failed"), progress.count(L.FAILED)),
        ("queued", _("Queued"), progress.waiting),
    ]


def _segments(counts: list[tuple[str, str, int]], total: int) -> list[dict]:
    """The stacked bar's parts, in percent of the bar."""
    segments, x = [], 0.0
    for key, label, n in counts:
        width = 100 * n / total if total else 0.0
        segments.append(
            {"status": key, "label": label, "count": localize(n), "x": round(x, 3), "width": round(width, 3)}
        )
        x += width
    return segments


def _rate_text(row: MailingRow, now: datetime) -> str:
    if not row.recent:
        return _("Nothing sent in the last 10 min")
    pace = hourly_pace(row, now)
    if not pace:
        return _("%(recent)s sent in the last 10 min") % {"recent": localize(row.recent)}
    return _("%(recent)s sent in the last 10 min (about %(hourly)s an hour)") % {
        "recent": localize(row.recent),
        "hourly": localize(pace),
    }


def hourly_pace(row: MailingRow, now: datetime) -> int | None:
    """The finish estimate's rate: the letters left over the time they take
    at the current limits. The last burst is no guide: a server with 30 an
    hour sends its 30 in a minute, then waits."""
    pending, finish = row.progress.waiting, row.finish_at
    if not pending or finish is None or finish - now < timedelta(minutes=1):
        return None
    return round(pending * 3600 / (finish - now).total_seconds())


def _rate_text_server(row: ServerRow) -> str:
    numbers = {"recent": localize(row.recent), "in_flight": localize(row.in_flight)}
    if row.in_flight:
        return _("%(recent)s sent in the last 10 min, %(in_flight)s being sent now") % numbers
    return _("%(recent)s sent in the last 10 min") % numbers


def _left_text(sent_text: str, left: int, limit: int) -> str:
    return _("%(sent)s · %(left)s left of %(limit)s") % {
        "sent": sent_text,
        "left": localize(left),
        "limit": localize(limit),
    }


def _waiting_text(mailing: Mailing, now: datetime) -> str:
    if mailing.status == Mailing.Status.BLOCKED:
        return _(
            "Cannot send: none of its servers can send until one is fixed (see each server's notice)."
            " It goes on by itself within seconds of the fix."
        )
    if mailing.status != Mailing.Status.WAITING:
        return ""
    if not mailing.resume_at:
        return _("Waiting for limits")
    moment = {"when": when(mailing.resume_at, now=now, zone=True)}
    if mailing.wait_reason == Mailing.WaitReason.REST:
        return _("Waiting for its servers, which rest until %(when)s (see each server's notice)") % moment
    if mailing.wait_reason == Mailing.WaitReason.RETRY:
        return _("Waiting to try letters again %(when)s") % moment
    return _("Waiting for limits until %(when)s") % moment


def _finish_text(row: MailingRow, now: datetime) -> str:
    finish = row.finish_at
    if finish is None:
        return _("At current limits it cannot finish: none of its servers can send. See the servers below.")
    if finish <= now + timedelta(minutes=1):
        return _("At current limits: finishes in a moment")
    if finish - now > timedelta(days=2):
        # Beyond the replayed windows the estimate is a steady pace: a day is precise enough.
        return _("At current limits: finishes around %(day)s") % {"day": day(finish, now=now)}
    return _("At current limits: finishes %(at)s") % {"at": when(finish, now=now)}


# Time


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None or moment == NEVER else moment.isoformat()


# Blank rows for the page's <template> elements


def _blank_server_row() -> ServerRow:
    usage = Usage(0, 0, None, None, None, None)
    return ServerRow(SmtpServer(name=""), usage, State.IDLE, 0, 0, 0, [0] * selectors.CHART_HOURS)


def blank_mailing_row() -> MailingRow:
    return MailingRow(Mailing(name="", status=Mailing.Status.ACTIVE), Progress(), 0, None)
