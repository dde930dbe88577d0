"""A list's name is unique in its organisation in any case ("Clients" and
"clients" are one name), by a constraint on (tenant, lower(name)) in place
of the one on (tenant, name). Names that racing requests stored in two
cases first take a number: the earliest list keeps its name, the later
ones become "clients (2)", "CLIENTS (3)"..., cut to fit the field. Nothing
to undo on the way back: the numbered names are valid names."""

from collections.abc import Callable

from django.db import migrations, models
from django.db.models import F
from django.db.models.functions import Lower

MAX_LENGTH = 120


def renamed(names: list[str], max_length: int, lower: Callable[[str], str] = str.lower) -> dict[int, str]:
    """New names, by position, for the later of `names` (one organisation's,
    oldest first) that differ from an earlier one only in case; a new name
    takes no name of the organisation's in any case. `lower` is the
    constraint's: the database's, which is not Python's ("İ" is "i" to
    PostgreSQL and two characters to Python; SQLite's lowers ASCII only)."""
    keys = [lower(name) for name in names]
    taken = set(keys)
    seen: set[str] = set()
    new: dict[int, str] = {}
    for position, (name, key) in enumerate(zip(names, keys, strict=True)):
        if key not in seen:
            seen.add(key)
            continue
        number = 2
        while True:
            suffix = f" ({number})"
            candidate = name[: max_length - len(suffix)].rstrip() + suffix
            if lower(candidate) not in taken:
                break
            number += 1
        taken.add(lower(candidate))
        new[position] = candidate
    return new


def rename_case_duplicates(apps, schema_editor) -> None:
    ContactList = apps.get_model("mailing", "ContactList")
    twice = (
        ContactList.objects.annotate(key=Lower("name"))
        .values("tenant_id", "key")
        .annotate(count=models.Count("pk"))
        .filter(count__gt=1)
        .order_by()  # not by name: it would join the grouping
        .values_list("tenant_id", flat=True)
        .distinct()
    )
    def lower(name: str) -> str:
        with schema_editor.connection.cursor() as cursor:
            cursor.execute("SELECT LOWER(%s)", [name])
            return cursor.fetchone()[0]

    for tenant_id in set(twice):
        lists = list(
            ContactList.objects.filter(tenant_id=tenant_id).order_by("created_at", "pk").values_list("pk", "name")
        )
        for position, name in renamed([name for _pk, name in lists], MAX_LENGTH, lower).items():
            ContactList.objects.filter(pk=lists[position][0]).update(name=name)


class Migration(migrations.Migration):
    dependencies = [("mailing", "0021_note_words")]

    operations = [
        migrations.RunPython(rename_case_duplicates, migrations.RunPython.noop),
        migrations.RemoveConstraint(model_name="contactlist", name="contact_list_name_unique"),
        migrations.AddConstraint(
            model_name="contactlist",
            constraint=models.UniqueConstraint(F("tenant"), Lower("name"), name="contact_list_name_any_case_unique"),
        ),
    ]
