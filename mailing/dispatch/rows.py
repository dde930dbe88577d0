"""The dispatcher's hottest queries as plain SQL, their rows loaded into
model instances exactly as the ORM loads them (the backend's and the
fields' converters, then Model.from_db).

Why: before every batch the dispatcher reads the mailing with its tenant
and the mailing's servers; with hundreds of small mailings a batch is ten
letters, and compiling those two ORM queries cost more CPU than sending
the letters (py-spy on the 200-tenant benchmark). The SQL here is built
once per process from the models' own table and column names."""

from functools import cached_property

from django.db import connection
from django.db.models import Model


class Rows:
    """One model's columns in a query, and its instances from a row: all
    its columns, or the primary key and `only` these (the others deferred,
    as QuerySet.only() gives them)."""

    def __init__(self, model: type[Model], alias: str, *, only: tuple[str, ...] = ()) -> None:
        self.model, self.alias = model, alias
        self.fields = model._meta.concrete_fields
        if only:
            self.fields = [f for f in self.fields if f.primary_key or f.name in only or f.attname in only]
        self.names = [field.attname for field in self.fields]
        self.columns = ", ".join(f"{alias}.{connection.ops.quote_name(field.column)}" for field in self.fields)
        self.width = len(self.fields)

    @cached_property
    def _converters(self) -> list[tuple[int, object, list]]:
        # As the ORM's compiler does (SQLCompiler.get_converters): the
        # backend's converters for the column, then the field's own; kept
        # only for the columns that have any (a Letter has one of sixteen),
        # so a row does not walk the others.
        found = []
        for index, field in enumerate(self.fields):
            column = field.get_col(self.model._meta.db_table)
            if converters := connection.ops.get_db_converters(column) + column.get_db_converters(connection):
                found.append((index, column, converters))
        return found

    def load(self, row: tuple, start: int = 0) -> Model:
        values = list(row[start : start + self.width])
        for index, column, converters in self._converters:
            for convert in converters:
                values[index] = convert(values[index], column, connection)
        return self.model.from_db(connection.alias, self.names, values)
