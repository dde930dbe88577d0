"""Importing a 100,000-row CSV on PostgreSQL.

Ours: the real import (upload checks, streaming parse, validation with
email-validator, duplicate merging, batched upserts, progress updates),
run as the Celery task would run it.
Baseline, same run, same file: only reading the file with csv.reader and
validating each address, the work no importer can skip.
Prints seconds, rows per second, peak memory growth, and the ratio."""

import csv
import os
import random
import sys
import tempfile
from pathlib import Path

from common import measured, setup_django

N = int(os.environ.get("BENCH_ROWS", "100000"))


def write_csv(path: Path) -> None:
    rng = random.Random(7)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter=";")
        writer.writerow(["E-mail", "Имя", "Фамилия", "City"])
        for i in range(N):
            email = f"user{i}@example.com" if rng.random() > 0.01 else f"broken{i}@@example"
            if rng.random() < 0.01:
                email = "user1@example.com"  # a duplicate
            writer.writerow([email, f"Иван{i}", f"Петров{i}", rng.choice(["Moscow", "Kazan", "Tver"])])


def baseline(path: Path) -> int:
    from email_validator import EmailNotValidError, validate_email

    valid = 0
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter=";")
        next(reader)
        for row in reader:
            try:
                validate_email(row[0], check_deliverability=False)
                valid += 1
            except EmailNotValidError:
                pass
    return valid


def ours(path: Path, tenant) -> "object":
    from django.core.files.uploadedfile import SimpleUploadedFile

    from mailing.imports import services

    upload = SimpleUploadedFile("bench.csv", path.read_bytes(), content_type="text/csv")
    imp = services.import_upload(tenant=tenant, by=None, upload=upload)
    del upload
    columns = {0: "email", 1: "first_name", 2: "last_name", 3: "new"}
    services.import_start(contact_import=imp, columns=columns, contact_list=None, new_list_name="Bench")
    imp.refresh_from_db()
    return imp


def main() -> None:
    os.environ["CELERY_TASK_ALWAYS_EAGER"] = "1"  # the task runs here, as a worker would run it
    setup_django()
    from accounts.models import Tenant

    Tenant.objects.filter(slug="bench-import").delete()
    tenant = Tenant.objects.create(name="Bench import", slug="bench-import")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "contacts.csv"
        write_csv(path)
        size_mb = path.stat().st_size / 2**20
        with measured() as base:
            valid = baseline(path)
        with measured() as run:
            imp = ours(path, tenant)
    print(f"file: {N:,} rows, {size_mb:.1f} MB (UTF-8, semicolons, Cyrillic names, ~1% bad, ~1% duplicates)")
    print(f"import: status {imp.status}, {imp.created:,} created, {imp.updated:,} merged, {imp.rejected:,} rejected")
    print(f"baseline (csv.reader + email-validator): {base.seconds:6.2f} s  {valid / base.seconds:9,.0f} rows/s")
    print(f"ours (full import into PostgreSQL):      {run.seconds:6.2f} s  {N / run.seconds:9,.0f} rows/s, "
          f"peak memory grew {run.peak_mb:.1f} MB")  # fmt: skip
    print(f"ratio ours/baseline: {run.seconds / base.seconds:.2f} (time)")
    tenant.delete()


if __name__ == "__main__":
    sys.exit(main())
