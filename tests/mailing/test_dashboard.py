"""The dashboard's reads with a fixed clock: window counts, what is left,
states and resume times, the chart's hours, and the finish-time estimate."""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from mailing import limits
from mailing.dashboard import selectors as dashboard
from mailing.dashboard.selectors import State
from mailing.limits import NEVER
from mailing.models import Mailing
from servers.models import Health
from tests.servers.factories import make_server

from .dashboard_builders import bucket, minutes, running_mailing

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 3, 10, 14, 30, 20, tzinfo=UTC)
M = NOW.replace(second=0)  # the current minute: buckets and windows count in minutes


# Windows, what is left, state, resume time

WINDOW_CASES = {
    # limits, buckets (minutes before M, letters) -> hour sent, day sent, hour left, day left, state, resume
    "room left, old buckets out of the windows": (
        {"max_per_hour": 100, "max_per_day": 500},
        [(10, 30), (60, 20), (61, 40), (1440, 50), (1441, 70)],
        (50, 140, 50, 360, State.IDLE, None),
    ),
    "sending right now": (
        {"max_per_hour": 100},
        [(0, 3), (1, 4)],
        (7, 7, 93, None, State.SENDING, None),
    ),
    "hourly limit reached: room when the oldest letters leave": (
        {"max_per_hour": 10},
        [(20, 4), (5, 6)],
        (10, 10, 0, None, State.LIMIT, M + minutes(41)),
    ),
    "daily limit reached with the hour free": (
        {"max_per_hour": 100, "max_per_day": 10},
        [(1380, 4), (120, 6)],
        (0, 10, 100, 0, State.LIMIT, M + minutes(61)),
    ),
    "a limit of 0 never frees": (
        {"max_per_hour": 0},
        [],
        (0, 0, 0, None, State.LIMIT, NEVER),
    ),
}


@pytest.mark.parametrize("case", WINDOW_CASES.values(), ids=WINDOW_CASES.keys())
def test_each_server_shows_its_windows_what_is_left_and_its_state(tenant_a, case):
    limits, used, expected = case
    server = make_server(tenant_a, **limits)
    for ago, count in used:
        bucket(server, tenant_a, M - minutes(ago), count)
    row = only_own(dashboard.dashboard(tenant_a, NOW))
    usage = row.usage
    assert (row.hour_sent, row.day_sent, usage.hour_left, usage.day_left, row.state, usage.resume_at) == expected


def test_a_letter_out_of_the_day_window_does_not_bring_the_resume_time_forward(tenant_a):
    # The day window starts at 14:37 yesterday, inside the quarter from
    # 14:30; the letter of 14:36 has left it but is not purged yet (nor
    # rolled up). Room comes back when the letter of 14:37 leaves, at 14:38
    # today, as the dispatcher reckons it; not at 14:37, a minute too early.
    now = NOW.replace(minute=37)
    minute = now.replace(second=0)
    server = make_server(tenant_a, max_per_day=2)
    for ago in (1441, 1440, 1439):
        bucket(server, tenant_a, minute - minutes(ago), 1)
    usage = only_own(dashboard.dashboard(tenant_a, now)).usage
    assert usage.resume_at == limits.next_room_at(server, tenant_a, now) == minute + minutes(1)


@pytest.mark.parametrize(
    ("fields", "state"),
    [
        ({"enabled": False}, State.DISABLED),
        ({"health": Health.FAILING, "health_error": "535 bad password"}, State.FAILING),
        ({"backoff_until": NOW + minutes(5)}, State.RESTING),
        ({"backoff_until": NOW - minutes(5)}, State.LIMIT),  # the rest is over; the limit still holds
    ],
)
def test_what_stops_a_server_comes_before_its_limit(tenant_a, fields, state):
    server = make_server(tenant_a, max_per_hour=1, **fields)
    bucket(server, tenant_a, M, 1)
    assert only_own(dashboard.dashboard(tenant_a, NOW)).state == state


def test_on_a_platform_server_the_tenant_sees_its_own_letters_and_quota(tenant_a, tenant_b, settings):
    settings.DEPLOYMENT_MODE = "saas"
    platform = make_server(None, name="Platform", max_per_hour=1000, tenant_daily_quota=50)
    bucket(platform, tenant_a, M - minutes(180), 50)
    bucket(platform, tenant_b, M - minutes(10), 20)
    mine = dashboard.dashboard(tenant_a, NOW).servers[0]
    assert (mine.hour_sent, mine.day_sent, mine.usage.tenant_day_left) == (0, 50, 0)
    assert mine.usage.hour_left == 980  # the server's own limit counts everybody's letters
    assert mine.state == State.LIMIT and mine.usage.resume_at == M + minutes(1441 - 180)
    theirs = dashboard.dashboard(tenant_b, NOW).servers[0]
    assert (theirs.hour_sent, theirs.day_sent, theirs.usage.tenant_day_left, theirs.state) == (20, 20, 30, State.IDLE)
    assert sum(theirs.hourly) == 20


def test_servers_come_in_sending_order_own_then_platform(tenant_a, settings):
    settings.DEPLOYMENT_MODE = "saas"
    make_server(None, name="Platform")
    make_server(tenant_a, name="Second", priority=2)
    make_server(tenant_a, name="First", priority=1)
    make_server(tenant_a, name="Off", priority=3, enabled=False)
    names = [row.server.name for row in dashboard.dashboard(tenant_a, NOW).servers]
    assert names == ["First", "Second", "Off", "Platform"]


# The chart


def test_the_chart_counts_letters_per_local_hour_over_a_day(tenant_a):
    server = make_server(tenant_a)
    # Kolkata is UTC+5:30: the local hour 20:00 started at 14:30 UTC.
    for ago, count in [(0, 1), (1, 2), (70, 4), (23 * 60, 8), (1440, 16)]:
        bucket(server, tenant_a, M - minutes(ago), count)
    with timezone.override("Asia/Kolkata"):
        board = dashboard.dashboard(tenant_a, NOW)
    assert board.hours[-1] == M and board.hours[0] == M - timedelta(hours=23)
    hourly = board.servers[0].hourly
    assert (hourly[-1], hourly[-2], hourly[-3], hourly[0]) == (1, 2, 4, 8)
    assert sum(hourly) == 15  # the bucket 24 hours back is before the chart's first hour


# The finish-time estimate


@dataclass
class Plan:
    servers: list[dict]  # server fields, with "used": [(minutes before M, letters)]
    mailings: list[dict]  # queued, servers (indexes), and running_mailing's other arguments
    expected: list[datetime | None] = field(default_factory=list)


FINISH_CASES = {
    "room for the whole queue now": Plan(
        [{"max_per_hour": 100}], [{"queued": 50}], [NOW]
    ),
    "the hourly window frees room twice": Plan(
        [{"max_per_hour": 100, "used": [(20, 100)]}], [{"queued": 150}], [M + minutes(102)]
    ),
    "the daily limit holds the rest until tomorrow": Plan(
        [{"max_per_hour": 100, "max_per_day": 150, "used": [(20, 100)]}], [{"queued": 100}], [M + minutes(1421)]
    ),
    "the next server takes over, the first comes back": Plan(
        [{"max_per_hour": 10, "used": [(20, 10)]}, {"max_per_hour": 20, "used": [(5, 5)]}],
        [{"queued": 30, "servers": [0, 1]}],
        [M + minutes(56)],
    ),
    "mailings take room oldest first": Plan(
        [{"max_per_hour": 10}],
        [{"queued": 15, "started_at": NOW - minutes(60)}, {"queued": 8, "started_at": NOW - minutes(30)}],
        [M + minutes(61), M + minutes(122)],
    ),
    "a failing server cannot finish it": Plan(
        [{"max_per_hour": 10, "health": Health.FAILING}], [{"queued": 5}], [None]
    ),
    "a limit of 0 cannot finish it": Plan(
        [{"max_per_day": 0}], [{"queued": 5}], [None]
    ),
    "a resting server starts when its rest ends": Plan(
        [{"backoff_until": M + minutes(30)}], [{"queued": 5}], [M + minutes(30)]
    ),
    # The day window is read by quarters: the letters of 11:30 leave with
    # the quarter's last minute, 11:44 + 1441 min (14 min later than exact).
    "a platform quota frees a day later": Plan(
        [{"platform": True, "tenant_daily_quota": 20, "used": [(180, 20)]}], [{"queued": 5}], [M + minutes(1275)]
    ),
    # 26 grants of 100 within the replayed 26 hours, then 100 per 61 min.
    "past the replayed day, the steady pace": Plan(
        [{"max_per_hour": 100}], [{"queued": 10_000}], [NOW + timedelta(hours=26) + minutes(7400 * 61 / 100)]
    ),
    "a sending mailing goes no faster than it did lately": Plan(
        [{}], [{"queued": 600, "sent_at": [NOW - minutes(5)] * 60, "started_at": NOW - minutes(60)}],
        [NOW + minutes(10 * 600 / 60)],
    ),
    "letters being sent hold their room already": Plan(
        [{"max_per_hour": 1, "used": [(1, 1)]}], [{"sending": 3}], [NOW]
    ),
    "a waiting mailing finishes when the window frees": Plan(
        [{"max_per_hour": 5, "used": [(30, 5)]}],
        [{"queued": 3, "status": Mailing.Status.WAITING, "resume_at": M + minutes(31)}],
        [M + minutes(31)],
    ),
}  # fmt: skip


@pytest.mark.parametrize("plan", FINISH_CASES.values(), ids=FINISH_CASES.keys())
def test_the_finish_estimate_replays_the_windows(tenant_a, settings, plan):
    settings.DEPLOYMENT_MODE = "saas"
    servers = [_server(tenant_a, i, dict(fields)) for i, fields in enumerate(plan.servers)]
    for i, spec in enumerate(plan.mailings):
        spec = dict(spec)
        chosen = [servers[n] for n in spec.pop("servers", [0])]
        spec.setdefault("started_at", NOW - minutes(60 - i))
        running_mailing(tenant_a, chosen, name=f"m{i}", **spec)
    board = dashboard.dashboard(tenant_a, NOW)
    assert [row.finish_at for row in board.mailings] == plan.expected


def test_only_running_mailings_are_shown_oldest_first(tenant_a):
    server = make_server(tenant_a)
    for name, status, started in [("new", "active", 5), ("old", "waiting", 50), ("paused", "paused", 90)]:
        running_mailing(tenant_a, [server], queued=1, name=name, status=status, started_at=NOW - minutes(started))
    running_mailing(tenant_a, [server], queued=1, name="done", status="completed")
    assert [row.mailing.name for row in dashboard.dashboard(tenant_a, NOW).mailings] == ["old", "new"]


def test_the_rate_counts_the_mailings_letters_of_the_last_ten_minutes(tenant_a):
    server = make_server(tenant_a)
    sent = [NOW - minutes(1), NOW - minutes(9), NOW - minutes(11)]
    mailing = running_mailing(tenant_a, [server], queued=1, sent_at=sent, failed=2, bounced=1)
    row = dashboard.dashboard(tenant_a, NOW).mailings[0]
    assert row.mailing == mailing and row.recent == 2
    assert (row.progress.count("sent"), row.progress.count("failed"), row.progress.waiting) == (3, 2, 1)


def only_own(board: dashboard.Dashboard) -> dashboard.ServerRow:
    (row,) = [row for row in board.servers if not row.server.is_platform]
    return row


def _server(tenant_a, index: int, fields: dict):
    used = fields.pop("used", [])
    owner = None if fields.pop("platform", False) else tenant_a
    server = make_server(owner, name=f"S{index}", priority=index, **fields)
    for ago, count in used:
        bucket(server, tenant_a, M - minutes(ago), count)
    return server
