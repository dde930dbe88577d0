"""The import pages: upload, mapping, progress, result, the JSON the page
polls and the rejected rows CSV — and that nobody else can reach them."""

import csv
import io
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from mailing.models import Contact, ContactImport, ContactList

pytestmark = pytest.mark.django_db

CSV = b'email;name;company\nann@example.com;Ann;Acme\nbroken;Bob;=HYPERLINK("x")\nann@example.com;Annie;\n'


@pytest.fixture(autouse=True)
def imports_dir(settings, tmp_path) -> Path:
    settings.IMPORTS_DIR = tmp_path / "imports"
    return settings.IMPORTS_DIR


def upload(person, content: bytes = CSV, name: str = "customers.csv"):
    file = SimpleUploadedFile(name, content, "text/csv")
    return person.client.post(reverse("contacts:import_upload"), {"file": file})


def mapping_data(person, imp: ContactImport, **changes: str) -> dict:
    """What the mapping page proposes, with `changes` on top."""
    form = person.client.get(reverse("contacts:import_mapping", args=[imp.public_id])).context["form"]
    data = {name: form[name].value() or "" for name in form.fields}
    return {**data, **changes}


@pytest.fixture
def finished(alice, django_capture_on_commit_callbacks) -> ContactImport:
    upload(alice)
    imp = ContactImport.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        alice.client.post(reverse("contacts:import_mapping", args=[imp.public_id]), mapping_data(alice, imp))
    imp.refresh_from_db()
    return imp


def test_a_member_imports_a_file_through_the_pages(bob, django_capture_on_commit_callbacks):
    response = upload(bob)
    imp = ContactImport.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse(
        "contacts:import_mapping", args=[imp.public_id]
    )
    page = bob.client.get(response["Location"])
    assert page.context["delimiter"] == "Columns are separated by semicolons."
    data = mapping_data(bob, imp)
    assert (data["col_0"], data["col_1"], data["col_2"], data["new_list_name"]) == (
        "email",
        "first_name",
        "",
        "customers",
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = bob.client.post(page.request["PATH_INFO"], {**data, "col_2": "new"})
    assert response["Location"] == reverse("contacts:import", args=[imp.public_id])
    imp.refresh_from_db()
    assert imp.status == ContactImport.Status.DONE and imp.contact_list.name == "customers"
    assert Contact.objects.get().first_name == "Annie" and Contact.objects.get().fields == {"company": "Acme"}


def test_the_result_page_shows_counts_and_rejected_rows(alice, finished):
    page = alice.client.get(reverse("contacts:import", args=[finished.public_id]))
    html = page.content.decode()
    assert page.context["data"]["finished"] and page.context["data"]["percent"] == 100
    assert [r.line for r in page.context["rejections"]] == [3]
    assert "Invalid email address" in html and reverse("contacts:import_rejections", args=[finished.public_id]) in html
    assert 'data-import-json="' + reverse("contacts:import_json", args=[finished.public_id]) in html
    assert "<script>" not in html and " style=" not in html


def test_the_json_reports_progress(alice, finished):
    data = alice.client.get(reverse("contacts:import_json", args=[finished.public_id])).json()
    assert data == {
        "status": "done",
        "status_label": "Done",
        "finished": True,
        "percent": 100,
        "bytes_read": len(CSV),
        "file_size": len(CSV),
        "rows_seen": 3,
        "created": 1,
        "updated": 1,
        "rejected": 1,
        "error": "",
        "shown": {"rows_seen": "3", "created": "1", "updated": "1", "rejected": "1"},
    }


def test_the_jsons_counters_are_written_in_the_readers_language(alice, finished):
    ContactImport.objects.filter(pk=finished.pk).update(rows_seen=12345)
    alice.user.language = "ru"
    alice.user.save(update_fields=["language"])
    data = alice.client.get(reverse("contacts:import_json", args=[finished.public_id])).json()
    assert data["rows_seen"] == 12345 and data["shown"]["rows_seen"] == "12\xa0345"


def test_rejected_rows_download_as_csv_without_formulas(alice, finished):
    response = alice.client.get(reverse("contacts:import_rejections", args=[finished.public_id]))
    assert response["Content-Type"].startswith("text/csv") and "attachment" in response["Content-Disposition"]
    text = b"".join(response.streaming_content).decode()
    rows = list(csv.reader(io.StringIO(text.removeprefix("\ufeff"))))
    assert rows[0] == ["Line", "Reason", "Row"]
    assert rows[1][0] == "3" and rows[1][2] == 'broken;Bob;"\'=HYPERLINK(""x"")"'
    russian = alice.client.get(
        reverse("contacts:import_rejections", args=[finished.public_id]), HTTP_ACCEPT_LANGUAGE="ru"
    )
    text = b"".join(russian.streaming_content).decode().removeprefix("\ufeff")
    assert next(csv.reader(io.StringIO(text), delimiter=";")) == ["Строка", "Причина", "Запись"]


def test_the_mapping_needs_one_email_column_and_a_list(alice):
    upload(alice)
    imp = ContactImport.objects.get()
    url = reverse("contacts:import_mapping", args=[imp.public_id])
    response = alice.client.post(url, mapping_data(alice, imp, col_0="", new_list_name=""))
    assert response.status_code == 400
    html = response.content.decode()
    assert "Map exactly one column to “Email address”." in html and "Name the new list" in html
    response = alice.client.post(url, mapping_data(alice, imp, col_1="email"))
    assert response.status_code == 400 and "Map exactly one column" in response.content.decode()
    imp.refresh_from_db()
    assert imp.status == ContactImport.Status.UPLOADED and not ContactList.objects.exists()


def test_a_new_list_may_not_take_an_existing_name(alice, tenant_a):
    ContactList.objects.create(tenant=tenant_a, name="Customers")
    upload(alice)
    imp = ContactImport.objects.get()
    response = alice.client.post(
        reverse("contacts:import_mapping", args=[imp.public_id]), mapping_data(alice, imp, new_list_name="customers")
    )
    assert response.status_code == 400 and "There is already a list named" in response.content.decode()


def test_an_existing_list_can_be_the_target(alice, tenant_a, django_capture_on_commit_callbacks):
    target = ContactList.objects.create(tenant=tenant_a, name="Customers")
    upload(alice)
    imp = ContactImport.objects.get()
    data = mapping_data(alice, imp, contact_list=str(target.public_id))
    with django_capture_on_commit_callbacks(execute=True):
        alice.client.post(reverse("contacts:import_mapping", args=[imp.public_id]), data)
    assert list(target.contacts.values_list("email", flat=True)) == ["ann@example.com"]


def test_starting_twice_runs_the_import_once(alice, django_capture_on_commit_callbacks, finished):
    url = reverse("contacts:import_mapping", args=[finished.public_id])
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = alice.client.post(url, {"col_0": "email", "new_list_name": "Again"})
    assert response["Location"] == reverse("contacts:import", args=[finished.public_id])
    assert callbacks == [] and not ContactList.objects.filter(name="Again").exists()


def test_upload_errors_are_shown_on_the_form(alice, imports_dir):
    response = upload(alice, b"email\n\x98@example.com\n")
    assert response.status_code == 400 and "neither UTF-8 nor Windows-1251" in response.content.decode()
    response = upload(alice, b"")
    assert response.status_code == 400 and "The submitted file is empty." in response.content.decode()
    assert not ContactImport.objects.exists() and not any(imports_dir.glob("*"))


def test_a_file_over_the_limit_is_dropped_while_it_arrives(alice, settings, monkeypatch):
    settings.IMPORT_MAX_BYTES = 100

    def never(**kwargs):
        raise AssertionError("the upload handler should have skipped the file")

    monkeypatch.setattr("mailing.imports.services.import_upload", never)
    response = upload(alice, b"email\n" + b"a@example.com\n" * 20)
    assert response.status_code == 400 and "The file is larger than 100" in response.content.decode()


def test_a_file_can_be_discarded_before_it_is_imported(alice, imports_dir):
    upload(alice)
    imp = ContactImport.objects.get()
    response = alice.client.post(reverse("contacts:import_discard", args=[imp.public_id]))
    assert response.status_code == 302
    assert not ContactImport.objects.exists() and not Path(imp.file_path).exists()


def test_an_outsider_gets_404_on_every_import_url(alice, charlie, finished, imports_dir):
    upload(alice)
    waiting = ContactImport.objects.get(status=ContactImport.Status.UPLOADED)
    urls = [
        ("get", reverse("contacts:import", args=[finished.public_id])),
        ("get", reverse("contacts:import_json", args=[finished.public_id])),
        ("get", reverse("contacts:import_rejections", args=[finished.public_id])),
        ("get", reverse("contacts:import_mapping", args=[waiting.public_id])),
        ("post", reverse("contacts:import_mapping", args=[waiting.public_id])),
        ("post", reverse("contacts:import_discard", args=[waiting.public_id])),
    ]
    for method, url in urls:
        assert getattr(charlie.client, method)(url, {"col_0": "email", "new_list_name": "X"}).status_code == 404, url
    waiting.refresh_from_db()
    assert waiting.status == ContactImport.Status.UPLOADED and Path(waiting.file_path).exists()
    overview = charlie.client.get(reverse("contacts:index")).content.decode()
    assert "customers.csv" not in overview


def test_each_field_is_guessed_for_one_column_only(alice):
    upload(alice, b"Email,E-mail,Name\na@example.com,b@example.com,Ann\n")
    imp = ContactImport.objects.get()
    data = mapping_data(alice, imp)
    assert (data["col_0"], data["col_1"], data["col_2"]) == ("email", "", "first_name")


def field_error(response) -> str:
    errors = response.context["form"].errors["file"]
    assert len(errors) == 1 and 'id="id_file_error"' in response.content.decode()
    return errors[0].replace("\xa0", " ")


def test_at_most_three_uploads_wait_for_their_mapping(alice, bob, charlie, imports_dir):
    """A member could park any number of 50 MB files by never mapping them."""
    for person in (alice, bob, alice):
        assert upload(person).status_code == 302
    response = upload(bob)
    assert response.status_code == 400
    assert field_error(response).startswith("3 uploaded files are waiting for their columns to be mapped.")
    assert ContactImport.objects.count() == 3 and len(list(imports_dir.iterdir())) == 3
    assert upload(charlie).status_code == 302  # another tenant has its own places
    waiting = ContactImport.objects.filter(tenant__slug="acme").first()
    alice.client.post(reverse("contacts:import_discard", args=[waiting.public_id]))
    assert upload(bob).status_code == 302


def test_the_files_waiting_or_importing_share_a_size_limit(alice, settings, imports_dir):
    from mailing import tasks

    settings.IMPORT_MAX_PENDING_BYTES = 2 * len(CSV) + 10
    assert upload(alice).status_code == 302
    queued = ContactImport.objects.get()
    alice.client.post(reverse("contacts:import_mapping", args=[queued.public_id]), mapping_data(alice, queued))
    assert ContactImport.objects.get().status == ContactImport.Status.QUEUED  # its file is still on the disk
    assert upload(alice).status_code == 302
    response = upload(alice)
    assert response.status_code == 400
    assert field_error(response).startswith(f"Your files waiting to be imported already take {2 * len(CSV)} bytes")
    assert len(list(imports_dir.iterdir())) == 2
    tasks.run_contact_import(queued.pk)  # the worker imports it, and its file goes
    assert ContactImport.objects.get(pk=queued.pk).status == ContactImport.Status.DONE
    assert upload(alice).status_code == 302


def test_an_upload_left_unmapped_for_an_hour_is_removed_within_ten_minutes(alice, settings, imports_dir):
    from mailing import tasks

    for _ in range(2):
        upload(alice)
    old, young = ContactImport.objects.order_by("pk")
    ContactImport.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(minutes=61))
    ContactImport.objects.filter(pk=young.pk).update(created_at=timezone.now() - timedelta(minutes=59))
    tasks.discard_stale_imports()
    assert list(ContactImport.objects.all()) == [young]
    assert not Path(old.file_path).exists() and Path(young.file_path).exists()
    assert settings.CELERY_BEAT_SCHEDULE["discard-stale-imports"]["schedule"] <= 600


def test_the_mapping_shows_the_first_rows_as_read_in_the_files_encoding(alice):
    cp1251 = "email;name;city\nivan@example.com;Иван;Тверь\n\nolga@example.com;Ольга\n".encode("cp1251")
    upload(alice, cp1251)
    imp = ContactImport.objects.get()
    page = alice.client.get(reverse("contacts:import_mapping", args=[imp.public_id]))
    assert page.context["preview"] == [["ivan@example.com", "Иван", "Тверь"], ["olga@example.com", "Ольга", ""]]
    html = page.content.decode()
    assert "The first rows, as read" in html and '<td class="break">Тверь</td>' in html


def test_the_live_import_page_says_when_it_started_not_how_long_ago(alice):
    upload(alice)
    ContactImport.objects.update(status=ContactImport.Status.RUNNING)
    imp = ContactImport.objects.get()
    page = alice.client.get(reverse("contacts:import", args=[imp.public_id])).content.decode()
    assert f">today at {timezone.localtime(imp.created_at):%H:%M}</time>" in page and " ago</time>" not in page


@pytest.mark.parametrize(("language", "ignore"), [("ru", "Пропустить"), ("vi", "Bỏ qua")])
def test_a_columns_choices_are_in_the_readers_language(alice, language, ignore):
    """The help under the columns names the choice “Ignore” in the reader's
    language: the option says the same."""
    alice.user.language = language
    alice.user.save(update_fields=["language"])
    upload(alice)
    imp = ContactImport.objects.get()
    html = alice.client.get(reverse("contacts:import_mapping", args=[imp.public_id])).content.decode()
    assert f'<option value="">{ignore}</option>' in html and ">Ignore<" not in html
