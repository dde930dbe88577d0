"""The dashboard's poll statements as PL/pgSQL functions (mailing.dashboard.stamp
and .poll call them), each run with a generic plan that PostgreSQL makes
once a session and keeps.

As a plain statement, the stamp (with the session's row versions) was
parsed and planned at every poll: measured over the benchmark's 1,000,000
letters and 200 servers, planning took 0.96 ms and running it 0.67 ms.
Prepared, PostgreSQL kept choosing a fresh plan for each poll's values (its
estimate of the generic plan is the higher one), so preparing saved only
the parse. A function's own `SET plan_cache_mode = force_generic_plan`
holds only while it runs (restored on return or on error, so no session,
pooled or behind a pooler, keeps it), and PL/pgSQL keeps the plans of its
statements for the session: the round trip went from 1.76 ms (the function
without that setting) and 2.4-2.9 ms (the plain statement) to 0.74 ms.

A generic plan is made without the tenant's id, so the planner estimates
every `tenant_id = p_tenant` filter at the table's average rows per tenant:
for the checklist's EXISTS lookups, a few thousand contacts a tenant made
reading the table until the first match look cheaper than the index, and a
new tenant with no contacts read every tenant's contacts at every poll
(~75 ms with a million contacts; found by an outside review,
tests/mailing/test_dashboard_stamp_plans.py). Every filter here has its
index (the stamp is cheap indexed reads by design), so the functions also
run with `enable_seqscan = off`, which holds only while they run as well.

The text is the one the modules held (the named parameters are the
functions' p_* arguments), frozen here as a migration is: a change to what
the stamp or the pass reads is a new migration that replaces the function
(CREATE OR REPLACE FUNCTION with the same arguments and columns; other
columns need DROP FUNCTION first). PostgreSQL checks a PL/pgSQL body
against the tables only when it runs: a later migration that renames or
drops a column read here passes `migrate`, and the dashboard's tests (which
call both functions) are what catch it. Only on PostgreSQL: on SQLite the
dashboard has no stamp and no pass."""

from django.db import migrations

VERSIONS = """
CREATE OR REPLACE FUNCTION postroute_poll_versions(p_session varchar, p_now timestamptz)
RETURNS text LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan SET enable_seqscan = off AS $body$
BEGIN
    RETURN (
        SELECT s.xmin || '.' || s.ctid || '|' || u.id || ':' || u.xmin || '.' || u.ctid
            || '|' || coalesce((SELECT string_agg(d.id || ':' || d.xmin || '.' || d.ctid, ',' ORDER BY d.id)
                                FROM otp_totp_totpdevice d WHERE d.user_id = u.id), '')
            || '|' || coalesce((SELECT string_agg(d.id || ':' || d.xmin || '.' || d.ctid, ',' ORDER BY d.id)
                                FROM otp_static_staticdevice d WHERE d.user_id = u.id), '')
            || '|' || coalesce((SELECT string_agg(m.tenant_id || ':' || m.xmin || '.' || m.ctid
                                                  || ':' || t.xmin || '.' || t.ctid, ',' ORDER BY m.id)
                                FROM accounts_membership m JOIN accounts_tenant t ON t.id = m.tenant_id
                                WHERE m.user_id = u.id), '')
        FROM accounts_usersession s JOIN accounts_user u ON u.id = s.user_id
        WHERE s.session_key = p_session AND s.expire_date > p_now
    );
END
$body$
"""

STAMP = """
CREATE OR REPLACE FUNCTION postroute_dashboard_stamp(
    p_session varchar, p_tenant bigint, p_saas boolean, p_now timestamptz, p_recent timestamptz
)
RETURNS TABLE (
    out_versions text, out_servers text, out_rests text, out_grouped text, out_quotas text, out_mailings text,
    out_sending text, out_usage text, out_imports text, out_import_count bigint,
    out_has_template boolean, out_has_contacts boolean, out_has_started boolean
) LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan SET enable_seqscan = off AS $body$
BEGIN
    RETURN QUERY
    WITH shown AS (
        -- Two index scans, not a scan of every tenant's servers (an OR would be).
        SELECT id, xmin || '.' || ctid AS v, backoff_until FROM servers_smtpserver WHERE tenant_id = p_tenant
        UNION ALL
        SELECT id, xmin || '.' || ctid AS v, backoff_until FROM servers_smtpserver WHERE tenant_id IS NULL AND p_saas
    ), running AS (
        SELECT id, xmin || '.' || ctid AS v FROM mailing_mailing
        WHERE tenant_id = p_tenant AND status IN ('active', 'waiting', 'blocked')
    ), grouped AS (
        SELECT g.id, g.xmin || '.' || g.ctid AS v FROM accounts_tenant t
        JOIN accounts_tenant g ON g.id = t.id OR g.created_by_id = t.created_by_id
        WHERE t.id = p_tenant
    )
    SELECT postroute_poll_versions(p_session, p_now),
        (SELECT string_agg(id || ':' || v || ':' || (coalesce(backoff_until > p_now, false))::int, ',' ORDER BY id)
         FROM shown),
        (SELECT string_agg(id || ':' || xmin || '.' || ctid || ':' || (blocked OR coalesce(until > p_now, false))::int,
                           ',' ORDER BY id)
         FROM servers_tenantrest WHERE tenant_id = p_tenant),
        (SELECT string_agg(id || ':' || v, ',' ORDER BY id) FROM grouped),
        (SELECT string_agg(id || ':' || xmin || '.' || ctid, ',' ORDER BY id) FROM servers_platformquota
         WHERE tenant_id IN (SELECT id FROM grouped)),
        (SELECT string_agg(m.id || ':' || m.v
            || ':' || (SELECT count(*) FROM mailing_letter l WHERE l.mailing_id = m.id AND l.status = 'failed')
            || ':' || (SELECT count(*) FROM mailing_letter l WHERE l.mailing_id = m.id AND l.status = 'bounced')
            || ':' || coalesce((SELECT max(l.sent_at) FROM mailing_letter l
                                WHERE l.mailing_id = m.id AND l.sent_at IS NOT NULL)::text, '-'),
            ',' ORDER BY m.id)
         FROM running m),
        (SELECT string_agg(l.id || ':' || l.xmin || '.' || l.ctid, ',' ORDER BY l.id) FROM mailing_letter l
         WHERE l.tenant_id = p_tenant AND l.status = 'sending'),
        (SELECT md5(string_agg(b.id || ':' || b.count || ':' || b.xmin || '.' || b.ctid, ',' ORDER BY b.id))
         FROM mailing_usagebucket b
         WHERE b.server_id IN (SELECT id FROM shown) AND b.minute >= p_recent),
        (SELECT string_agg(id || ':' || xmin || '.' || ctid, ',' ORDER BY id) FROM mailing_contactimport
         WHERE tenant_id = p_tenant AND status IN ('uploaded', 'queued', 'running')),
        (SELECT count(*) FROM mailing_contactimport WHERE tenant_id = p_tenant),
        -- Last, in this order: the checklist's mailing steps (selectors.FirstSteps).
        EXISTS (SELECT 1 FROM mailing_mailtemplate WHERE tenant_id = p_tenant),
        EXISTS (SELECT 1 FROM mailing_contact WHERE tenant_id = p_tenant),
        EXISTS (SELECT 1 FROM mailing_mailing WHERE tenant_id = p_tenant AND started_at IS NOT NULL);
END
$body$
"""

DROP = """
DROP FUNCTION IF EXISTS postroute_dashboard_stamp(varchar, bigint, boolean, timestamptz, timestamptz);
DROP FUNCTION IF EXISTS postroute_poll_versions(varchar, timestamptz);
"""


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(VERSIONS)
        schema_editor.execute(STAMP)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0009_webhooks"),
        ("mailing", "0011_verbose_names"),
        ("servers", "0009_verbose_names"),
        ("otp_static", "0003_add_timestamps"),
        ("otp_totp", "0003_add_timestamps"),
    ]

    operations = [migrations.RunPython(create, drop, elidable=False)]
