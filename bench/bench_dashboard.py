"""The live dashboard's JSON on PostgreSQL, at the size of a busy platform.

Seeds 20 tenants with 200 servers between them (one tenant has 50, another
1), a platform server they all use, 1,000,000 letters, and the usage buckets
of a day and more of sending. Every tenant has the same letters: a finished
mailing, a sending one and one waiting for limits, so the two tenants
measured differ only in their number of servers.

Prints the endpoint's median and p95 latency, through the Django test
client with a signed-in, OTP-verified user, for the tenant with 50 servers
against the same request for the tenant with 1 server (the baseline, same
run), the ratio, and the queries per request (the same for both)."""

import os
import sys
import time

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


def settle() -> None:
    """What autovacuum does on a live database: statistics and the
    visibility map (for index-only counts)."""
    from django.db import connection

    with connection.cursor() as cursor:
        for table in ("mailing_letter", "mailing_usagebucket", "mailing_mailing", "mailing_mailingserver"):
            cursor.execute(f"VACUUM ANALYZE {table}")  # our own table names


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


def measure(clients: dict) -> dict[str, list[float]]:
    """Alternate the requests, so that any drift of the machine hits both."""
    from django.urls import reverse

    url = reverse("dashboard:data")
    samples: dict[str, list[float]] = {name: [] for name in clients}
    for round_ in range(REQUESTS + 5):
        for name, client in clients.items():
            started = time.perf_counter()
            response = client.get(url)
            elapsed = time.perf_counter() - started
            assert response.status_code == 200, response.status_code
            if round_ >= 5:  # the first few warm the caches
                samples[name].append(elapsed)
    return samples


def queries_per_request(client) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    with CaptureQueriesContext(connection) as queries:
        client.get(reverse("dashboard:data"))
    return len(queries)


def shown(client) -> str:
    from django.urls import reverse

    data = client.get(reverse("dashboard:data")).json()
    spent = sum(s["state"] == "limit" for s in data["servers"])
    return f"{len(data['servers'])} servers ({spent} at a limit), {len(data['mailings'])} mailings"


def main() -> None:
    setup_django()
    from django.conf import settings

    settings.DEBUG = False  # as in production: no query log kept per request

    started = time.perf_counter()
    print(f"seeding {TENANTS} tenants, {SERVERS} servers + 1 platform server, {LETTERS:,} letters...", flush=True)
    tenants = seed()
    buckets = seed_buckets()
    settle()
    print(f"  {buckets:,} usage buckets; seeded in {time.perf_counter() - started:.0f} s", flush=True)

    big, small = tenants[0], tenants[1]
    clients = {"50 servers": signed_in_client(big), "1 server": signed_in_client(small)}
    samples = measure(clients)
    for name, client in clients.items():
        figures = samples[name]
        print(
            f"{name:>10}: median {median(figures) * 1000:6.1f} ms, p95 {percentile(figures, 95) * 1000:6.1f} ms, "
            f"{queries_per_request(client)} queries, {shown(client)} ({len(figures)} requests)"
        )
    ratio = median(samples["50 servers"]) / median(samples["1 server"])
    p95_ratio = percentile(samples["50 servers"], 95) / percentile(samples["1 server"], 95)
    print(f"ratio 50 servers / 1 server: {ratio:.2f} (median), {p95_ratio:.2f} (p95)")


if __name__ == "__main__":
    sys.exit(main())
