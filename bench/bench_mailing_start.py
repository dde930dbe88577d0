"""Starting a mailing to 100,000 recipients on PostgreSQL.

Ours: one INSERT ... SELECT (mailing.mailings.mailing_start).
Baseline, same run, same data: the straightforward way, reading the
recipients into Python and bulk_create-ing the letters in batches of 2,000.
Prints seconds, Python's peak memory, and the ratio."""

import os
import sys

from common import measured, setup_django

N = int(os.environ.get("BENCH_RECIPIENTS", "100000"))


def seed():
    from django.db import connection

    from accounts.models import Tenant
    from mailing.models import Contact, ContactList, MailTemplate, Suppression
    from servers.models import SmtpServer

    Tenant.objects.filter(slug="bench-start").delete()
    tenant = Tenant.objects.create(name="Bench start", slug="bench-start")
    contact_list = ContactList.objects.create(tenant=tenant, name="Everyone")
    batch = 10_000
    for start in range(0, N, batch):
        Contact.objects.bulk_create(
            Contact(tenant=tenant, email=f"user{i}@example.com", first_name=f"U{i}", fields={"city": "Moscow"})
            for i in range(start, min(N, start + batch))
        )
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO mailing_contact_lists (contact_id, contactlist_id) "
            "SELECT id, %s FROM mailing_contact WHERE tenant_id = %s",
            [contact_list.pk, tenant.pk],
        )
    Suppression.objects.bulk_create(
        Suppression(tenant=tenant, email=f"user{i}@example.com", reason="manual") for i in range(0, N, 100)
    )
    server = SmtpServer.objects.create(tenant=tenant, name="s", sender_email="s@example.com", host="8.8.8.8", port=465)
    template = MailTemplate.objects.create(tenant=tenant, name="t", subject="Hi {{ first_name }}", text_body="x")
    with connection.cursor() as cursor:
        # Fresh tables have no statistics until autovacuum comes by: without
        # them the baseline's cursor may get a plan hundreds of times slower.
        cursor.execute("ANALYZE")
    return tenant, contact_list, server, template


def new_mailing(tenant, contact_list, server, template):
    from mailing import mailings
    from mailing.models import Mailing

    mailing = Mailing(tenant=tenant, name="bench", template=template)
    mailings.mailing_save(mailing=mailing, lists=[contact_list], servers=[server])
    return mailing


def baseline(mailing) -> int:
    from mailing.mailings import _create_letters_batched

    return _create_letters_batched(mailing)


def main() -> None:
    setup_django()
    from django.db import transaction

    from mailing import mailings

    print(f"seeding {N:,} contacts (1% suppressed)...", flush=True)
    data = seed()
    # Ours first: the memory figure is the growth of the process's peak.
    with transaction.atomic():
        mailing = new_mailing(*data)
        with measured() as ours:
            count = mailings.mailing_start(mailing=mailing)
        transaction.set_rollback(True)
    with transaction.atomic():
        with measured() as base:
            expected = baseline(new_mailing(*data))
        transaction.set_rollback(True)
    data[0].delete()
    assert count == expected, (count, expected)
    print(f"letters created:             {count:,}")
    print(f"mailing_start (INSERT ... SELECT): {ours.seconds:7.2f} s, peak memory grew {ours.peak_mb:6.1f} MB")
    print(f"baseline (rows through Python):    {base.seconds:7.2f} s, peak memory grew {base.peak_mb:6.1f} MB")
    print(f"ratio ours/baseline: {ours.seconds / base.seconds:.3f} (time)")


if __name__ == "__main__":
    sys.exit(main())
