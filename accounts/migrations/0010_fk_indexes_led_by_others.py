"""Foreign keys of this app whose column leads another index of their
table lose their own index (config.migration_operations.drop_foreign_key_indexes)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from config.migration_operations import drop_foreign_key_indexes


# (table, column, the name Django gave its index: for the way back)
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
        drop_foreign_key_indexes(
            [
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
            INDEXES,
        ),
    ]
