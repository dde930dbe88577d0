"""Bulk upsert of 100,000 contacts through the API against the CSV import
of the same rows, in the same run, on PostgreSQL.

API: POST /api/v1/contacts/bulk/ in requests of 10,000 rows, with a real
key, through Django's whole request stack (middleware, authentication,
rate limit, JSON parsing, the import's row checks and batched upserts);
the client's json.dumps of each body is inside the time.
CSV: the real import of the same rows as a file (upload checks, streaming
parse, the same checks and upserts), run as the Celery task would run it.
Each runs in a child process of its own, into an organisation of its own,
so each one's peak memory is its own. Prints seconds, rows per second,
peak memory growth, and the ratio."""

import json
import os
import sys
import tempfile
from pathlib import Path

from bench_import import write_csv
from common import measured, setup_django

N = int(os.environ.get("BENCH_ROWS", "100000"))
PER_REQUEST = 10_000


def rows_of(path: Path) -> list[dict]:
    import csv

    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter=";")
        next(reader)
        return [{"email": e, "first_name": f_, "last_name": l_, "fields": {"city": c}} for e, f_, l_, c in reader]


def through_api(rows: list[dict]) -> dict:
    from django.test import Client

    from accounts import api_keys
    from mailing.models import ContactList

    tenant = fresh_tenant("bench-api")
    contact_list = ContactList.objects.create(tenant=tenant, name="Bench")
    _, secret = api_keys.api_key_create(tenant=tenant, by=None, name="Bench", scopes=["contacts"])
    client = Client(HTTP_HOST="localhost", HTTP_AUTHORIZATION=f"Bearer {secret}")
    totals = {"created": 0, "updated": 0, "rejected": 0}
    with measured() as run:
        for start in range(0, len(rows), PER_REQUEST):
            body = json.dumps({"list": str(contact_list.public_id), "contacts": rows[start : start + PER_REQUEST]})
            response = client.post("/api/v1/contacts/bulk/", body, content_type="application/json")
            assert response.status_code == 200, response.content[:500]
            for name in totals:
                totals[name] += response.json()[name]
    return {"seconds": run.seconds, "peak_mb": run.peak_mb, **totals}


def through_csv(path: Path) -> dict:
    from bench_import import ours

    tenant = fresh_tenant("bench-csv")
    with measured() as run:
        imp = ours(path, tenant)
    assert imp.status == "done", imp.error
    return {"seconds": run.seconds, "peak_mb": run.peak_mb, "created": imp.created, "updated": imp.updated,
            "rejected": imp.rejected}  # fmt: skip


def fresh_tenant(slug: str):
    from accounts.models import Tenant

    Tenant.objects.filter(slug=slug).delete()
    return Tenant.objects.create(name=slug, slug=slug)


def in_child(fn, *args) -> dict:
    """Run fn in a forked child (its own peak memory, its own database
    connection) and return what it returned."""
    from django.db import connections

    connections.close_all()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            result = json.dumps(fn(*args)).encode()
        except BaseException as exc:  # reported by the parent
            result = json.dumps({"error": repr(exc)}).encode()
        with os.fdopen(write, "wb") as out:
            out.write(result)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as inp:
        data = json.loads(inp.read() or b'{"error": "the child died"}')
    os.waitpid(pid, 0)
    if "error" in data:
        raise RuntimeError(data["error"])
    return data


def main() -> None:
    os.environ["CELERY_TASK_ALWAYS_EAGER"] = "1"  # the CSV import's task runs here, as a worker would run it
    setup_django()
    from django.conf import settings

    settings.API_RATE_LIMIT = 1_000_000  # the benchmark measures the work, not the limit
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "contacts.csv"
        os.environ["BENCH_ROWS"] = str(N)
        write_csv(path)
        rows = rows_of(path)
        csv_run = in_child(through_csv, path)
        api_run = in_child(through_api, rows)
    print(f"rows: {N:,} (Cyrillic names, a custom field, ~1% bad addresses, ~1% duplicates)")
    for name, run in (("CSV import (one file)", csv_run), (f"API bulk upsert ({PER_REQUEST:,}/request)", api_run)):
        print(
            f"{name:<36} {run['seconds']:6.2f} s  {N / run['seconds']:9,.0f} rows/s, "
            f"peak memory grew {run['peak_mb']:6.1f} MB  "
            f"({run['created']:,} created, {run['updated']:,} merged, {run['rejected']:,} rejected)"
        )
    print(f"ratio API/CSV: {api_run['seconds'] / csv_run['seconds']:.2f} (time)")
    assert (api_run["created"], api_run["rejected"]) == (csv_run["created"], csv_run["rejected"]), "not the same rows"


if __name__ == "__main__":
    sys.exit(main())
