"""Migration operations of our own."""

from functools import partial

from django.db import migrations
from django.db.migrations.operations.base import Operation

# What a field may change inside NamesOnly: nothing the database sees.
NAMES = {"verbose_name", "help_text"}


class NamesOnly(Operation):
    """Field and model names (verbose_name) that change nothing in the
    database, applied to the migration state in one step.

    Each AlterField re-renders its model and every model related to it: the
    ~250 of the verbose-name migrations took 10 s of every `migrate` (a new
    test database, every production install) to change no SQL. The wrapped
    operations are Django's own, as makemigrations wrote them; only their
    state is applied, with the models rendered once at the end."""

    reduces_to_sql = False
    reversible = True

    def __init__(self, operations: list[Operation]) -> None:
        self.operations = operations

    def deconstruct(self) -> tuple[str, list, dict]:
        return self.__class__.__qualname__, [], {"operations": self.operations}

    def state_forwards(self, app_label: str, state) -> None:
        # Without rendered apps, each operation only edits the model states.
        apps = state.__dict__.pop("apps", None)
        try:
            for operation in self.operations:
                _names_only(operation, app_label, state)
        finally:
            if apps is not None:
                state.__dict__["apps"] = apps
        touched = {(app_label, _model(operation)) for operation in self.operations}
        state.reload_models(sorted(touched), delay=True)

    def database_forwards(self, app_label, schema_editor, from_state, to_state) -> None:
        pass  # names only: no SQL

    def database_backwards(self, app_label, schema_editor, from_state, to_state) -> None:
        pass

    def describe(self) -> str:
        return f"Names of {len(self.operations)} fields and models (no SQL)"


def _model(operation: Operation) -> str:
    """The model an AlterField or an AlterModelOptions is about."""
    return getattr(operation, "model_name_lower", None) or operation.name_lower


def _names_only(operation: Operation, app_label: str, state) -> None:
    """Applies the operation, refusing one that would change more than names
    (a schema change slipped in here would never reach the database)."""
    if isinstance(operation, migrations.AlterModelOptions):
        operation.state_forwards(app_label, state)
        return
    if not isinstance(operation, migrations.AlterField):
        raise ValueError(f"NamesOnly takes AlterField and AlterModelOptions, not {operation!r}")
    model = state.models[app_label, operation.model_name_lower]
    before = _schema(model.fields[operation.name])
    operation.state_forwards(app_label, state)
    if _schema(model.fields[operation.name]) != before:
        raise ValueError(f"{operation.model_name}.{operation.name}: NamesOnly changes names only")


def _schema(field) -> tuple:
    path, args, kwargs = field.deconstruct()[1:]
    return path, args, {key: value for key, value in kwargs.items() if key not in NAMES}


# A DROP INDEX waits for every transaction using the table, and every query
# after it waits for the DROP: on PostgreSQL it gives up after this long
# (the migration fails and may be run again) rather than stop the sending.
DROP_LOCK_TIMEOUT = "5s"


def drop_foreign_key_indexes(
    fields: list[migrations.AlterField], indexes: list[tuple[str, str, str]]
) -> migrations.SeparateDatabaseAndState:
    """Foreign keys that lose the index Django made for them (db_index=False:
    their column leads another index of the table, which serves every
    look-up by it; tests/test_indexes.py): `fields` are their AlterFields,
    applied to the state only; `indexes` are (table, column, index name).
    In the database, every index of the column alone (looked up in the
    catalogue, whatever its name) is dropped; backwards, the index is made
    again under Django's name. Django's own AlterField would also drop each
    foreign key constraint and add it again, which reads every row of the
    table to check it, writes blocked: minutes on a million letters."""
    return migrations.SeparateDatabaseAndState(
        state_operations=fields,
        database_operations=[
            migrations.RunPython(partial(_drop_indexes, indexes), partial(_make_indexes, indexes), elidable=False)
        ],
    )


def _drop_indexes(indexes: list[tuple[str, str, str]], apps, schema_editor) -> None:
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"SET LOCAL lock_timeout = '{DROP_LOCK_TIMEOUT}'")
        for table, column, _ in indexes:
            for name in column_indexes(connection, cursor, table, column):
                schema_editor.execute(f"DROP INDEX {schema_editor.quote_name(name)}")


def column_indexes(connection, cursor, table: str, column: str) -> list[str]:
    """The plain indexes of `column` alone (not unique, not a key)."""
    constraints = connection.introspection.get_constraints(cursor, table)
    return [
        name
        for name, c in constraints.items()
        if c["index"] and not c["unique"] and not c["primary_key"] and c["columns"] == [column]
    ]


def _make_indexes(indexes: list[tuple[str, str, str]], apps, schema_editor) -> None:
    quote = schema_editor.quote_name
    for table, column, index in indexes:
        schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {quote(index)} ON {quote(table)} ({quote(column)})")
