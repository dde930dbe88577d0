"""The live dashboard's JSON on PostgreSQL, at the size of a busy platform.

Seeds 20 tenants with 200 servers between them (one tenant has 50, another
1), a platform server they all use, 1,000,000 letters, and the usage buckets
of a day and more of sending, rolled up as beat leaves them. Every tenant
has the same letters: a finished mailing, a sending one and one waiting for
limits, so the two tenants measured differ only in their number of servers.

Prints, through the Django test client with a signed-in, OTP-verified user,
for the tenant with 50 servers and the tenant with 1 server (same run,
requests alternated):

- a changed poll: between two polls a letter's room is reserved for the
  tenant on the platform server (what the dispatcher writes first), so the version
  stamp moves and the poll builds the JSON: median and p95 against the
  bound, p95 <= 50 ms for the 50-server tenant;
- a poll when nothing changed: If-None-Match with the current stamp, 304:
  median and p95 against the bound, <= 5 ms;
- polls per second per web core for each: by wall time (the web process
  waits for PostgreSQL on the same machine) and by the web process's own
  CPU time;
- the queries per request of each kind (the same for both tenants)."""

import os
import statistics
import sys
import time
from dataclasses import dataclass, field

from common import median, percentile, setup_django

TENANTS = 20
SERVERS = 200
BIG = 50  # servers of the tenant measured against the one with 1
LETTERS = int(os.environ.get("BENCH_LETTERS", "1000000"))
REQUESTS = int(os.environ.get("BENCH_REQUESTS", "100"))
HISTORY_HOURS = 30  # buckets a little older than the day window, as between purges


def seed() -> list:
    """The tenants, biggest first; returns them."""
    from accounts.models import Tenant

    tenants = [Tenant.objects.create(name=f"Tenant {i}", slug=f"bench-{i}") for i in range(TENANTS)]
    # 50 + 1 + 149 spread over the other 18: 200 servers.
    counts = [BIG, 1] + [len(range(i, SERVERS - BIG - 1, TENANTS - 2)) for i in range(TENANTS - 2)]
    assert sum(counts) == SERVERS, counts
    platform = _platform_server()
    for tenant, count in zip(tenants, counts, strict=True):
        servers = _servers(tenant, count)
        _mailings(tenant, [*servers, platform], LETTERS // TENANTS)
    return tenants


def _platform_server():
    from servers.models import SmtpServer

    return SmtpServer.objects.create(
        tenant=None, name="Platform", sender_email="p@example.com", host="8.8.8.8", port=465,
        max_per_hour=20_000, tenant_daily_quota=5_000,
    )  # fmt: skip


def _servers(tenant, count: int) -> list:
    """Mailboxes with hourly and daily limits; one in ten without limits
    (a company relay)."""
    from servers.models import SmtpServer

    servers = []
    for i in range(count):
        hourly = None if i % 10 == 9 else (50, 100, 200, 500)[i % 4]
        servers.append(
            SmtpServer(
                tenant=tenant, name=f"{tenant.slug}-s{i}", sender_email=f"s{i}@example.com", host="8.8.8.8",
                port=465, priority=i, max_per_hour=hourly, max_per_day=hourly and hourly * 24,
            )
        )  # fmt: skip
    return SmtpServer.objects.bulk_create(servers)


def _mailings(tenant, servers: list, letters: int) -> None:
    """A finished mailing (60%), a sending one (30%: a third sent) and a
    waiting one (10%: half sent)."""
    from datetime import timedelta

    from django.utils import timezone

    from mailing.models import Mailing, MailingServer, MailTemplate

    template = MailTemplate.objects.create(tenant=tenant, name="t", subject="Hi", text_body="x")
    now = timezone.now()
    plan = [
        ("finished", Mailing.Status.COMPLETED, 0.6, 1.0),
        ("sending", Mailing.Status.ACTIVE, 0.3, 1 / 3),
        ("waiting", Mailing.Status.WAITING, 0.1, 0.5),
    ]
    for name, status, share, sent_share in plan:
        mailing = Mailing.objects.create(
            tenant=tenant, name=name, template=template, status=status, started_at=now,
            resume_at=now + timedelta(minutes=40) if status == Mailing.Status.WAITING else None,
        )  # fmt: skip
        MailingServer.objects.bulk_create(
            MailingServer(mailing=mailing, server=server, position=i) for i, server in enumerate(servers)
        )
        count = int(letters * share)
        _letters(tenant.pk, mailing.pk, count, int(count * sent_share))


# The sent letters spread over the last day, the newest just now; among
# them one in 50 failed and one in 37 bounced.
_LETTERS_SQL = """
INSERT INTO mailing_letter
    (public_id, tenant_id, mailing_id, email, context, status, attempts, last_reply, created_at, sent_at)
SELECT gen_random_uuid(), %(tenant)s, %(mailing)s, 'r' || g || '@example.com', '{}'::jsonb,
       CASE WHEN g > %(sent)s THEN 'queued' WHEN g %% 50 = 0 THEN 'failed' WHEN g %% 37 = 0 THEN 'bounced'
            ELSE 'sent' END,
       CASE WHEN g > %(sent)s THEN 0 ELSE 1 END, '', now() - interval '1 day',
       CASE WHEN g > %(sent)s OR g %% 50 = 0 THEN NULL
            ELSE now() - (%(sent)s - g) * (interval '1 day' / GREATEST(%(sent)s, 1)) END
FROM generate_series(1, %(count)s) AS g
"""


def _letters(tenant_id: int, mailing_id: int, count: int, sent: int) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(_LETTERS_SQL, {"tenant": tenant_id, "mailing": mailing_id, "count": count, "sent": sent})


# Buckets as the dispatcher leaves them: a limited server takes its hourly
# limit in a burst of three minutes each hour (the last one 5 minutes ago,
# so it is spent now, and its day too: the dashboard's most work); a server
# without limits sends every minute; every tenant sends a little through
# the platform server every 10 minutes.
_BUCKETS_SQL = """
INSERT INTO mailing_usagebucket (server_id, tenant_id, minute, count)
SELECT s.id, s.tenant_id, date_trunc('minute', now()) - (h * 60 + 5 + m) * interval '1 minute',
       CASE m WHEN 0 THEN s.max_per_hour - 2 * (s.max_per_hour / 3) ELSE s.max_per_hour / 3 END
FROM servers_smtpserver s, generate_series(0, %(hours)s - 1) h, generate_series(0, 2) m
WHERE s.tenant_id IS NOT NULL AND s.max_per_hour IS NOT NULL;

INSERT INTO mailing_usagebucket (server_id, tenant_id, minute, count)
SELECT s.id, s.tenant_id, date_trunc('minute', now()) - g * interval '1 minute', 5 + g %% 7
FROM servers_smtpserver s, generate_series(0, %(hours)s * 60) g
WHERE s.tenant_id IS NOT NULL AND s.max_per_hour IS NULL;

INSERT INTO mailing_usagebucket (server_id, tenant_id, minute, count)
SELECT p.id, t.id, date_trunc('minute', now()) - g * 10 * interval '1 minute', 3
FROM servers_smtpserver p, accounts_tenant t, generate_series(0, %(hours)s * 6) g
WHERE p.tenant_id IS NULL AND t.slug LIKE 'bench-%%';
"""


def seed_buckets() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(_BUCKETS_SQL, {"hours": HISTORY_HOURS})
        cursor.execute("SELECT count(*) FROM mailing_usagebucket")
        return cursor.fetchone()[0]


def settle() -> int:
    """What beat and autovacuum do on a live database: the buckets past the
    hour window rolled up into quarters (mailing.limits.roll_up, every 15
    minutes: as of 15 minutes ago, the most minute rows a poll meets), then
    statistics and the visibility map (for index-only counts). Returns how
    many buckets are left."""
    from datetime import timedelta

    from django.db import connection
    from django.utils import timezone

    from mailing import limits

    limits.purge_expired()
    limits.roll_up(now=timezone.now() - timedelta(minutes=15))
    with connection.cursor() as cursor:
        for table in ("mailing_letter", "mailing_usagebucket", "mailing_mailing", "mailing_mailingserver"):
            cursor.execute(f"VACUUM ANALYZE {table}")  # our own table names
        cursor.execute("SELECT count(*) FROM mailing_usagebucket")
        return cursor.fetchone()[0]


def signed_in_client(tenant):
    """A member's browser: logged in, past the second factor (as
    tests/conftest.py make_person does)."""
    from django.test import Client
    from django.utils import timezone
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from accounts.models import Membership, Role, User

    user = User.objects.create_user(f"owner@{tenant.slug}.test", "bench-password", email_verified_at=timezone.now())
    device = TOTPDevice.objects.create(user=user, name="phone", confirmed=True)
    Membership.objects.create(user=user, tenant=tenant, role=Role.OWNER)
    client = Client(SERVER_NAME="localhost")
    client.force_login(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return client


@dataclass
class Samples:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)


def _timed(samples: Samples, client, url: str, etag: str):
    started, cpu = time.perf_counter(), time.process_time()
    response = client.get(url, HTTP_IF_NONE_MATCH=etag)
    samples.wall.append(time.perf_counter() - started)
    samples.cpu.append(time.process_time() - cpu)
    return response


def measure(tenants: dict) -> dict[str, dict[str, Samples]]:
    """Alternate the tenants and the kinds of poll, so that any drift of
    the machine hits all of them."""
    from django.urls import reverse

    url = reverse("dashboard:data")
    samples = {name: {"changed": Samples(), "unchanged": Samples()} for name in tenants}
    for round_ in range(REQUESTS + 5):
        for name, (client, tenant, server) in tenants.items():
            etag = client.get(url)["ETag"]
            _send_one(tenant, server)  # not timed: the dispatcher's write
            changed = Samples() if round_ < 5 else samples[name]["changed"]
            response = _timed(changed, client, url, etag)
            assert response.status_code == 200, response.status_code
            etag = response["ETag"]
            unchanged = Samples() if round_ < 5 else samples[name]["unchanged"]
            response = _timed(unchanged, client, url, etag)
            # A minute boundary between the two polls gives a new stamp: that
            # sample is the changed kind, not a 304.
            if response.status_code == 200 and unchanged.wall:
                unchanged.wall.pop(), unchanged.cpu.pop()
            elif response.status_code != 200:
                assert response.status_code == 304, response.status_code
    return samples


def _send_one(tenant, server) -> None:
    from mailing import limits

    limits.reserve(server=server, tenant=tenant, wanted=1)


def queries_per_request(client, etag: str | None = None) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    headers = {"HTTP_IF_NONE_MATCH": etag} if etag else {}
    with CaptureQueriesContext(connection) as queries:
        client.get(reverse("dashboard:data"), **headers)
    return len(queries)


def shown(client) -> str:
    from django.urls import reverse

    data = client.get(reverse("dashboard:data")).json()
    spent = sum(s["state"] == "limit" for s in data["servers"])
    return f"{len(data['servers'])} servers ({spent} at a limit), {len(data['mailings'])} mailings"


def report(name: str, kind: str, samples: Samples, bound_ms: float | None, queries: int) -> None:
    wall, cpu = samples.wall, samples.cpu
    p95 = percentile(wall, 95) * 1000
    verdict = "" if bound_ms is None else f" (bound p95 <= {bound_ms:g} ms: {'met' if p95 <= bound_ms else 'MISSED'})"
    print(
        f"{name:>10}, {kind:>9}: median {median(wall) * 1000:6.1f} ms, p95 {p95:6.1f} ms{verdict}; "
        f"{1 / statistics.mean(wall):6.0f} polls/s per web core by wall time, "
        f"{1 / statistics.mean(cpu):6.0f} by the web process's CPU; {queries} queries ({len(wall)} polls)"
    )


def main() -> None:
    setup_django()
    from django.conf import settings

    settings.DEBUG = False  # as in production: no query log kept per request

    started = time.perf_counter()
    print(f"seeding {TENANTS} tenants, {SERVERS} servers + 1 platform server, {LETTERS:,} letters...", flush=True)
    tenants = seed()
    buckets = seed_buckets()
    rolled = settle()
    print(
        f"  {buckets:,} usage buckets, {rolled:,} once purged and rolled up; "
        f"seeded in {time.perf_counter() - started:.0f} s",
        flush=True,
    )

    from django.urls import reverse

    from servers.models import SmtpServer

    print(f"  {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} (the machine is shared)", flush=True)
    chosen = {"50 servers": tenants[0], "1 server": tenants[1]}
    # The platform server has room all along: the reservation the benchmark
    # makes between two polls is always granted, and written.
    platform = SmtpServer.objects.get(tenant=None)
    clients = {name: (signed_in_client(tenant), tenant, platform) for name, tenant in chosen.items()}
    samples = measure(clients)
    bounds = {("50 servers", "changed"): 50, ("50 servers", "unchanged"): 5, ("1 server", "unchanged"): 5}
    for name, (client, _, _) in clients.items():
        etag = client.get(reverse("dashboard:data"))["ETag"]
        queries = {"changed": queries_per_request(client), "unchanged": queries_per_request(client, etag)}
        print(f"{name}: {shown(client)}")
        for kind in ("changed", "unchanged"):
            report(name, kind, samples[name][kind], bounds.get((name, kind)), queries[kind])


if __name__ == "__main__":
    sys.exit(main())
