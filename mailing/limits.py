"""Limit accounting: how many letters a server may still take, reserved
atomically in PostgreSQL so that any number of workers on any number of
machines never exceed a server's hourly or daily limit, or a tenant's daily
quota on a platform server, by a single letter.

Every letter handed to a server in DATA is counted in a UsageBucket: the
bucket of (server, tenant, minute it was reserved in). The windows are
rolling and read from those buckets:

- a bucket of minute m counts in the hour window at instant t while
  m >= trunc_minute(t) - 60 min, so it leaves at m + 61 min;
- it counts in the day window while m >= trunc_minute(t) - 1440 min, so it
  leaves at m + 1441 min.

Why the extra minute: a bucket only says its letters went out somewhere in
[m, m + 1 min). Were it to leave at m + 60 min, letters sent at m + 59 s and
a full limit's worth granted again at m + 60 min would fall within one
60-minute interval. Leaving at m + 61 min, the window at t covers everything
sent in the last 60 minutes (and up to one minute more), so no exact
60-minute or 24-hour interval can ever hold more than the limit. The price is
at most one minute of waiting more than strictly needed.

The clock is the worker's: machines must keep it synchronised (NTP), since
a worker running late would write buckets that leave the window early.

A server's optional max per minute is counted in the same buckets, over
the clock minute: the bucket of the current minute alone. No clock minute
holds more than the limit; a provider that counts a sliding minute may see
up to twice the limit across a minute boundary, and its rate-limit reply
then makes the dispatcher wait (mailing.dispatch.replies). Counting the
previous minute too would halve what such a server sends.

That guarantee assumes a reservation's letters are handed over in the
minute it was made (Reservation.expires_at): a sender should reserve in
small chunks right before DATA and release what it did not use.

Past the hour window a minute's precision no longer matters: beat rolls
the buckets of each quarter of an hour up into one at the quarter's last
minute (roll_up), which counts every letter in the day window as long as
before or up to 14 minutes longer, never shorter.

On a platform server a tenant has two daily quotas: its own, over its own
buckets, and the one the organisations created by the same account share
(the largest of their quotas), over all their buckets
(servers.selectors.Quotas). Every reservation on a server holds the
server's row lock, whichever tenant makes it, so the shared sum is exact
under concurrency as well."""

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from django.db import connection, transaction
from django.db.models import F, Q, Sum, Value
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from accounts.models import Tenant
from accounts.selectors import quota_group
from config import statements
from servers.models import SmtpServer
from servers.selectors import Quotas, platform_quota, platform_quotas

from .models import UsageBucket

MINUTE = timedelta(minutes=1)
HOUR_SPAN = timedelta(minutes=60)  # buckets this far before the current minute still count
DAY_SPAN = timedelta(minutes=1440)
# When a limit is 0, room never comes back by waiting; only editing the
# server (or the quota) does.
NEVER = datetime.max.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Reservation:
    server_id: int
    tenant_id: int
    minute: datetime
    granted: int

    @property
    def expires_at(self) -> datetime:
        """Hand the granted letters to the server before this instant;
        afterwards release the rest and reserve again."""
        return self.minute + MINUTE


@dataclass(frozen=True)
class Usage:
    hour_used: int
    day_used: int
    hour_limit: int | None
    day_limit: int | None
    hour_left: int | None  # None: no limit
    day_left: int | None
    minute_used: int = 0
    minute_limit: int | None = None
    minute_left: int | None = None
    tenant_day_used: int | None = None  # platform servers only
    tenant_quota: int | None = None
    tenant_day_left: int | None = None
    # The quota the organisations of the tenant's creator share (platform
    # servers only), over the letters of them all.
    group_day_used: int | None = None
    group_quota: int | None = None
    group_day_left: int | None = None
    group_size: int = 1
    resume_at: datetime | None = None  # when a spent server gets room again

    @property
    def left(self) -> int | None:
        """How many letters the server may take now (None: no limit)."""
        return _min_room(self.minute_left, self.hour_left, self.day_left, self.tenant_day_left, self.group_day_left)

    @property
    def is_spent(self) -> bool:
        return self.left == 0

    @property
    def only_minute_spent(self) -> bool:
        """Only the max per minute is spent: room comes back next minute."""
        others = _min_room(self.hour_left, self.day_left, self.tenant_day_left, self.group_day_left)
        return self.minute_left == 0 and (others is None or others > 0)

    def room_beyond(self, unhanded: int) -> int | None:
        """What is left when `unhanded` of the letters these windows count
        were never handed to the server (a batch's claimed letters, counted
        from the claim): None without any limit; it may be negative."""
        windows = (
            (self.minute_limit, self.minute_used),
            (self.hour_limit, self.hour_used),
            (self.day_limit, self.day_used),
            (self.tenant_quota, self.tenant_day_used),
            (self.group_quota, self.group_day_used),
        )
        rooms = [limit - (used - unhanded) for limit, used in windows if limit is not None]
        return min(rooms) if rooms else None


def trunc_minute(moment: datetime) -> datetime:
    if timezone.is_naive(moment):
        raise ValueError("Limit accounting needs aware datetimes.")
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


def reserve(*, server: SmtpServer, tenant: Tenant, wanted: int, now: datetime | None = None) -> Reservation:
    """Grant up to `wanted` letters on `server` for `tenant` now, and count
    them at once. The grant may be smaller, or 0 when the server is spent."""
    if wanted < 0:
        raise ValueError("wanted must not be negative")
    minute = trunc_minute(now or timezone.now())
    if wanted and _unlimited(server, tenant) and _add_if_unlimited(server, tenant, minute, wanted):
        return Reservation(server_id=server.pk, tenant_id=tenant.pk, minute=minute, granted=wanted)
    with transaction.atomic():
        locked = _lock(server)
        _check_tenant(locked, tenant)
        room = _room(locked, tenant, minute)
        granted = wanted if room is None else min(wanted, room)
        if granted:
            _add(server_id=locked.pk, tenant_id=tenant.pk, minute=minute, count=granted)
    return Reservation(server_id=locked.pk, tenant_id=tenant.pk, minute=minute, granted=granted)


def release(*, reservation: Reservation, unused: int) -> None:
    """Give back letters that were reserved but never handed to the server.

    One UPDATE, atomic on its own: no server lock is needed to lower a count,
    and a concurrent reservation that still sees the old count only errs on
    the safe side."""
    if not 0 <= unused <= reservation.granted:
        raise ValueError(f"unused must be between 0 and {reservation.granted}")
    if not unused:
        return
    UsageBucket.objects.filter(
        server_id=reservation.server_id, tenant_id=reservation.tenant_id, minute=reservation.minute
    ).update(count=Greatest(F("count") - Value(unused), Value(0)))


def window_usage(servers: Iterable[SmtpServer], tenant: Tenant, now: datetime | None = None) -> dict[int, Usage]:
    """Each server's windows as `tenant` sees them, in three queries at most
    whatever the number of servers: the sums, the tenant's platform quotas,
    and the minute-by-minute rows of the spent servers for their resume time
    (plus one if `servers` is an unevaluated queryset). The servers' limits
    are taken as passed."""
    servers = list(servers)
    minute = trunc_minute(now or timezone.now())
    sums = _sums_by_server([s.pk for s in servers], tenant, minute)
    quotas = platform_quotas([s for s in servers if s.is_platform], tenant)
    usages = {s.pk: usage_from_sums(s, sums.get(s.pk, {}), quotas.get(s.pk)) for s in servers}
    spent = [s.pk for s in servers if usages[s.pk].is_spent]
    history = _minutes_by_server(spent, tenant, minute)
    for server_id in spent:
        resume_at = _resume_at(usages[server_id], history[server_id], minute)
        usages[server_id] = replace(usages[server_id], resume_at=resume_at)
    return usages


def next_room_at(server: SmtpServer, tenant: Tenant, now: datetime | None = None) -> datetime | None:
    """When `server` has room for `tenant` again: None when it has room
    now, NEVER when a limit of 0 leaves nothing to wait for."""
    return window_usage([server], tenant, now)[server.pk].resume_at


def purge_expired(*, now: datetime | None = None) -> int:
    """Delete buckets that left every window; a periodic task calls this
    to keep the table and its indexes small."""
    oldest_counted = trunc_minute(now or timezone.now()) - DAY_SPAN
    deleted, _ = UsageBucket.objects.filter(minute__lt=oldest_counted).delete()
    return deleted


# Rolling up: past the hour window a bucket only counts in the day window
# (and the platform quotas, over the day too), so a minute's precision
# matters there no more than a quarter of an hour's. The buckets of one
# (server, tenant) in a quarter that ended before the hour window began are
# summed into one bucket at the quarter's LAST minute: every letter keeps
# counting in the day window at least as long as in its own minute's bucket
# (up to 14 minutes longer), so no 24-hour interval ever holds more than
# the limit, and a busy server's day window is about 60 + 92 rows per
# tenant instead of up to 1,441. One statement: a reader sees the quarter's
# minutes or its sum, never both or neither. Nothing else writes such old
# buckets (a reservation writes its own minute; its release comes within
# the batch, minutes later).
# Quarters are counted from a UTC midnight, as the dashboard groups them
# (every real time zone offset is a whole number of quarters).
ROLL_UP_MINUTES = 15  # as written in the statement
_ROLL_UP_SQL = """
WITH moved AS (
    DELETE FROM mailing_usagebucket
    WHERE minute < %(before)s
      AND minute <> date_bin('15 minutes', minute, TIMESTAMPTZ '2000-01-01 00:00+00') + interval '14 minutes'
    RETURNING server_id, tenant_id,
              date_bin('15 minutes', minute, TIMESTAMPTZ '2000-01-01 00:00+00') + interval '14 minutes' AS last,
              count
)
INSERT INTO mailing_usagebucket (server_id, tenant_id, minute, count)
SELECT server_id, tenant_id, last, sum(count) FROM moved GROUP BY server_id, tenant_id, last
ON CONFLICT (server_id, tenant_id, minute) DO UPDATE SET count = mailing_usagebucket.count + EXCLUDED.count
"""


def roll_up(*, now: datetime | None = None) -> int:
    """Sum the buckets of each quarter of an hour that ended before the hour
    window into one at the quarter's last minute; returns how many such sums
    were written. PostgreSQL only: development's SQLite keeps minutes."""
    if connection.vendor != "postgresql":
        return 0
    hour_start = trunc_minute(now or timezone.now()) - HOUR_SPAN
    # The start of the quarter the hour window begins in: the quarters before
    # it ended in time for their last minute to be out of the hour window.
    before = hour_start - timedelta(minutes=hour_start.minute % ROLL_UP_MINUTES)
    with connection.cursor() as cursor:
        cursor.execute(_ROLL_UP_SQL, {"before": before})
        return cursor.rowcount


# Reserving

# The table name is the model's default one (a test pins it).
_ADD_SQL = """
    INSERT INTO mailing_usagebucket (server_id, tenant_id, minute, count) VALUES (%s, %s, %s, %s)
    ON CONFLICT (server_id, tenant_id, minute) DO UPDATE SET count = mailing_usagebucket.count + EXCLUDED.count
"""


def paced(server: SmtpServer, usage: Usage) -> bool:
    """Only the server's max per minute is spent: a pace, not a spent
    limit; it has room again next minute and is waited for, never passed
    over for the next server in a mailing's order. A max per minute of 0 is
    a limit of 0, not a pace."""
    return bool(server.max_per_minute) and usage.only_minute_spent


def counted(server: SmtpServer) -> bool:
    """Whether any window limits the server: its own limits, or the
    platform's quotas (a platform server), as the server was last read."""
    return server.is_platform or any(
        limit is not None for limit in (server.max_per_minute, server.max_per_hour, server.max_per_day)
    )


def _unlimited(server: SmtpServer, tenant: Tenant) -> bool:
    """As last read: the tenant's own server, without any limit."""
    return connection.vendor == "postgresql" and server.tenant_id == tenant.pk and not counted(server)


# A tenant's own server without limits: the grant is all that was wanted,
# counted in one statement instead of a transaction of four round trips.
# The row lock is still taken, and the conditions are checked on the row as
# it is once locked: a limit set meanwhile makes the statement add nothing,
# and the reservation goes the long way. The names are the models' (a test
# pins them).
_ADD_IF_UNLIMITED_SQL = """
    WITH server AS (
        SELECT id FROM servers_smtpserver
        WHERE id = %s AND tenant_id = %s
          AND max_per_minute IS NULL AND max_per_hour IS NULL AND max_per_day IS NULL
        FOR NO KEY UPDATE
    )
    INSERT INTO mailing_usagebucket (server_id, tenant_id, minute, count)
    SELECT id, %s, %s, %s FROM server
    ON CONFLICT (server_id, tenant_id, minute) DO UPDATE SET count = mailing_usagebucket.count + EXCLUDED.count
    RETURNING 1
"""


def _add_if_unlimited(server: SmtpServer, tenant: Tenant, minute: datetime, count: int) -> bool:
    with statements.cursor() as cursor:
        cursor.execute(_ADD_IF_UNLIMITED_SQL, [server.pk, tenant.pk, tenant.pk, minute, count])
        return cursor.fetchone() is not None


def _lock(server: SmtpServer) -> SmtpServer:
    """Lock the server row for the transaction: every reservation on one
    server waits for the previous one, across workers and machines. NO KEY
    UPDATE still serializes reservations but lets other transactions insert
    rows that point at the server (letters, buckets) meanwhile. On SQLite the
    database-wide write lock serializes instead."""
    return SmtpServer.objects.select_for_update(no_key=True).get(pk=server.pk)


def _check_tenant(server: SmtpServer, tenant: Tenant) -> None:
    if not server.is_platform and server.tenant_id != tenant.pk:
        raise ValueError("A tenant's own server counts only its owner's letters.")


def _room(server: SmtpServer, tenant: Tenant, minute: datetime) -> int | None:
    """How many letters fit in every window now (None: no limit at all)."""
    quotas = platform_quota(server, tenant) if server.is_platform else Quotas(None, None)
    limits = (server.max_per_minute, server.max_per_hour, server.max_per_day, quotas.own, quotas.shared)
    if all(limit is None for limit in limits):
        return None  # nothing to sum against; the grant is still counted
    sums = UsageBucket.objects.filter(server=server, minute__gte=minute - DAY_SPAN).aggregate(
        **_window_sums(tenant, minute)
    )
    return _min_room(
        _left(server.max_per_minute, sums["this_minute"]),
        _left(server.max_per_hour, sums["hour"]),
        _left(server.max_per_day, sums["day"]),
        _left(quotas.own, sums["mine"]),
        _left(quotas.shared, sums["group"]),
    )


def _add(*, server_id: int, tenant_id: int, minute: datetime, count: int) -> None:
    """Add to the minute's bucket in one statement, creating it if needed.
    ON CONFLICT makes it safe even without the server lock, on PostgreSQL
    and on SQLite alike."""
    # The backend's own adaptation, so the key matches the ORM's (SQLite
    # stores naive UTC text).
    stored_minute = connection.ops.adapt_datetimefield_value(minute)
    with statements.cursor() as cursor:
        cursor.execute(_ADD_SQL, [server_id, tenant_id, stored_minute, count])


# Reading the windows


def _window_sums(tenant: Tenant, minute: datetime) -> dict[str, Coalesce]:
    """Over rows already limited to the day window: the hour window, the
    day window, the tenant's own share of the day (its platform quota) and
    its quota group's (the shared quota)."""
    return {
        "this_minute": Coalesce(Sum("count", filter=Q(minute__gte=minute)), 0),
        "hour": Coalesce(Sum("count", filter=Q(minute__gte=minute - HOUR_SPAN)), 0),
        "day": Coalesce(Sum("count"), 0),
        "mine": Coalesce(Sum("count", filter=Q(tenant=tenant)), 0),
        "group": group_sum(tenant),
    }


def group_sum(tenant: Tenant) -> Coalesce:
    """The letters of every organisation sharing `tenant`'s quotas, in the
    same query (a subquery, not a round trip)."""
    return Coalesce(Sum("count", filter=Q(tenant_id__in=quota_group(tenant).values("pk"))), 0)


def _sums_by_server(server_ids: list[int], tenant: Tenant, minute: datetime) -> dict[int, dict[str, int]]:
    rows = (
        UsageBucket.objects.filter(server_id__in=server_ids, minute__gte=minute - DAY_SPAN)
        .values("server_id")
        .order_by()
        .annotate(**_window_sums(tenant, minute))
    )
    return {row.pop("server_id"): row for row in rows}


def usage_from_sums(server: SmtpServer, sums: dict[str, int], quotas: Quotas | None) -> Usage:
    """A server's windows from its sums (keys as _window_sums')."""
    hour, day, mine, group = sums.get("hour", 0), sums.get("day", 0), sums.get("mine", 0), sums.get("group", 0)
    usage = Usage(
        hour_used=hour,
        day_used=day,
        hour_limit=server.max_per_hour,
        day_limit=server.max_per_day,
        hour_left=_left(server.max_per_hour, hour),
        day_left=_left(server.max_per_day, day),
        minute_used=sums.get("this_minute", 0),
        minute_limit=server.max_per_minute,
        minute_left=_left(server.max_per_minute, sums.get("this_minute", 0)),
    )
    if not server.is_platform or quotas is None:
        return usage
    return replace(
        usage,
        tenant_day_used=mine,
        tenant_quota=quotas.own,
        tenant_day_left=_left(quotas.own, mine),
        group_day_used=group,
        group_quota=quotas.shared,
        group_day_left=_left(quotas.shared, group),
        group_size=quotas.organisations,
    )


class _Minute(NamedTuple):
    minute: datetime
    total: int  # all tenants: the server's own limits
    mine: int  # the tenant's letters: its platform quota
    group: int  # its quota group's letters: the shared quota


def _minutes_by_server(server_ids: list[int], tenant: Tenant, minute: datetime) -> dict[int, list[_Minute]]:
    """Each spent server's minutes in the day window, oldest first: at most
    1,441 rows per server, whatever the number of tenants."""
    history: dict[int, list[_Minute]] = defaultdict(list)
    if not server_ids:
        return history
    rows = (
        UsageBucket.objects.filter(server_id__in=server_ids, minute__gte=minute - DAY_SPAN)
        .values("server_id", "minute")
        .order_by("server_id", "minute")
        .annotate(total=Sum("count"), mine=Coalesce(Sum("count", filter=Q(tenant=tenant)), 0), group=group_sum(tenant))
    )
    for row in rows:
        history[row["server_id"]].append(_Minute(row["minute"], row["total"], row["mine"], row["group"]))
    return history


def _resume_at(usage: Usage, history: list[_Minute], minute: datetime) -> datetime | None:
    """The later of the spent windows' resume times."""
    in_hour = [(h.minute, h.total) for h in history if h.minute >= minute - HOUR_SPAN]
    in_minute = [(h.minute, h.total) for h in history if h.minute >= minute]
    candidates = [
        _window_resume(usage.minute_limit, in_minute, timedelta(0)),
        _window_resume(usage.hour_limit, in_hour, HOUR_SPAN),
        _window_resume(usage.day_limit, [(h.minute, h.total) for h in history], DAY_SPAN),
        _window_resume(usage.tenant_quota, [(h.minute, h.mine) for h in history], DAY_SPAN),
        _window_resume(usage.group_quota, [(h.minute, h.group) for h in history], DAY_SPAN),
    ]
    return max((c for c in candidates if c is not None), default=None)


def _window_resume(limit: int | None, buckets: list[tuple[datetime, int]], span: timedelta) -> datetime | None:
    """With `used` >= `limit`, room for one letter comes back when the
    oldest buckets holding used - limit + 1 letters have left the window;
    bucket m leaves at m + span + 1 min. The buckets are counted here rather
    than taken from the sums so that both agree under concurrent writes."""
    used = sum(count for _, count in buckets)
    if limit is None or used < limit:
        return None
    if limit == 0:
        return NEVER
    leaving, needed = 0, used - limit + 1
    for bucket_minute, count in buckets:
        leaving += count
        if leaving >= needed:
            return bucket_minute + span + MINUTE
    raise AssertionError("the buckets sum to `used`, so the walk always ends")


def _left(limit: int | None, used: int) -> int | None:
    return None if limit is None else max(0, limit - used)


def _min_room(*rooms: int | None) -> int | None:
    limited = [room for room in rooms if room is not None]
    return min(limited) if limited else None
