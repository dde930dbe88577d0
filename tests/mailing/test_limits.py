"""Limit accounting (mailing.limits): rolling hourly and daily windows over
per-minute buckets, exact resume times, releases, platform servers with a
per-tenant quota, and reservations racing on PostgreSQL. The clock is passed
in: nothing sleeps."""

import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.db import connection

from mailing import limits
from mailing.models import UsageBucket
from servers.models import PlatformQuota, SmtpServer
from tests.servers.factories import make_server
from tests.services import require_postgresql

pytestmark = pytest.mark.django_db

NOW = datetime(2025, 3, 10, 12, 30, 15, tzinfo=UTC)
T = datetime(2025, 3, 10, 12, 30, tzinfo=UTC)  # NOW's minute


def minutes(n: int) -> timedelta:
    return timedelta(minutes=n)


def fill(server, tenant, history: dict[int, int]) -> None:
    """Buckets at T + offset minutes, as earlier reservations left them."""
    for offset, count in history.items():
        UsageBucket.objects.create(server=server, tenant=tenant, minute=T + minutes(offset), count=count)


def bucket_total(server) -> int:
    return sum(UsageBucket.objects.filter(server=server).values_list("count", flat=True))


@dataclass
class Case:
    id: str
    hour: int | None
    day: int | None
    history: dict[int, int]  # minute offset from T -> letters
    wanted: int
    granted: int
    resume: timedelta | None  # from T, after the reservation; None: room left


CASES = [
    Case("room under the hourly limit", 10, None, {-5: 3}, 5, 5, None),
    Case("the hourly limit caps the grant", 10, None, {-5: 7}, 5, 3, minutes(-5 + 61)),
    Case("a bucket 60 minutes old still counts", 10, None, {-60: 10}, 5, 0, minutes(1)),
    Case("a bucket 61 minutes old has left the hour", 10, None, {-61: 10}, 5, 5, None),
    Case("daily limit stricter than hourly", 100, 20, {-120: 15}, 10, 5, minutes(-120 + 1441)),
    Case("hourly limit stricter than daily", 5, 1000, {-30: 3}, 10, 2, minutes(-30 + 61)),
    Case("both spent: the later window decides", 10, 10, {-10: 10}, 1, 0, minutes(-10 + 1441)),
    Case("a bucket 1440 minutes old still counts", None, 10, {-1440: 10}, 1, 0, minutes(1)),
    Case("a bucket 1441 minutes old has left the day", None, 10, {-1441: 10}, 4, 4, None),
    # The limit was lowered below what was sent: 10 - 6 + 1 = 5 letters
    # must leave, and the first two buckets hold them.
    Case("walks the oldest buckets until enough leave", 6, None, {-50: 2, -40: 3, -30: 5}, 1, 0, minutes(-40 + 61)),
    Case("no limits", None, None, {-1: 1_000_000}, 500, 500, None),
    Case("a zero limit never comes back", 0, None, {}, 3, 0, "never"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_reserve_grants_what_the_windows_allow(case, tenant_a):
    server = make_server(tenant_a, max_per_hour=case.hour, max_per_day=case.day)
    fill(server, tenant_a, case.history)

    reservation = limits.reserve(server=server, tenant=tenant_a, wanted=case.wanted, now=NOW)

    assert reservation.granted == case.granted
    assert bucket_total(server) == sum(case.history.values()) + case.granted
    expected = limits.NEVER if case.resume == "never" else case.resume and T + case.resume
    assert limits.next_room_at(server, tenant_a, now=NOW) == expected


def test_it_resumes_at_the_exact_instant(tenant_a):
    server = make_server(tenant_a, max_per_hour=3)
    first = limits.reserve(server=server, tenant=tenant_a, wanted=2, now=NOW)
    limits.reserve(server=server, tenant=tenant_a, wanted=1, now=NOW + minutes(20))
    resume = limits.next_room_at(server, tenant_a, now=NOW + minutes(30))
    assert resume == first.minute + minutes(61)

    just_before = limits.reserve(server=server, tenant=tenant_a, wanted=5, now=resume - timedelta(microseconds=1))
    at_resume = limits.reserve(server=server, tenant=tenant_a, wanted=5, now=resume)

    assert (just_before.granted, at_resume.granted) == (0, 2)


def test_the_reservation_lands_in_the_utc_minute_whatever_the_zone(tenant_a):
    server = make_server(tenant_a)
    nepal = timezone(timedelta(hours=5, minutes=45))
    limits.reserve(server=server, tenant=tenant_a, wanted=2, now=NOW.astimezone(nepal))
    limits.reserve(server=server, tenant=tenant_a, wanted=3, now=NOW)
    bucket = UsageBucket.objects.get(server=server)
    assert (bucket.minute, bucket.count) == (T, 5)


def test_naive_datetimes_are_refused(tenant_a):
    server = make_server(tenant_a)
    with pytest.raises(ValueError):
        limits.reserve(server=server, tenant=tenant_a, wanted=1, now=NOW.replace(tzinfo=None))


def test_a_tenants_own_server_counts_only_its_owner(tenant_a, tenant_b):
    server = make_server(tenant_a, max_per_hour=10)
    with pytest.raises(ValueError):
        limits.reserve(server=server, tenant=tenant_b, wanted=1, now=NOW)
    assert not UsageBucket.objects.exists()


def test_the_limits_are_read_from_the_database_not_the_callers_copy(tenant_a):
    stale = make_server(tenant_a, max_per_hour=10)
    SmtpServer.objects.filter(pk=stale.pk).update(max_per_hour=2)  # edited while a worker held its copy
    assert limits.reserve(server=stale, tenant=tenant_a, wanted=5, now=NOW).granted == 2


# Releasing


def test_release_gives_back_unused_letters(tenant_a):
    server = make_server(tenant_a, max_per_hour=10)
    reservation = limits.reserve(server=server, tenant=tenant_a, wanted=10, now=NOW)
    limits.release(reservation=reservation, unused=4)

    assert bucket_total(server) == 6
    assert limits.reserve(server=server, tenant=tenant_a, wanted=10, now=NOW).granted == 4


def test_release_never_goes_below_zero(tenant_a):
    server = make_server(tenant_a)
    reservation = limits.reserve(server=server, tenant=tenant_a, wanted=5, now=NOW)
    limits.release(reservation=reservation, unused=5)
    limits.release(reservation=reservation, unused=5)  # a caller's mistake must not break the counts
    assert bucket_total(server) == 0


@pytest.mark.parametrize("unused", [-1, 6])
def test_release_refuses_what_was_not_granted(tenant_a, unused):
    server = make_server(tenant_a)
    reservation = limits.reserve(server=server, tenant=tenant_a, wanted=5, now=NOW)
    with pytest.raises(ValueError):
        limits.release(reservation=reservation, unused=unused)
    assert bucket_total(server) == 5


def test_a_spent_server_grants_nothing_and_counts_nothing(tenant_a):
    server = make_server(tenant_a, max_per_day=3)
    fill(server, tenant_a, {-100: 3})
    reservation = limits.reserve(server=server, tenant=tenant_a, wanted=2, now=NOW)
    limits.release(reservation=reservation, unused=0)
    assert reservation.granted == 0
    assert UsageBucket.objects.count() == 1


# Platform servers


@pytest.fixture
def platform():
    return make_server(None, name="Platform", tenant_daily_quota=50, max_per_hour=12)


def test_a_platform_quota_row_limits_that_tenant(platform, tenant_a, tenant_b):
    PlatformQuota.objects.create(server=platform, tenant=tenant_a, daily_quota=5)
    assert limits.reserve(server=platform, tenant=tenant_a, wanted=10, now=NOW).granted == 5
    assert limits.reserve(server=platform, tenant=tenant_b, wanted=6, now=NOW).granted == 6


def test_the_servers_default_quota_applies_without_a_row(platform, tenant_a):
    platform.max_per_hour = None
    platform.save(update_fields=["max_per_hour"])
    fill(platform, tenant_a, {-1000: 45})
    assert limits.reserve(server=platform, tenant=tenant_a, wanted=10, now=NOW).granted == 5


def test_the_platform_servers_own_limits_count_all_tenants(platform, tenant_a, tenant_b):
    PlatformQuota.objects.create(server=platform, tenant=tenant_a, daily_quota=5)
    limits.reserve(server=platform, tenant=tenant_a, wanted=5, now=NOW)
    assert limits.reserve(server=platform, tenant=tenant_b, wanted=10, now=NOW).granted == 7

    usage = limits.window_usage([platform], tenant_b, now=NOW)[platform.pk]
    assert (usage.hour_used, usage.hour_left, usage.tenant_day_used, usage.tenant_quota) == (12, 0, 7, 50)
    assert usage.resume_at == T + minutes(61)


def test_a_spent_quota_tells_when_the_tenant_may_send_again(platform, tenant_a, tenant_b):
    PlatformQuota.objects.create(server=platform, tenant=tenant_a, daily_quota=4)
    fill(platform, tenant_a, {-200: 1, -100: 3})
    fill(platform, tenant_b, {-300: 5})

    usage = limits.window_usage([platform], tenant_a, now=NOW)[platform.pk]

    assert (usage.day_used, usage.tenant_day_used, usage.tenant_day_left, usage.hour_left) == (9, 4, 0, 12)
    assert usage.resume_at == T + minutes(-200 + 1441)  # the other tenant's older letters do not matter
    assert limits.next_room_at(platform, tenant_b, now=NOW) is None


def test_no_quota_at_all_leaves_only_the_servers_limits(platform, tenant_a):
    platform.tenant_daily_quota = None
    platform.save(update_fields=["tenant_daily_quota"])
    assert limits.reserve(server=platform, tenant=tenant_a, wanted=20, now=NOW).granted == 12
    usage = limits.window_usage([platform], tenant_a, now=NOW)[platform.pk]
    assert (usage.tenant_quota, usage.tenant_day_left, usage.tenant_day_used) == (None, None, 12)


# The dashboard's view


def test_window_usage_reports_what_is_left(tenant_a):
    hourly = make_server(tenant_a, name="Hourly", max_per_hour=10, max_per_day=100)
    unlimited = make_server(tenant_a, name="Unlimited")
    fill(hourly, tenant_a, {-90: 20, -10: 4})
    fill(unlimited, tenant_a, {-10: 7})

    usage = limits.window_usage([hourly, unlimited], tenant_a, now=NOW)

    assert usage[hourly.pk] == limits.Usage(
        hour_used=4, day_used=24, hour_limit=10, day_limit=100, hour_left=6, day_left=76
    )
    assert usage[unlimited.pk].left is None
    assert (usage[unlimited.pk].hour_used, usage[unlimited.pk].is_spent) == (7, False)


@pytest.mark.parametrize("count", [1, 20])
def test_window_usage_takes_three_queries_whatever_the_number_of_servers(
    count, tenant_a, platform, django_assert_num_queries
):
    servers = [make_server(tenant_a, name=f"S{i}", max_per_hour=2) for i in range(count)]
    for i, server in enumerate(servers):
        fill(server, tenant_a, {-i: 2})
    PlatformQuota.objects.create(server=platform, tenant=tenant_a, daily_quota=1)
    fill(platform, tenant_a, {-3: 1})

    with django_assert_num_queries(3):  # sums, quotas, minutes of the spent servers
        usage = limits.window_usage([*servers, platform], tenant_a, now=NOW)

    assert [usage[s.pk].resume_at for s in servers] == [T + minutes(61 - i) for i in range(count)]
    assert usage[platform.pk].resume_at == T + minutes(-3 + 1441)


def test_purge_deletes_only_buckets_out_of_every_window(tenant_a):
    server = make_server(tenant_a)
    fill(server, tenant_a, {-1441: 1, -1440: 2, 0: 3})
    assert limits.purge_expired(now=NOW) == 1
    assert bucket_total(server) == 5


def rows(server) -> list[tuple[int, int, int]]:
    """(tenant, minute offset from T, count), by tenant and minute."""
    buckets = UsageBucket.objects.filter(server=server).order_by("tenant_id", "minute")
    return [(b.tenant_id, (b.minute - T) // minutes(1), b.count) for b in buckets]


def test_roll_up_sums_each_quarter_before_the_hour_window_at_its_last_minute(platform, tenant_a, tenant_b):
    require_postgresql()
    # T is 12:30, so the hour window starts at 11:30: the quarters up to
    # 11:15-11:29 are rolled up, each tenant's apart.
    fill(platform, tenant_a, {-120: 1, -118: 2, -106: 4, -105: 8, -62: 16, -61: 32, -60: 64, -5: 128})
    fill(platform, tenant_b, {-119: 3})

    assert limits.roll_up(now=NOW) == 4  # the sums written (11:29's went to its own bucket)

    a, b = tenant_a.pk, tenant_b.pk
    assert rows(platform) == sorted([(a, -106, 7), (a, -91, 8), (a, -61, 48), (a, -60, 64), (a, -5, 128), (b, -106, 3)])
    assert limits.roll_up(now=NOW) == 0  # a second run finds nothing more to do
    assert bucket_total(platform) == 255 + 3


def test_rolled_up_letters_never_leave_a_window_earlier(tenant_a):
    require_postgresql()
    server = make_server(tenant_a, max_per_hour=1000, max_per_day=100)
    fill(server, tenant_a, {-1439: 10, -1400: 10, -1391: 10, -200: 10, -76: 10, -75: 10, -61: 10, -59: 10})
    moments = [NOW + minutes(n) for n in range(0, 120)]

    before = [limits.window_usage([server], tenant_a, now=t)[server.pk] for t in moments]
    limits.roll_up(now=NOW)
    after = [limits.window_usage([server], tenant_a, now=t)[server.pk] for t in moments]

    # The hour window is untouched; the day window holds each letter as
    # long as before, or up to 14 minutes longer, never shorter.
    assert [u.hour_used for u in after] == [u.hour_used for u in before]
    assert all(a.day_used >= b.day_used for a, b in zip(after, before, strict=True))
    assert [u.day_used for u in after] != [u.day_used for u in before]
    assert all(after[n + 14].day_used <= before[n].day_used for n in range(len(moments) - 14))


def test_a_rolled_up_day_resumes_later_never_earlier(tenant_a):
    require_postgresql()
    server = make_server(tenant_a, max_per_day=30)
    fill(server, tenant_a, {-1400: 10, -1396: 10, -200: 10})
    exact = limits.next_room_at(server, tenant_a, now=NOW)

    limits.roll_up(now=NOW)

    assert exact == T + minutes(-1400 + 1441)
    assert limits.next_room_at(server, tenant_a, now=NOW) == T + minutes(-1396 + 1441)  # 12:14, its quarter's last
    assert limits.reserve(server=server, tenant=tenant_a, wanted=1, now=NOW).granted == 0


def test_the_upsert_targets_the_models_table():
    assert UsageBucket._meta.db_table == "mailing_usagebucket"


# Concurrency


@pytest.mark.django_db(transaction=True)
def test_racing_workers_never_exceed_the_limit(tenant_a):
    require_postgresql()
    server = make_server(tenant_a, max_per_hour=100)
    start = threading.Barrier(8)
    granted: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            start.wait()
            mine = 0
            while limits.reserve(server=server, tenant=tenant_a, wanted=1, now=NOW).granted:
                mine += 1
            granted.append(mine)
        except BaseException as error:
            errors.append(error)
        finally:
            connection.close()  # the thread's own connection

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert sum(granted) == 100
    assert bucket_total(server) == 100
