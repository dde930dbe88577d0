"""NamesOnly (config/migration_operations.py) applies names to the
migration state and refuses anything the database would have to see."""

import pytest
from django.db import migrations, models
from django.db.migrations.state import ModelState, ProjectState

from config.migration_operations import NamesOnly


def state() -> ProjectState:
    project = ProjectState()
    fields = [("id", models.AutoField(primary_key=True)), ("name", models.CharField(max_length=20))]
    project.add_model(ModelState("shop", "item", fields))
    return project


def test_it_renames_fields_and_models_in_the_state_without_sql():
    project = state()
    project.apps  # rendered, as during migrate
    NamesOnly(
        [
            migrations.AlterField("item", "name", models.CharField(max_length=20, verbose_name="name of the item")),
            migrations.AlterModelOptions("item", {"verbose_name": "item of the shop"}),
        ]
    ).state_forwards("shop", project)
    assert project.models["shop", "item"].fields["name"].verbose_name == "name of the item"
    model = project.apps.get_model("shop", "item")
    assert model._meta.get_field("name").verbose_name == "name of the item"
    assert model._meta.verbose_name == "item of the shop"


@pytest.mark.parametrize(
    "operation",
    [
        migrations.AlterField("item", "name", models.CharField(max_length=40, verbose_name="name")),
        migrations.AlterField("item", "name", models.CharField(max_length=20, null=True)),
        migrations.AddField("item", "price", models.IntegerField(default=0)),
    ],
    ids=["a longer column", "a null column", "a new column"],
)
def test_it_refuses_what_the_database_would_have_to_see(operation):
    with pytest.raises(ValueError, match="NamesOnly"):
        NamesOnly([operation]).state_forwards("shop", state())


@pytest.mark.django_db(transaction=True)  # a schema editor of its own (SQLite's refuses inside a transaction)
def test_drop_foreign_key_indexes_drops_the_columns_index_whatever_its_name_and_makes_it_again_backwards():
    from django.db import connection

    from config.migration_operations import column_indexes, drop_foreign_key_indexes

    field = migrations.AlterField("item", "owner", models.ForeignKey("shop.owner", models.CASCADE, db_index=False))
    operation = drop_foreign_key_indexes([field], [("scratch_item", "owner_id", "scratch_item_owner_id_1a2b3c4d")])
    assert operation.state_operations == [field]
    (run,) = operation.database_operations
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE scratch_item (id integer PRIMARY KEY, owner_id integer, n integer)")
        # Not the name the migration knows; and indexes it must leave alone.
        cursor.execute("CREATE INDEX scratch_other_name ON scratch_item (owner_id)")
        cursor.execute("CREATE INDEX scratch_pair ON scratch_item (owner_id, n)")
        cursor.execute("CREATE UNIQUE INDEX scratch_unique ON scratch_item (n)")
    try:

        def indexes() -> set[str]:
            with connection.cursor() as cursor:
                return set(connection.introspection.get_constraints(cursor, "scratch_item"))

        before = indexes()
        for _ in range(2):  # again: nothing left to drop
            with connection.schema_editor() as editor:
                run.database_forwards("shop", editor, ProjectState(), ProjectState())
            assert indexes() == before - {"scratch_other_name"}
        with connection.schema_editor() as editor:
            run.database_backwards("shop", editor, ProjectState(), ProjectState())
        assert indexes() == before - {"scratch_other_name"} | {"scratch_item_owner_id_1a2b3c4d"}
        with connection.cursor() as cursor:
            assert column_indexes(connection, cursor, "scratch_item", "owner_id") == ["scratch_item_owner_id_1a2b3c4d"]
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE scratch_item")
