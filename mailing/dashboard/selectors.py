"""Reads for the live limits dashboard: each server the tenant's mailings may
use with its windows and state, the running mailings with their progress,
rate and estimated finish, and the tenant's letters per hour over a day.

The number of queries is fixed whatever the number of servers and mailings:
the servers (1), the usage slots (1), the platform quotas and, with a
spent server, the minutes its resume time needs (2; limits.window_usage's 3
on SQLite), the letters in flight and the holds (2), and the running
mailings and, in one query, their letter counts, rates and servers (2; 4
on SQLite). A poll when nothing changed is answered before any of these
(mailing.dashboard.stamp).

The window counts come from UsageBucket, never from the letters table,
and each server's day window is read once: the windows, the chart and
the estimate all come from its slots. The
rate of a mailing does come from its letters (sent_at, on a partial index):
buckets are kept per server and tenant, not per mailing, so two mailings
sending through one server could not be told apart in them."""

import heapq
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from operator import attrgetter
from typing import NamedTuple

from django.db import connection
from django.db.models import Case, Count, ExpressionWrapper, Func, IntegerField, Q, Sum, Value, When
from django.db.models.functions import Cast, Coalesce, ExtractDay, ExtractHour, ExtractMinute
from django.utils import timezone

from accounts.models import Tenant
from servers.models import Health, RestReason, SmtpServer, TenantRest
from servers.selectors import platform_quotas, tenant_and_platform_servers

from .. import limits
from ..limits import DAY_SPAN, HOUR_SPAN, MINUTE, Usage, group_sum
from ..models import RUNNING, Letter, Mailing, MailingServer, UsageBucket
from ..selectors import Progress, progress_for

L = Letter.Status
M = Mailing.Status
CHART_HOURS = 24
DAY = timedelta(days=1)
ONE_HOUR = timedelta(hours=1)
RATE_SPAN = timedelta(minutes=10)
SENDING_SPAN = timedelta(minutes=2)  # letters this recent make a server "sending"
MAX_MAILINGS = 50  # the oldest running ones; the Mailings page lists them all
# Older usage is read in quarters of an hour: few rows per server, and every
# real time zone offset is a whole number of quarters, so they add up to the
# chart's local hours.
QUARTER = 15
# Bucket m leaves a window at m + span + 1 min (mailing.limits).
HOUR_LEAVES = HOUR_SPAN + MINUTE
DAY_LEAVES = DAY_SPAN + MINUTE
# The estimate replays the windows this far ahead, which lets today's
# letters leave the day window, and continues at the steady pace after.
HORIZON = timedelta(hours=26)


class State(StrEnum):
    SENDING = "sending"
    IDLE = "idle"
    LIMIT = "limit"
    RESTING = "resting"
    RATE_LIMITED = "rate_limited"  # the server said "too much mail": it waits for the provider's window
    HELD = "held"  # a platform server holds back this tenant's letters (a rest, or a block by staff)
    FAILING = "failing"
    DISABLED = "disabled"


@dataclass(frozen=True)
class ServerRow:
    server: SmtpServer
    usage: Usage
    state: State
    hour_sent: int  # the tenant's own letters handed over: on a platform server, not the others'
    day_sent: int
    recent: int  # the tenant's letters in the last RATE_SPAN
    hourly: list[int]  # the tenant's letters in each chart hour, oldest first
    in_flight: int = 0  # claimed by a batch, not handed over yet: counted in the windows, not as sent
    hold: TenantRest | None = None
    group_day_sent: int = 0  # the letters of every organisation sharing the tenant's platform quota


@dataclass(frozen=True)
class MailingRow:
    mailing: Mailing
    progress: Progress
    recent: int  # letters sent in the last RATE_SPAN
    finish_at: datetime | None  # None: its servers cannot finish it at their current limits


@dataclass(frozen=True)
class Dashboard:
    now: datetime
    hours: list[datetime]  # the chart's hours (local hour starts, in UTC), oldest first
    servers: list[ServerRow]
    mailings: list[MailingRow]
    more_mailings: bool


def dashboard(tenant: Tenant, now: datetime | None = None) -> Dashboard:
    now = now or timezone.now()
    minute = limits.trunc_minute(now)
    servers = tenant_and_platform_servers(tenant)
    slots = usage_slots([s.pk for s in servers], tenant, minute)
    usages = window_usage(servers, tenant, slots, minute)
    hours = chart_hours(now)
    hour_of = HourOf(hours)
    flying = _in_flight(tenant, [s.pk for s in servers])
    holds = {r.server_id: r for r in TenantRest.objects.filter(tenant=tenant, server__in=[s.pk for s in servers])}
    rows = [
        _server_row(s, usages[s.pk], slots[s.pk], hours, now, flying.get(s.pk, 0), holds.get(s.pk), hour_of)
        for s in servers
    ]
    mailings, more = _running_mailings(tenant)
    progress, recent, links = _mailing_reads(mailings, now)
    finish = _finish_times(mailings, progress, recent, links, rows, slots, now)
    mailing_rows = [MailingRow(m, progress[m.pk], recent.get(m.pk, 0), finish[m.pk]) for m in mailings]
    return Dashboard(now, hours, rows, mailing_rows, more)


# Usage slots


class Slot(NamedTuple):
    """The letters of one minute of the last hour, or one quarter before."""

    start: datetime
    exact: bool  # a single minute
    total: int  # every tenant's letters: the server's own limits
    mine: int  # the tenant's letters: its platform quota, its chart
    group: int = 0  # its quota group's letters: the shared platform quota

    @property
    def last_minute(self) -> datetime:
        return self.start if self.exact else self.start + timedelta(minutes=QUARTER) - MINUTE


def usage_slots(server_ids: list[int], tenant: Tenant, minute: datetime) -> dict[int, list[Slot]]:
    """The day window of each server in one query: minute by minute over
    the hour window (exact resume times), by quarter before; a busy server
    gives at most 61 + 92 rows. The slots are grouped by plain integers (day
    of the month, hour, minute), much cheaper to read than datetimes."""
    recent = minute - HOUR_SPAN
    if connection.vendor == "postgresql":
        return _pg_usage_slots(server_ids, tenant, minute)
    of_hour = _integer(ExtractMinute("minute", tzinfo=UTC))
    quarter = ExpressionWrapper(of_hour / Value(QUARTER) * Value(QUARTER), output_field=IntegerField())
    rows = (
        UsageBucket.objects.filter(server_id__in=server_ids, minute__gte=minute - DAY_SPAN)
        .annotate(
            day=_integer(ExtractDay("minute", tzinfo=UTC)),
            hour=_integer(ExtractHour("minute", tzinfo=UTC)),
            at=Case(When(minute__gte=recent, then=of_hour), default=quarter, output_field=IntegerField()),
        )
        .values_list("server_id", "day", "hour", "at")
        .order_by()
        .annotate(total=Sum("count"), mine=Coalesce(Sum("count", filter=Q(tenant=tenant)), 0), group=group_sum(tenant))
    )
    # The day window spans two dates at most: today's and yesterday's (UTC).
    midnights = {d.day: d for d in (minute.replace(hour=0, minute=0), minute.replace(hour=0, minute=0) - DAY)}
    slots: dict[int, list[Slot]] = defaultdict(list)
    for server_id, day, hour, at, total, mine, group in rows:
        start = midnights[day] + timedelta(hours=hour, minutes=at)
        slots[server_id].append(Slot(start, start >= recent, total, mine, group))
    for server_slots in slots.values():
        server_slots.sort()
    return slots


# The same slots on PostgreSQL: grouped by the bucket's minute, or its
# quarter (date_bin from a UTC midnight), which costs far less per row than
# extracting the day, hour and minute; each slot's start comes back as
# seconds since the epoch, much cheaper to read than a datetime.
SLOTS_SQL = """
WITH grouped AS (
    SELECT g.id FROM accounts_tenant t
    JOIN accounts_tenant g ON g.id = t.id OR g.created_by_id = t.created_by_id
    WHERE t.id = %(tenant)s
)
SELECT server_id, extract(epoch FROM slot)::bigint, sum(count),
       coalesce(sum(count) FILTER (WHERE tenant_id = %(tenant)s), 0),
       coalesce(sum(count) FILTER (WHERE tenant_id IN (SELECT id FROM grouped)), 0)
FROM (
    SELECT server_id, tenant_id, count,
           CASE WHEN minute >= %(recent)s THEN minute
                ELSE date_bin('15 minutes', minute, TIMESTAMPTZ '2000-01-01 00:00+00') END AS slot
    FROM mailing_usagebucket
    WHERE server_id = ANY(%(servers)s::bigint[]) AND minute >= %(day)s
) AS buckets
GROUP BY server_id, slot
"""


def _pg_usage_slots(server_ids: list[int], tenant: Tenant, minute: datetime) -> dict[int, list[Slot]]:
    recent = minute - HOUR_SPAN
    params = {"servers": server_ids, "tenant": tenant.pk, "recent": recent, "day": minute - DAY_SPAN}
    slots: dict[int, list[Slot]] = defaultdict(list)
    starts: dict[int, tuple[datetime, bool]] = {}  # the servers share their minutes and quarters
    make = tuple.__new__  # a NamedTuple's own __new__ is Python code: a third of this loop for 2,000 rows
    with connection.cursor() as cursor:
        cursor.execute(SLOTS_SQL, params)
        for server_id, at, total, mine, group in cursor.fetchall():
            if (start := starts.get(at)) is None:
                moment = datetime.fromtimestamp(at, UTC)
                start = starts[at] = (moment, moment >= recent)
            slots[server_id].append(make(Slot, (*start, total, mine, group)))
    for server_slots in slots.values():
        server_slots.sort()
    return slots


def window_usage(
    servers: list[SmtpServer], tenant: Tenant, slots: dict[int, list[Slot]], minute: datetime
) -> dict[int, Usage]:
    """What limits.window_usage says, from the slots already read (the same
    rows: the day window of each server) rather than by summing them again:
    the platform quotas (1 query) and, when a server is spent, the minutes
    of the quarters where its windows' edges fall (1 query)."""
    if connection.vendor != "postgresql":
        return limits.window_usage(servers, tenant, minute)  # SQLite (development): no running sums here
    quotas = platform_quotas([s for s in servers if s.is_platform], tenant)
    usages = {s.pk: limits.usage_from_sums(s, _sums(slots.get(s.pk, []), minute), quotas.get(s.pk)) for s in servers}
    spent = {s.pk: usages[s.pk] for s in servers if usages[s.pk].is_spent}
    resumes = _resume_times(spent, slots, tenant, minute)
    return {pk: replace(usage, resume_at=resumes.get(pk)) if pk in spent else usage for pk, usage in usages.items()}


def _sums(slots: list[Slot], minute: datetime) -> dict[str, int]:
    this_minute = hour = day = mine = group = 0
    for start, exact, total, own, grouped in slots:  # one pass: this runs for every server of every poll
        day += total
        mine += own
        group += grouped
        if exact:
            hour += total
            if start >= minute:
                this_minute += total
    return {"this_minute": this_minute, "hour": hour, "day": day, "mine": mine, "group": group}


# A spent window gets room back when its oldest buckets holding
# used - limit + 1 letters have left it (limits._window_resume): walked
# over the server's slots, oldest first. Where that falls in a quarter of
# an hour, the quarter's own minutes say which one (a second query, for
# all such quarters at once: a few rows each).
MINUTES_SQL = """
WITH grouped AS (
    SELECT g.id FROM accounts_tenant t
    JOIN accounts_tenant g ON g.id = t.id OR g.created_by_id = t.created_by_id
    WHERE t.id = %(tenant)s
)
SELECT q.server_id, b.minute, sum(b.count),
       coalesce(sum(b.count) FILTER (WHERE b.tenant_id = %(tenant)s), 0),
       coalesce(sum(b.count) FILTER (WHERE b.tenant_id IN (SELECT id FROM grouped)), 0)
FROM unnest(%(servers)s::bigint[], %(starts)s::timestamptz[]) AS q(server_id, start)
CROSS JOIN LATERAL (
    SELECT minute, count, tenant_id FROM mailing_usagebucket
    WHERE server_id = q.server_id AND minute >= q.start AND minute < q.start + %(quarter)s AND minute >= %(day)s
    OFFSET 0  -- kept apart: a range scan of the index per quarter, not a scan of the table
) AS b
GROUP BY q.server_id, b.minute
"""
WHOLE_QUARTER = timedelta(minutes=QUARTER)


class _Crossing(NamedTuple):
    server_id: int
    quarter: datetime
    field: str
    left: int  # letters of the quarter, oldest first, that must leave
    span: timedelta


def _resume_times(
    spent: dict[int, Usage], slots: dict[int, list[Slot]], tenant: Tenant, minute: datetime
) -> dict[int, datetime | None]:
    """When each spent server has room again: the later of its spent
    windows' times; NEVER with a limit of 0."""
    result: dict[int, datetime | None] = {}
    crossings: list[_Crossing] = []
    for pk, usage in spent.items():
        for at in _window_resumes(pk, usage, slots.get(pk, []), minute, crossings):
            result[pk] = max(at, result.get(pk) or at)
    if spent:  # always, so that the number of queries does not depend on the data
        for crossing, at in _refined(crossings, tenant, minute):
            result[crossing.server_id] = max(at, result.get(crossing.server_id) or at)
    return result


def _window_resumes(
    pk: int, usage: Usage, slots: list[Slot], minute: datetime, crossings: list[_Crossing]
) -> Iterator[datetime]:
    windows = (
        (usage.minute_limit, lambda s: s.exact and s.start >= minute, "total", timedelta(0)),
        (usage.hour_limit, lambda s: s.exact, "total", HOUR_SPAN),
        (usage.day_limit, None, "total", DAY_SPAN),
        (usage.tenant_quota, None, "mine", DAY_SPAN),
        (usage.group_quota, None, "group", DAY_SPAN),
    )
    for limit, within, name, span in windows:
        if limit is None:  # most servers have one or two limits: the others' slots are not walked
            continue
        counted = slots if within is None else [s for s in slots if within(s)]
        field_of = attrgetter(name)
        counts = [field_of(s) for s in counted]
        used = sum(counts)
        if used < limit:
            continue
        if limit == 0:
            yield limits.NEVER
            continue
        needed, leaving = used - limit + 1, 0
        for slot, count in zip(counted, counts, strict=True):
            if leaving + count >= needed:
                if slot.exact:
                    yield slot.start + span + MINUTE
                else:
                    crossings.append(_Crossing(pk, slot.start, name, needed - leaving, span))
                break
            leaving += count


def _refined(crossings: list[_Crossing], tenant: Tenant, minute: datetime) -> Iterator[tuple[_Crossing, datetime]]:
    """Each crossing's minute, from its quarter's minutes; if they changed
    since the slots were read, the quarter's last minute (later, never
    earlier, than the truth). Only the minutes still in the day window
    count, as in the slots: the quarter where the window begins may hold
    older ones not purged (nor rolled up) yet."""
    pairs = sorted({(c.server_id, c.quarter) for c in crossings})
    params = {
        "servers": [pk for pk, _ in pairs],
        "starts": [start for _, start in pairs],
        "tenant": tenant.pk,
        "quarter": WHOLE_QUARTER,
        "day": minute - DAY_SPAN,
    }
    minutes: dict[tuple[int, datetime], list[tuple[datetime, dict[str, int]]]] = defaultdict(list)
    with connection.cursor() as cursor:
        cursor.execute(MINUTES_SQL, params)
        for server_id, at, total, mine, group in cursor.fetchall():
            quarter = at - timedelta(minutes=at.minute % QUARTER)
            minutes[server_id, quarter].append((at, {"total": total, "mine": mine, "group": group}))
    for crossing in crossings:
        rows = sorted(minutes[crossing.server_id, crossing.quarter], key=lambda row: row[0])
        at, leaving = crossing.quarter + WHOLE_QUARTER - MINUTE, 0
        for moment, counts in rows:
            leaving += counts[crossing.field]
            if leaving >= crossing.left:
                at = moment
                break
        yield crossing, at + crossing.span + MINUTE


def _integer(expression: Func) -> Cast:
    return Cast(expression, IntegerField())


def chart_hours(now: datetime) -> list[datetime]:
    """The starts of the last CHART_HOURS local clock hours, the current one last."""
    current = timezone.localtime(now).replace(minute=0, second=0, microsecond=0).astimezone(UTC)
    return [current - timedelta(hours=back) for back in range(CHART_HOURS - 1, -1, -1)]


class HourOf(dict):
    """The chart hour (index in `hours`, -1 outside) of each slot start,
    worked out once per start: the servers share their minutes and quarters."""

    def __init__(self, hours: list[datetime]) -> None:
        super().__init__()
        self.first, self.count = hours[0], len(hours)

    def __missing__(self, start: datetime) -> int:
        index = (start - self.first) // ONE_HOUR
        self[start] = index = index if 0 <= index < self.count else -1
        return index


def _hourly(slots: list[Slot], hours: list[datetime], hour_of: HourOf | None = None) -> list[int]:
    counts, hour_of = [0] * len(hours), hour_of if hour_of is not None else HourOf(hours)
    for start, _, _, mine, _ in slots:
        if mine:  # on a platform server most slots are the others' letters
            index = hour_of[start]
            if index >= 0:
                counts[index] += mine
    return counts


# Servers


def _server_row(
    server: SmtpServer,
    usage: Usage,
    slots: list[Slot],
    hours: list[datetime],
    now: datetime,
    in_flight: int = 0,
    hold: TenantRest | None = None,
    hour_of: HourOf | None = None,
) -> ServerRow:
    since = limits.trunc_minute(now) - RATE_SPAN
    hour = day = recent = group = 0
    for start, exact, _, mine, grouped in slots:  # one pass: this runs for every server of every poll
        day += mine
        group += grouped
        if exact:
            hour += mine
            if start > since:
                recent += mine
    # The windows count a batch's claimed letters from the moment it takes
    # them; they are shown as sent only once handed over.
    return ServerRow(
        server=server,
        usage=usage,
        state=server_state(server, usage, slots, now, hold),
        hour_sent=max(0, hour - in_flight),
        day_sent=max(0, day - in_flight),
        recent=max(0, recent - in_flight),
        hourly=_hourly(slots, hours, hour_of),
        in_flight=in_flight,
        hold=hold,
        group_day_sent=max(0, group - in_flight),
    )


# The letters being sent: the small partial index letter_sending_idx (its
# condition written out, so that the planner takes it).
IN_FLIGHT_SQL = """
SELECT server_id, count(*) FROM mailing_letter
WHERE tenant_id = %(tenant)s AND status = 'sending' AND server_id = ANY(%(servers)s::bigint[])
GROUP BY server_id
"""


def _in_flight(tenant: Tenant, server_ids: list[int]) -> dict[int, int]:
    if connection.vendor != "postgresql":
        rows = (
            Letter.objects.filter(tenant=tenant, status=L.SENDING, server_id__in=server_ids)
            .values_list("server_id")
            .order_by()
            .annotate(n=Count("id"))
        )
        return dict(rows)
    # Plain SQL: building this small query through the ORM cost more than running it.
    with connection.cursor() as cursor:
        cursor.execute(IN_FLIGHT_SQL, {"tenant": tenant.pk, "servers": server_ids})
        return dict(cursor.fetchall())


def server_state(
    server: SmtpServer, usage: Usage, slots: list[Slot], now: datetime, hold: TenantRest | None = None
) -> State:
    """What stops the server first, else whether the tenant's letters go
    through it right now."""
    if not server.enabled:
        return State.DISABLED
    if server.health == Health.FAILING:
        return State.FAILING
    if server.backoff_until and server.backoff_until > now:
        return State.RATE_LIMITED if server.rest_reason == RestReason.RATE_LIMIT else State.RESTING
    if hold is not None and hold.holds(now):
        return State.HELD
    if usage.is_spent:
        return State.LIMIT
    since = limits.trunc_minute(now) - SENDING_SPAN
    if any(s.exact and s.start > since and s.mine for s in slots):
        return State.SENDING
    return State.IDLE


# Mailings


def _running_mailings(tenant: Tenant) -> tuple[list[Mailing], bool]:
    """Oldest first: the order in which the estimate gives them room."""
    running = Mailing.objects.filter(tenant=tenant, status__in=RUNNING).order_by("started_at", "pk")
    mailings = list(running[: MAX_MAILINGS + 1])
    return mailings[:MAX_MAILINGS], len(mailings) > MAX_MAILINGS


# Each running mailing's letters by status, one index-only count per
# (mailing, status) of the (mailing, status, id) index: the letters' rows
# are never read, however big the mailing; its letters sent since the
# first minute of the last RATE_SPAN (the sent_at index; by the minute, as
# the servers' rates, so the figure moves with the minute, which the stamp
# follows); and its servers in their order. One query for all three.
MAILINGS_SQL = """
SELECT m.id,
       ARRAY(SELECT (SELECT count(*) FROM mailing_letter l WHERE l.mailing_id = m.id AND l.status = s.status)
             FROM unnest(%(statuses)s::text[]) WITH ORDINALITY AS s(status, i) ORDER BY s.i),
       (SELECT count(*) FROM mailing_letter l
        WHERE l.mailing_id = m.id AND l.sent_at >= %(since)s AND l.sent_at <= %(now)s),
       ARRAY(SELECT ms.server_id FROM mailing_mailingserver ms
             WHERE ms.mailing_id = m.id AND ms.passed_over = '' ORDER BY ms.position)
FROM unnest(%(mailings)s::bigint[]) AS m(id)
"""


def _mailing_reads(
    mailings: list[Mailing], now: datetime
) -> tuple[dict[int, Progress], dict[int, int], dict[int, list[int]]]:
    """Each running mailing's progress, letters sent in the last RATE_SPAN
    and servers in their order."""
    if connection.vendor != "postgresql" or not mailings:
        return progress_for(mailings), _recent_letters(mailings, now), _server_links(mailings)
    progress: dict[int, Progress] = defaultdict(Progress)
    recent: dict[int, int] = {}
    links: dict[int, list[int]] = defaultdict(list)
    statuses = list(L.values)
    params = {"mailings": [m.pk for m in mailings], "statuses": statuses, "since": _rate_start(now), "now": now}
    with connection.cursor() as cursor:
        cursor.execute(MAILINGS_SQL, params)
        for mailing_id, counts, sent_lately, server_ids in cursor.fetchall():
            for status, n in zip(statuses, counts, strict=True):
                if n:
                    progress[mailing_id].counts[status] = n
                    progress[mailing_id].total += n
            recent[mailing_id] = sent_lately
            links[mailing_id] = server_ids
    return progress, recent, links


def _recent_letters(mailings: list[Mailing], now: datetime) -> dict[int, int]:
    if not mailings:
        return {}
    rows = (
        # By the minute, as the servers' rates (their buckets): the figure
        # moves with the minute, which the dashboard's stamp follows.
        Letter.objects.filter(mailing__in=[m.pk for m in mailings], sent_at__gte=_rate_start(now), sent_at__lte=now)
        .values("mailing_id")
        .order_by()
        .annotate(n=Count("id"))
    )
    return {row["mailing_id"]: row["n"] for row in rows}


def _rate_start(now: datetime) -> datetime:
    """The first minute of the last RATE_SPAN (the current one included)."""
    return limits.trunc_minute(now) - RATE_SPAN + MINUTE


def _finish_times(
    mailings: list[Mailing],
    progress: dict[int, Progress],
    recent: dict[int, int],
    links: dict[int, list[int]],
    rows: list[ServerRow],
    slots: dict[int, list[Slot]],
    now: datetime,
) -> dict[int, datetime | None]:
    demands = [Demand(m.pk, _pending(progress[m.pk]), tuple(links[m.pk])) for m in mailings]
    supplies = {row.server.pk: supply_for(row.server, row.usage, slots[row.server.pk], now) for row in rows}
    finish = finish_times(demands, {pk: s for pk, s in supplies.items() if s is not None}, now)
    return {m.pk: _speed_bound(m, finish[m.pk], _pending(progress[m.pk]), recent.get(m.pk, 0), now) for m in mailings}


def _server_links(mailings: list[Mailing]) -> dict[int, list[int]]:
    links: dict[int, list[int]] = defaultdict(list)
    if not mailings:
        return links
    # Not those a mailing goes on without (passed over): they send none of it.
    rows = MailingServer.objects.filter(mailing__in=[m.pk for m in mailings], passed_over="")
    rows = rows.order_by("mailing_id", "position")
    for mailing_id, server_id in rows.values_list("mailing_id", "server_id"):
        links[mailing_id].append(server_id)
    return links


def _pending(progress: Progress) -> int:
    """Letters still to hand over; those being sent already hold their room."""
    return progress.count(L.QUEUED) + progress.count(L.DEFERRED)


def _speed_bound(
    mailing: Mailing, finish: datetime | None, pending: int, recent: int, now: datetime
) -> datetime | None:
    """Limits are not the only brake: a mailing that is sending goes no
    faster than it did over the last minutes (one server without limits
    would otherwise "finish now" whatever its queue)."""
    if finish is None or mailing.status != M.ACTIVE or not recent or not mailing.started_at:
        return finish
    watched = min(RATE_SPAN, max(MINUTE, now - mailing.started_at))
    return max(finish, now + watched * pending / recent)


# The finish-time estimate


@dataclass
class Window:
    """One of a server's windows as the estimate replays it: the letters it
    holds, each leaving at its time (a heap of (leaves_at, count))."""

    limit: int
    span: timedelta
    leaving: list[tuple[datetime, int]]
    held: int = 0

    def __post_init__(self) -> None:
        heapq.heapify(self.leaving)
        self.held = sum(count for _, count in self.leaving)

    def room_at(self, moment: datetime) -> int:
        while self.leaving and self.leaving[0][0] <= moment:
            self.held -= heapq.heappop(self.leaving)[1]
        return max(0, self.limit - self.held)

    def take(self, moment: datetime, count: int) -> None:
        # Counted in the bucket of its minute, like the dispatcher's letters.
        heapq.heappush(self.leaving, (limits.trunc_minute(moment) + self.span, count))
        self.held += count

    def next_leaving(self) -> datetime | None:
        return self.leaving[0][0] if self.leaving else None

    @property
    def pace(self) -> float:
        """Letters per second it lets through in the long run."""
        return self.limit / self.span.total_seconds()


@dataclass
class Supply:
    """A usable server from `start` on (now, or when it stops resting)."""

    start: datetime
    windows: list[Window] = field(default_factory=list)  # none: no limit at all

    @property
    def pace(self) -> float | None:
        return min(w.pace for w in self.windows) if self.windows else None


@dataclass(frozen=True)
class Demand:
    key: int
    pending: int
    servers: tuple[int, ...]


def supply_for(server: SmtpServer, usage: Usage, slots: list[Slot], now: datetime) -> Supply | None:
    """The server's windows, filled with what they hold now: exact minutes
    in the hour window; in the day window each quarter leaves with its last
    minute, so the estimate errs late, by a quarter at most. None: the server
    cannot send (disabled or failing)."""
    if not server.is_usable:
        return None
    # A rate-limited or resting server sends again when its rest ends.
    start = max(now, server.backoff_until or now)
    windows = []
    if server.max_per_minute is not None:
        minute = [(s.start + MINUTE, s.total) for s in slots if s.exact and s.start >= limits.trunc_minute(now)]
        windows.append(Window(server.max_per_minute, MINUTE, minute))
    if server.max_per_hour is not None:
        hour = [(s.start + HOUR_LEAVES, s.total) for s in slots if s.exact]
        windows.append(Window(server.max_per_hour, HOUR_LEAVES, hour))
    if server.max_per_day is None and usage.tenant_quota is None and usage.group_quota is None:
        return Supply(start, windows)
    leaves = [s.last_minute + DAY_LEAVES for s in slots]
    if server.max_per_day is not None:
        windows.append(
            Window(server.max_per_day, DAY_LEAVES, [(at, s.total) for at, s in zip(leaves, slots, strict=True)])
        )
    if usage.tenant_quota is not None:
        windows.append(
            Window(usage.tenant_quota, DAY_LEAVES, [(at, s.mine) for at, s in zip(leaves, slots, strict=True)])
        )
    if usage.group_quota is not None:
        # The estimate takes what the other organisations sent as it stands.
        windows.append(
            Window(usage.group_quota, DAY_LEAVES, [(at, s.group) for at, s in zip(leaves, slots, strict=True)])
        )
    return Supply(start, windows)


def grants(supply: Supply, until: datetime) -> Iterator[tuple[datetime, int | None]]:
    """What a server kept busy at its limits takes: (when, how many), None
    meaning any number. Each grant fills its windows, and the next comes
    when letters leave them."""
    if not supply.windows:
        yield supply.start, None
        return
    moment = supply.start
    while moment <= until:
        room = min(w.room_at(moment) for w in supply.windows)
        if room:
            yield moment, room
            for window in supply.windows:
                window.take(moment, room)
        upcoming = [at for w in supply.windows if (at := w.next_leaving()) is not None]
        if not upcoming:
            return  # a limit of 0: nothing will ever leave
        moment = min(upcoming)


def finish_times(demands: list[Demand], supplies: dict[int, Supply], now: datetime) -> dict[int, datetime | None]:
    """When each demand's letters have all gone out, if every server is kept
    busy at its limits. Demands take room in their order (the oldest mailing
    first; the dispatcher interleaves them, which moves each one's finish but
    not the last one's). The windows are replayed up to HORIZON, then the
    servers go on at their steady pace."""
    left = {d.key: d.pending for d in demands}
    finish: dict[int, datetime | None] = {d.key: now for d in demands if d.pending <= 0}
    takers: dict[int, list[int]] = defaultdict(list)  # server -> demands that may use it, in order
    for demand in demands:
        for server_id in dict.fromkeys(demand.servers):
            if demand.key not in finish and server_id in supplies:
                takers[server_id].append(demand.key)
    until = now + HORIZON
    streams = {server_id: grants(supplies[server_id], until) for server_id in takers}
    heap: list[tuple[datetime, int, int | None]] = []
    for server_id in streams:
        _push_next(heap, server_id, streams[server_id])
    while heap:
        moment, server_id, count = heapq.heappop(heap)
        _hand_out(count, takers[server_id], left, finish, moment)
        if any(left[key] for key in takers[server_id]):
            _push_next(heap, server_id, streams[server_id])
    unfinished = [d for d in demands if d.key not in finish]
    finish.update(_steady_finish(unfinished, left, supplies, until))
    return finish


def _push_next(heap: list, server_id: int, stream: Iterator[tuple[datetime, int | None]]) -> None:
    grant = next(stream, None)
    if grant is not None:
        heapq.heappush(heap, (grant[0], server_id, grant[1]))


def _hand_out(count: int | None, keys: list[int], left: dict[int, int], finish: dict, moment: datetime) -> None:
    for key in keys:
        if count == 0:
            return
        taken = left[key] if count is None else min(count, left[key])
        left[key] -= taken
        if count is not None:
            count -= taken
        if taken and not left[key]:
            finish[key] = moment


def _steady_finish(
    demands: list[Demand], left: dict[int, int], supplies: dict[int, Supply], start: datetime
) -> dict[int, datetime | None]:
    """Past the horizon, every server sends at its long-run pace; each demand
    has its servers once the demands before it are done."""
    free_from: dict[int, datetime] = {}
    result: dict[int, datetime | None] = {}
    for demand in demands:
        feeds = [
            (free_from.get(pk, max(start, supplies[pk].start)), supplies[pk].pace or 0.0)
            for pk in dict.fromkeys(demand.servers)
            if pk in supplies
        ]
        result[demand.key] = _fluid_finish(left[demand.key], feeds)
        for pk in demand.servers:
            free_from[pk] = result[demand.key] or limits.NEVER
    return result


def _fluid_finish(letters: float, feeds: list[tuple[datetime, float]]) -> datetime | None:
    """When `letters` have gone out through servers each joining at its time
    with a pace in letters per second."""
    joined = sorted((at, pace) for at, pace in feeds if pace > 0 and at < limits.NEVER)
    pace, moment = 0.0, None
    for at, extra in joined:
        if moment is not None:
            possible = pace * (at - moment).total_seconds()
            if possible >= letters:
                break
            letters -= possible
        moment, pace = at, pace + extra
    if moment is None:
        return None
    return moment + timedelta(seconds=letters / pace)
