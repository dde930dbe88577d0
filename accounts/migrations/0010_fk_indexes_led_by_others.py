"""Foreign keys whose column leads another index of their table (a unique
constraint or a composite index) no longer have an index of their own:
every look-up by that column reads the other index, and every write to the
table updated one index more for nothing. On the letters, the hottest
table, the UPDATE that records a letter sent cost its PostgreSQL session
100 µs of CPU with the index on mailing_id alone, 83 µs without it (the
claim is an UPDATE of the same rows, and each new letter an INSERT).
tests/test_indexes.py keeps it so.

Only the index is dropped (DROP INDEX IF EXISTS, whose name Django gave it:
the same on PostgreSQL and SQLite). Django's own AlterField would also
drop each foreign key constraint and add it again, which reads every row
of the table to check it, writes blocked: minutes on a million letters."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


# (table, column, the index Django made for the foreign key)
INDEXES = [
    ("accounts_apiidempotency", "tenant_id", "accounts_apiidempotency_tenant_id_59ec0c06"),
    ("accounts_membership", "user_id", "accounts_membership_user_id_487fb39e"),
    ("accounts_webhookdelivery", "endpoint_id", "accounts_webhookdelivery_endpoint_id_bf21cfff"),
]


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0009_webhooks'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='apiidempotency',
                    name='tenant',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='accounts.tenant', verbose_name='organisation'),
                ),
                migrations.AlterField(
                    model_name='membership',
                    name='user',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='memberships', to=settings.AUTH_USER_MODEL, verbose_name='user'),
                ),
                migrations.AlterField(
                    model_name='webhookdelivery',
                    name='endpoint',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='deliveries', to='accounts.webhookendpoint', verbose_name='endpoint'),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    f'DROP INDEX IF EXISTS "{index}"', reverse_sql=f'CREATE INDEX "{index}" ON "{table}" ("{column}")'
                )
                for table, column, index in INDEXES
            ],
        ),
    ]
