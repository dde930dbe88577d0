"""The cost of limit accounting on PostgreSQL (mailing.limits.reserve).

1. One process: reservations per second and latency (median, p99).
2. 4 processes racing on one server with an hourly limit: reservations per
   second, letters granted (must equal the limit) and overshoot (must be 0).
3. 4 processes on 4 servers: the row lock is per server, so they should not
   wait on each other.

The sender reserves a chunk of letters per call, so letters per second can be
many times these figures."""

import multiprocessing
import os
import random
import time

from common import median, percentile, setup_django

SINGLE = int(os.environ.get("BENCH_RESERVATIONS", "2000"))
RACE_LIMIT = int(os.environ.get("BENCH_RACE_LIMIT", "5000"))
WORKERS = 4
SECONDS = float(os.environ.get("BENCH_SECONDS", "3"))


def ensure_table() -> bool:
    """The bucket table, made here until the mailing app's migration that
    holds it exists; True when this run made it (and drops it at the end)."""
    from django.db import connection

    from mailing.models import UsageBucket

    if UsageBucket._meta.db_table in connection.introspection.table_names():
        return False
    with connection.schema_editor() as editor:
        editor.create_model(UsageBucket)
    return True


def drop_table() -> None:
    from django.db import connection

    from mailing.models import UsageBucket

    with connection.schema_editor() as editor:
        editor.delete_model(UsageBucket)


def seed(servers: int, **limits: int | None):
    from accounts.models import Tenant
    from servers.models import SmtpServer

    Tenant.objects.filter(slug="bench-limits").delete()
    tenant = Tenant.objects.create(name="Bench limits", slug="bench-limits")
    made = [
        SmtpServer.objects.create(tenant=tenant, name=f"s{i}", sender_email="s@example.com", **limits)
        for i in range(servers)
    ]
    return tenant, made


def single() -> None:
    from mailing import limits

    tenant, (server,) = seed(1, max_per_hour=10**9, max_per_day=10**9)
    samples = []
    for _ in range(SINGLE):
        started = time.perf_counter()
        limits.reserve(server=server, tenant=tenant, wanted=1)
        samples.append(time.perf_counter() - started)
    print(f"1 process:    {len(samples) / sum(samples):8.0f} reservations/s", end="  ")
    print(f"median {median(samples) * 1000:.2f} ms, p99 {percentile(samples, 99) * 1000:.2f} ms")


def _race_worker(server_id: int, tenant_id: int, until_spent: bool, out) -> None:
    from django.db import connection

    from accounts.models import Tenant
    from mailing import limits
    from servers.models import SmtpServer

    server, tenant = SmtpServer.objects.get(pk=server_id), Tenant.objects.get(pk=tenant_id)
    calls = granted = 0
    deadline = time.monotonic() + SECONDS
    while time.monotonic() < deadline:
        got = limits.reserve(server=server, tenant=tenant, wanted=random.randint(1, 10)).granted
        calls, granted = calls + 1, granted + got
        if until_spent and not got:
            break
    connection.close()
    out.put((calls, granted))


def run_workers(targets: list[tuple[int, int]], until_spent: bool) -> tuple[int, int, float]:
    from django.db import connection

    connection.close()  # the children must not share the parent's socket
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    processes = [context.Process(target=_race_worker, args=(*target, until_spent, out)) for target in targets]
    started = time.perf_counter()
    for process in processes:
        process.start()
    results = [out.get() for _ in processes]
    for process in processes:
        process.join()
    elapsed = time.perf_counter() - started
    return sum(c for c, _ in results), sum(g for _, g in results), elapsed


def race_one_server() -> None:
    from mailing.models import UsageBucket

    tenant, (server,) = seed(1, max_per_hour=RACE_LIMIT)
    calls, granted, elapsed = run_workers([(server.pk, tenant.pk)] * WORKERS, until_spent=True)
    counted = sum(UsageBucket.objects.filter(server=server).values_list("count", flat=True))
    print(f"{WORKERS} processes, 1 server:  {calls / elapsed:8.0f} reservations/s", end="  ")
    print(f"granted {granted} of limit {RACE_LIMIT}, counted {counted}, overshoot {max(0, granted - RACE_LIMIT)}")


def spread_servers() -> None:
    tenant, servers = seed(WORKERS, max_per_hour=10**9)
    calls, _, elapsed = run_workers([(s.pk, tenant.pk) for s in servers], until_spent=False)
    print(f"{WORKERS} processes, {WORKERS} servers: {calls / elapsed:8.0f} reservations/s")


def main() -> None:
    setup_django()
    created = ensure_table()
    try:
        single()
        race_one_server()
        spread_servers()
    finally:
        from accounts.models import Tenant

        Tenant.objects.filter(slug="bench-limits").delete()
        if created:
            drop_table()


if __name__ == "__main__":
    main()
