"""The CSV downloads opened in a spreadsheet run no formula, whatever
separator the spreadsheet splits them at.

Excel opens a .csv with the list separator of the system: a comma in
English, a semicolon in Russian and Vietnamese (where the comma is the
decimal one). Our files are written with commas, so a Russian Excel cuts a
cell such as "bad;=HYPERLINK(...)" at its semicolon, and the second half is
a cell of its own that begins with "=". The rows come from hostile places:
an uploaded file's rejected lines, a note, a bounce's Diagnostic-Code."""

import csv
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from mailing import contacts
from mailing.models import ContactImport, Suppression

pytestmark = pytest.mark.django_db

# What a spreadsheet may split a line at; a line break ends a row.
SEPARATORS = [",", ";", "\t"]
FORMULA_START = ("=", "+", "-", "@")

HOSTILE_NOTES = [
    "=1+1",
    " =1+1",
    "ok;=1+1",
    "ok; -1+1",
    'ok;"=1+1"',
    "ok;@SUM(A1)",
    "ok,+1",
    "ok\t=1+1",
    "ok;\"\"=cmd|' /C calc'!A0",
]


def cells(text: str, separator: str) -> list[str]:
    """Every cell a spreadsheet splitting at `separator` would show."""
    rows = csv.reader(io.StringIO(text.removeprefix("\ufeff")), delimiter=separator)
    return [cell for row in rows for cell in row]


def formulas(text: str) -> dict[str, list[str]]:
    found = {}
    for separator in SEPARATORS:
        runs = [cell for cell in cells(text, separator) if cell.lstrip(' "')[:1] in FORMULA_START]
        if runs:
            found[separator] = runs
    return found


def download(person, url: str) -> str:
    response = person.client.get(url)
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    return b"".join(response.streaming_content).decode()


def test_the_suppression_export_holds_no_formula_for_any_separator(alice, tenant_a):
    for number, note in enumerate(HOSTILE_NOTES):
        contacts.suppression_add(tenant=tenant_a, email=f"s{number}@example.com", reason=Suppression.Reason.MANUAL,
                                 note=note)  # fmt: skip
    text = download(alice, reverse("contacts:suppression_export"))
    assert formulas(text) == {}
    # Read with the separator it is written with, each note is still there.
    notes = [row[2] for row in csv.reader(io.StringIO(text.removeprefix("\ufeff")))][1:]
    assert [n.replace("'", "") for n in notes] == [n.replace("'", "") for n in HOSTILE_NOTES]


def test_the_rejected_rows_of_an_import_hold_no_formula_for_any_separator(
    alice, settings, tmp_path, django_capture_on_commit_callbacks
):
    settings.IMPORTS_DIR = tmp_path / "imports"
    lines = ["email;name;company", "ann@example.com;Ann;Acme"]
    lines += [f"broken{n};{note.replace(';', ' ')};=1+1" for n, note in enumerate(HOSTILE_NOTES)]
    lines += ["broken;Bob;-2+3", "broken;@SUM(A1);x", "broken;Bob;+1"]
    upload = SimpleUploadedFile("customers.csv", ("\n".join(lines) + "\n").encode(), "text/csv")
    alice.client.post(reverse("contacts:import_upload"), {"file": upload})
    imp = ContactImport.objects.get()
    url = reverse("contacts:import_mapping", args=[imp.public_id])
    form = alice.client.get(url).context["form"]
    with django_capture_on_commit_callbacks(execute=True):
        alice.client.post(url, {name: form[name].value() or "" for name in form.fields})
    imp.refresh_from_db()
    assert imp.status == ContactImport.Status.DONE and imp.rejected == len(lines) - 2
    text = download(alice, reverse("contacts:import_rejections", args=[imp.public_id]))
    assert formulas(text) == {}
