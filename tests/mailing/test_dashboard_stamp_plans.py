"""The poll's statements run with a generic plan (migration mailing/0012),
made without the tenant's id: the planner estimates every `tenant_id =
p_tenant` filter at the table's average rows per tenant. For the
checklist's EXISTS lookups (a template, a contact, a started mailing) an
average of a few thousand rows per tenant made "read the table until the
first row matches" the cheaper plan, so a tenant that has none (a new
organisation on its getting-started dashboard, the very case the checklist
is for) read every tenant's contacts at every poll: measured with
1,000,000 contacts of one tenant, the stamp of a tenant without contacts
took ~75 ms against 2.5 ms as a plain statement. Found by an outside
review; the functions now also run with `enable_seqscan = off` (every
filter in them has its index)."""

import pytest
from django.db import connection
from django.utils import timezone

from mailing.dashboard.stamp import STAMP_SQL
from tests.mailing.poll_fixtures import _postgresql  # noqa: F401 (a fixture that applies itself)


def _scans() -> dict[str, int]:
    """Sequential scans of each table in this transaction (its own
    counters: no wait for the statistics collector)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT relname, coalesce(seq_scan, 0) FROM pg_stat_xact_user_tables")
        return dict(cursor.fetchall())


@pytest.mark.django_db
def test_a_tenant_without_contacts_does_not_scan_every_tenants_contacts(tenant_a, tenant_b):
    """tenant_a has 20,000 contacts, tenant_b (new) none. The stamp of
    tenant_b must answer "no contacts" from the tenant index, not by reading
    all of tenant_a's contacts (what the generic plan does: it fails here)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """INSERT INTO mailing_contact (public_id, email, first_name, last_name, fields, created_at, updated_at,
                                            tenant_id)
               SELECT gen_random_uuid(), 'c' || g || '@acme.test', '', '', '{}', now(), now(), %s
               FROM generate_series(1, 20000) g""",
            [tenant_a.pk],
        )
        cursor.execute("ANALYZE mailing_contact")  # what autovacuum does on a live database
        before = _scans().get("mailing_contact", 0)
        now = timezone.now()
        cursor.execute(STAMP_SQL, [None, tenant_b.pk, False, now, now])
        has_contacts = cursor.fetchone()[-2]  # the checklist: template, contacts, started
    assert has_contacts is False
    assert _scans().get("mailing_contact", 0) == before, (
        "the stamp's generic plan read the whole mailing_contact table for a tenant with no contacts"
    )


@pytest.mark.django_db
@pytest.mark.parametrize("saas", [True, False])
def test_the_stamp_and_the_pass_read_no_table_whole(alice, tenant_a, saas):
    """Whatever the tenant, the session and the mode: index reads only."""
    session_key = alice.client.session.session_key
    before = _scans()
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(STAMP_SQL, [session_key, tenant_a.pk, saas, now, now])
        assert cursor.fetchone()[0]  # the session's versions were read too
    after = _scans()
    assert {table: n - before.get(table, 0) for table, n in after.items() if n != before.get(table, 0)} == {}
