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
from django.db import migrations, models


# (table, column, the index Django made for the foreign key)
INDEXES = [
    ("servers_connectiontest", "tenant_id", "servers_connectiontest_tenant_id_b2c1695e"),
    ("servers_platformquota", "server_id", "servers_platformquota_server_id_86c23bf9"),
    ("servers_smtpserver", "tenant_id", "servers_smtpserver_tenant_id_f63b4b74"),
    ("servers_tenantrest", "server_id", "servers_tenantrest_server_id_e8c2f2ed"),
]


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0010_fk_indexes_led_by_others'),
        ('servers', '0009_verbose_names'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='connectiontest',
                    name='tenant',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='connection_tests', to='accounts.tenant', verbose_name='organisation'),
                ),
                migrations.AlterField(
                    model_name='platformquota',
                    name='server',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='quotas', to='servers.smtpserver', verbose_name='sending server'),
                ),
                migrations.AlterField(
                    model_name='smtpserver',
                    name='tenant',
                    field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='smtp_servers', to='accounts.tenant', verbose_name='organisation'),
                ),
                migrations.AlterField(
                    model_name='tenantrest',
                    name='server',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='tenant_rests', to='servers.smtpserver', verbose_name='sending server'),
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
