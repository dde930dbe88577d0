"""Migrations run while the previous release still serves (the release step
migrates before the web and the workers restart, and workers on other hosts
restart later): a column added NOT NULL must keep a default in PostgreSQL,
or every INSERT of the previous release's code fails until it restarts (a
bounce report not recorded, a mailing not created). Adding a column with a
constant default is also instant on PostgreSQL 11+ (no table rewrite)."""

import pytest
from django.apps import apps
from django.db import connection
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.operations import AddField

pytestmark = pytest.mark.django_db

# Columns added before this rule, by releases whose code is long gone.
SHIPPED_BEFORE_THE_RULE = {
    ("accounts", "0002_sec_abuse_organisations"),
    ("accounts", "0005_tenant_time_zone"),
    ("accounts", "0005_user_language_tenant_default_language"),
    ("accounts", "0009_webhooks"),
    ("mailing", "0007_sec_abuse_start_in_a_task"),
    ("servers", "0002_smtpserver_backoff_until_and_more"),
    ("servers", "0003_bouncemailbox_delete_after_processing_and_more"),
    ("servers", "0005_bouncemailbox_backoff"),
    ("servers", "0006_rests_and_minute_limit"),
    ("servers", "0007_bounces_server_mailbox"),
    ("servers", "0007_sec_abuse_connection_tests_per_user"),
}


def added_columns():
    loader = MigrationLoader(connection, ignore_no_migrations=True)
    for (app_label, name), migration in loader.disk_migrations.items():
        if app_label not in ("accounts", "servers", "mailing") or (app_label, name) in SHIPPED_BEFORE_THE_RULE:
            continue
        if getattr(migration, "initial", False):
            continue
        for operation in migration.operations:
            if isinstance(operation, AddField):
                model = apps.get_model(app_label, operation.model_name)
                yield f"{app_label}.{name}", model._meta.db_table, model._meta.get_field(operation.name).column


def test_a_column_added_not_null_keeps_a_default_in_the_database():
    columns = list(added_columns())
    assert ("mailing.0015_bounce_report_returned", "mailing_bouncereport", "returned") in columns
    missing = []
    with connection.cursor() as cursor:
        for migration, table, column in columns:
            cursor.execute(
                "SELECT is_nullable, column_default FROM information_schema.columns "
                "WHERE table_name = %s AND column_name = %s",
                [table, column],
            )
            nullable, default = cursor.fetchone()
            if nullable == "NO" and default is None:
                missing.append(f"{migration}: {table}.{column}")
    assert missing == []
