"""Foreign keys of this app whose column leads another index of their
table lose their own index (config.migration_operations.drop_foreign_key_indexes)."""

import django.db.models.deletion
from django.db import migrations, models

from config.migration_operations import drop_foreign_key_indexes


# (table, column, the name Django gave its index: for the way back)
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
        drop_foreign_key_indexes(
            [
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
            INDEXES,
        ),
    ]
