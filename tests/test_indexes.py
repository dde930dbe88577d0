"""No foreign key keeps an index of its own when its column leads another
index of its table (a unique constraint or a composite index): every
look-up by that column reads the other one, and every write to the table
would update one index more for nothing (on the letters, 17% of the
PostgreSQL CPU of the UPDATE that records a letter sent)."""

import pytest
from django.apps import apps
from django.db import connection, models

from config.migration_operations import column_indexes

OURS = ("accounts", "servers", "mailing")


def _our_models() -> list[type[models.Model]]:
    return [m for m in apps.get_models() if m._meta.app_label in OURS and not m._meta.auto_created]


def _leading_fields(model: type[models.Model]) -> dict[str, str]:
    """The first field of each index and unique constraint that covers the
    whole table (a partial one does not serve every look-up), by name."""
    meta = model._meta
    leading: dict[str, str] = {}
    for index in meta.indexes:
        if index.condition is None and index.fields:
            leading.setdefault(index.fields[0].lstrip("-"), index.name)
    for constraint in meta.constraints:
        if isinstance(constraint, models.UniqueConstraint) and constraint.condition is None and constraint.fields:
            leading.setdefault(constraint.fields[0], constraint.name)
    for fields in meta.unique_together:
        leading.setdefault(fields[0], "unique_together")
    return leading


def _redundant(model: type[models.Model]) -> list[str]:
    leading = _leading_fields(model)
    return [
        f"{model._meta.label}.{field.name} (led by {leading[field.name]})"
        for field in model._meta.local_fields
        if field.is_relation and field.db_index and not field.unique and field.name in leading
    ]


def test_no_foreign_key_has_an_index_another_index_leads_with() -> None:
    assert [entry for model in _our_models() for entry in _redundant(model)] == []


def test_the_rule_sees_a_foreign_key_whose_column_leads_a_composite_index() -> None:
    from mailing.models import Letter

    mailing = Letter._meta.get_field("mailing")
    mailing.db_index = True
    try:
        assert _redundant(Letter) == ["mailing.Letter.mailing (led by letter_mailing_status_idx)"]
    finally:
        mailing.db_index = False


@pytest.mark.django_db
def test_the_database_has_no_such_index_left() -> None:
    """The migrations dropped what the models no longer declare: no index
    of the foreign key's column alone, on PostgreSQL or SQLite."""
    with connection.cursor() as cursor:
        left = [
            name
            for model in _our_models()
            for f in model._meta.local_fields
            if f.is_relation and not f.db_index and not f.unique
            for name in column_indexes(connection, cursor, model._meta.db_table, f.column)
        ]
    assert left == []
