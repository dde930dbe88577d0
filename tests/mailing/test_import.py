"""CSV import, from the upload to the imported contacts: encodings,
delimiters, quoting, line numbers, merging and hostile files."""

import tracemalloc
import unicodedata
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import translation

from mailing import contacts
from mailing.imports import detection, inspection, limits, mapping, services
from mailing.imports import runner as import_runner
from mailing.models import Contact, ContactImport, ContactList, CustomField
from tests.helpers import SPECIAL_USE_ADDRESSES, deployment_mode
from tests.mailing.test_import_encodings import cp1258

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def imports_dir(settings, tmp_path) -> Path:
    settings.IMPORTS_DIR = tmp_path / "imports"
    return settings.IMPORTS_DIR


def upload(tenant, content: bytes, name: str = "contacts.csv") -> ContactImport:
    return services.import_upload(tenant=tenant, by=None, upload=SimpleUploadedFile(name, content, "text/csv"))


def run(capture, imp: ContactImport, columns: dict[int, str] | None = None, list_name: str = "Imported"):
    if columns is None:
        columns = {i: mapping.guess_target(h, set()) for i, h in enumerate(imp.header)}
    existing = ContactList.objects.filter(tenant=imp.tenant, name=list_name).first()
    with capture(execute=True):
        services.import_start(contact_import=imp, columns=columns, contact_list=existing, new_list_name=list_name)
    imp.refresh_from_db()
    return imp


@pytest.fixture
def do_import(tenant_a, django_capture_on_commit_callbacks):
    def go(content: bytes, columns: dict[int, str] | None = None) -> ContactImport:
        return run(django_capture_on_commit_callbacks, upload(tenant_a, content), columns)

    return go


def rejections(imp: ContactImport) -> list[tuple[int, str]]:
    return list(imp.rejections.values_list("line", "reason"))


def people(tenant) -> dict[str, tuple[str, str]]:
    return {c.email: (c.first_name, c.last_name) for c in Contact.objects.filter(tenant=tenant)}


def test_utf8_with_a_bom_and_commas(do_import, tenant_a):
    imp = do_import("\ufeffEmail,First name,Last name\r\nann@example.com,Ann,Lee\r\n".encode())
    assert (imp.encoding, imp.delimiter, imp.header) == ("utf-8", ",", ["Email", "First name", "Last name"])
    assert imp.status == ContactImport.Status.DONE and imp.created == 1
    assert people(tenant_a) == {"ann@example.com": ("Ann", "Lee")}
    assert list(Contact.objects.get().lists.values_list("name", flat=True)) == ["Imported"]


def test_windows_1251_with_semicolons_keeps_cyrillic_names(do_import, tenant_a):
    content = "E-mail;Имя;Фамилия\nivan@example.ru;Иван;Петров\nolga@example.ru;Ольга;Сидорова\n".encode("cp1251")
    imp = do_import(content)
    assert (imp.encoding, imp.delimiter) == ("cp1251", ";")
    assert imp.mapping == {"0": "email", "1": "first_name", "2": "last_name"}
    assert people(tenant_a) == {"ivan@example.ru": ("Иван", "Петров"), "olga@example.ru": ("Ольга", "Сидорова")}


def test_utf8_without_a_bom_with_semicolons_and_tabs(do_import, tenant_a):
    do_import("email;имя\nanna@example.ru;Анна\n".encode())
    imp = do_import(b"email\tfirst name\nbob@example.com\tBob\n")
    assert imp.delimiter == "\t"
    assert people(tenant_a) == {"anna@example.ru": ("Анна", ""), "bob@example.com": ("Bob", "")}


def test_quoted_fields_with_newlines_report_the_line_a_row_starts_on(do_import, tenant_a):
    content = (
        b"email,name,note\n"  # 1
        b'a@example.com,"Ann\n'  # 2
        b'Marie",x\n'  # 3
        b'not-an-address,"one\n'  # 4
        b"two\n"  # 5
        b'three",y\n'  # 6
        b"b@example.com,Bob,z\n"  # 7
        b',"no address"\n'  # 8
        b"\n"  # 9: blank, skipped
        b"c@example.com,Cy,\n"  # 10
        b"d@@example.com,Dee,\n"  # 11
    )
    imp = do_import(content, {0: "email", 1: "first_name"})
    assert [line for line, _ in rejections(imp)] == [2, 4, 8, 11]
    reasons = dict(rejections(imp))
    # A name goes into subjects: a line break in it rejects the row.
    assert reasons[2].startswith("First name: Remove the line break U+000A (position 4)")
    assert "Invalid email address" in reasons[4] and reasons[8] == "No email address."
    assert people(tenant_a) == {"b@example.com": ("Bob", ""), "c@example.com": ("Cy", "")}
    assert (imp.rows_seen, imp.created, imp.updated, imp.rejected) == (6, 2, 0, 4)
    assert imp.rejections.get(line=4).raw == 'not-an-address,"one\ntwo\nthree",y'


def test_a_control_character_in_a_name_rejects_the_row_with_its_line_and_reason(do_import, tenant_a):
    content = (
        "email,first_name,last_name,note\n"
        "ann@example.com,Ann,Lee,ok\n"  # 2
        "bob@example.com,Bo\x0bb,Ray,ok\n"  # 3
        "cat@example.com,Cat,Ki\x01m,ok\n"  # 4
        "eve@example.com,Eve\u2028X,Day,ok\n"  # 5
        "dan@example.com,Dan,Fox,tab\there\n"  # 6: custom values may hold them (bodies)
    ).encode()
    imp = do_import(content, {0: "email", 1: "first_name", 2: "last_name", 3: "new"})
    tail = ": it cannot go into a mail header."
    assert rejections(imp) == [
        (3, "First name: Remove the control character U+000B (position 3)" + tail),
        (4, "Last name: Remove the control character U+0001 (position 3)" + tail),
        (5, "First name: Remove the line separator U+2028 (position 4)" + tail),
    ]
    assert people(tenant_a) == {"ann@example.com": ("Ann", "Lee"), "dan@example.com": ("Dan", "Fox")}
    assert Contact.objects.get(email="dan@example.com").fields == {"note": "tab\there"}


def test_duplicates_merge_within_the_file_and_with_existing_contacts(do_import, tenant_a):
    CustomField.objects.create(tenant=tenant_a, key="city", label="City")
    old = Contact.objects.create(tenant=tenant_a, email="cy@example.com", first_name="Old", fields={"city": "Riga"})
    content = (
        b"email,first,last,city\n"
        b"ann@example.com,Ann,,\n"
        b"ann@EXAMPLE.COM,,Lee,Oslo\n"  # the same address: the domain is case-insensitive
        b"cy@example.com,,New,\n"
        b"Ann@example.com,Annie,,\n"  # the local part is kept: another address
    )
    imp = do_import(content, {0: "email", 1: "first_name", 2: "last_name", 3: "field:city"})
    assert people(tenant_a) == {
        "ann@example.com": ("Ann", "Lee"),
        "Ann@example.com": ("Annie", ""),
        "cy@example.com": ("Old", "New"),  # empty cells never erase
    }
    assert Contact.objects.get(email="ann@example.com").fields == {"city": "Oslo"}
    old.refresh_from_db()
    assert old.fields == {"city": "Riga"} and old.lists.get().name == "Imported"
    assert (imp.created, imp.updated, imp.rejected) == (2, 2, 0)


def test_duplicates_merge_across_batches(do_import, tenant_a, monkeypatch):
    monkeypatch.setattr(import_runner, "BATCH_ROWS", 2)
    content = b"email,first,last\na@x.org,A,\nb@x.org,B,\nbad,,\na@x.org,,Later\nc@x.org,C,\n"
    imp = do_import(content, {0: "email", 1: "first_name", 2: "last_name"})
    assert people(tenant_a) == {"a@x.org": ("A", "Later"), "b@x.org": ("B", ""), "c@x.org": ("C", "")}
    assert (imp.rows_seen, imp.created, imp.updated, imp.rejected) == (5, 3, 1, 1)
    assert imp.bytes_read == imp.file_size == len(content)


def test_invalid_addresses_are_rejected_with_the_reason_and_the_raw_row(do_import, tenant_a):
    content = b"email,name\nok@example.com,Ok\nx@localhost,X\nhas space@example.com,S\njohn.example.com,J\n"
    imp = do_import(content)
    assert [line for line, _ in rejections(imp)] == [3, 4, 5]
    assert all(reason.startswith("Invalid email address") for _, reason in rejections(imp))
    assert imp.rejections.get(line=3).raw == "x@localhost,X"
    assert list(people(tenant_a)) == ["ok@example.com"]


SPECIAL_CSV = "email,name\nok@example.com,Ok\n" + "".join(f"{a},N\n" for a in SPECIAL_USE_ADDRESSES)


def test_a_self_hosted_company_imports_its_own_special_use_domains(do_import, tenant_a, settings):
    deployment_mode(settings, "self_hosted")
    imp = do_import(SPECIAL_CSV.encode())
    assert rejections(imp) == [] and imp.created == 4
    assert sorted(people(tenant_a)) == sorted(["ok@example.com", *SPECIAL_USE_ADDRESSES])


def test_a_hosted_account_gets_special_use_rows_rejected_with_the_reason(do_import, tenant_a, settings):
    deployment_mode(settings, "saas")
    imp = do_import(SPECIAL_CSV.encode())
    assert [line for line, _ in rejections(imp)] == [3, 4, 5]
    reason = imp.rejections.get(line=3).reason
    assert reason == (
        "Invalid email address “ivan@corp.local”: “corp.local” is a special-use or reserved name that only "
        "a private network can reach; only a self-hosted installation may use it."
    )
    assert list(people(tenant_a)) == ["ok@example.com"]


def test_new_custom_fields_are_made_from_the_headers(do_import, tenant_a):
    imp = do_import(
        "email,Компания,Phone #2\na@example.com,Рога и копыта,+7 900\n".encode(), {0: "email", 1: "new", 2: "new"}
    )
    fields = dict(CustomField.objects.filter(tenant=tenant_a).values_list("key", "label"))
    assert fields == {"kompaniya": "Компания", "phone_2": "Phone #2"}
    assert Contact.objects.get().fields == {"kompaniya": "Рога и копыта", "phone_2": "+7 900"}
    assert imp.mapping == {"0": "email", "1": "field:kompaniya", "2": "field:phone_2"}


def test_the_mapping_needs_exactly_one_email_column(tenant_a):
    imp = upload(tenant_a, b"email,other\na@example.com,b@example.com\n")
    for columns in ({0: "", 1: "first_name"}, {0: "email", 1: "email"}):
        with pytest.raises(ValidationError):
            services.import_start(contact_import=imp, columns=columns, contact_list=None, new_list_name="L")
    imp.refresh_from_db()
    assert imp.status == ContactImport.Status.UPLOADED


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "The file is empty."),
        (b"\xef\xbb\xbf\r\n  \r\n", "The file is empty."),
        (b"email,name\n", "a header row but no contacts"),
        (b"\n\nemail\na@example.com\n", "The first line must be the header row"),
        (",".join(f"c{i}" for i in range(201)).encode() + b"\na@b.cd\n", "at most 200 are supported"),
        (b"email\n\x98\x98@example.com\n", "neither UTF-8 nor Windows-1251 (byte 0x98 at position 6)"),
        (b"\xff\xfee\x00m\x00", "a header row but no contacts"),  # UTF-16: made UTF-8 first
        (b"PK\x03\x04 rest of a zip", "Excel workbook"),
        (b"email\na@example.com\x00\n", "NUL bytes"),
        (b"email,na\rme\r\na@example.com,x\r\n", "The header row cannot be read as CSV: A line break (CR) inside"),
        # 1C: a title, an empty line, then the header
        (
            "Список клиентов\r\n\r\nИмя;E-mail\r\nИван;ivan@example.com\r\n".encode("cp1251"),
            "The first line “Список клиентов” is not the header row",
        ),
        # Bitrix24's "export to Excel" (an HTML table named .xls), renamed .csv
        (
            (
                '<meta http-equiv="Content-type" content="text/html;charset=utf-8" />\n<table border="1">\n'
                "<tr><th>Имя</th><th>E-mail</th></tr>\n<tr><td>Иван</td><td>ivan@example.com</td></tr>\n</table>\n"
            ).encode(),
            "web page (HTML)",
        ),
        ("\r\n<HTML><BODY><TABLE><TR><TD>Почта</TD></TR>\r\n</TABLE></BODY></HTML>".encode("cp1251"), "web page"),
        (
            b'\xef\xbb\xbf<?xml version="1.0"?>\n<Workbook xmlns="urn:schemas-microsoft-com:office:spreadsheet">\n',
            "XML",
        ),
    ],
)
def test_files_that_cannot_be_imported_give_a_clear_error(tenant_a, imports_dir, content, message):
    with pytest.raises(ValidationError) as exc:
        upload(tenant_a, content)
    assert message in exc.value.messages[0]
    assert not ContactImport.objects.exists()
    assert not any(imports_dir.glob("*")) if imports_dir.exists() else True


def test_a_too_long_line_or_field_rejects_only_that_row(do_import, tenant_a):
    long_line = b"a@example.com," + b"x" * (110 * 1024) + b"\n"
    long_field = b'b@example.com,"' + b"y\n" * (52 * 1024) + b'"\n'  # 104 KB in one quoted field
    content = b"email,name\n" + long_line + long_field + b"ok@example.com,Ok\n"
    imp = do_import(content)
    assert rejections(imp) == [
        (2, "The line is longer than 100 KB."),
        (
            3,
            "Column “name”: the value is longer than 100 KB. "
            "The row runs from line 3 to line 53251: is a closing quote missing?",
        ),
    ]
    assert list(people(tenant_a)) == ["ok@example.com"]
    assert imp.rejections.get(line=3).raw.startswith("b@example.com,")
    assert len(imp.rejections.get(line=3).raw) <= limits.MAX_RAW_CHARS


def test_a_field_past_the_csv_modules_limit_does_not_stop_the_import(do_import, tenant_a):
    huge = b'b@example.com,"' + (b"z" * 999 + b"\n") * 140 + b'end",tail\n'  # 140 KB: csv.Error
    imp = do_import(b"email,name\n" + huge + b"good@example.com,Good\n")
    assert imp.status == ContactImport.Status.DONE
    line, reason = rejections(imp)[0]
    assert (line, reason.split(" The row runs")[0]) == (2, "A field is longer than 100 KB.")
    assert reason.endswith("is a closing quote missing?")  # where to look
    assert "good@example.com" in people(tenant_a)


def test_a_row_spanning_too_many_bytes_is_cut_and_rejected(do_import, tenant_a, monkeypatch):
    monkeypatch.setattr(import_runner, "MAX_ROW_BYTES", 300)
    row = b"r@example.com," + b",".join(b'"' + b"w" * 40 + b"\n" + b"w" * 40 + b'"' for _ in range(10)) + b"\n"
    imp = do_import(b"email,name\n" + row + b"after@example.com,After\n")
    assert imp.status == ContactImport.Status.DONE
    assert rejections(imp)[0] == (
        2,
        "The row is longer than 0 KB. The row runs from line 2 to line 5: is a closing quote missing?",
    )
    assert "after@example.com" in people(tenant_a) and "r@example.com" not in people(tenant_a)


def test_a_row_with_too_many_columns_is_rejected(do_import, tenant_a):
    imp = do_import(b"email,name\n" + b"a@example.com" + b",x" * 250 + b"\nb@example.com,B\n")
    assert rejections(imp) == [(2, "The row has 251 columns; at most 200 are supported.")]
    assert list(people(tenant_a)) == ["b@example.com"]


def test_an_invalid_byte_in_a_utf8_file_rejects_that_row_with_its_position(do_import, tenant_a):
    content = "email,name\nanna@example.ru,Анна\n".encode() + b"bad@example.com,B\xffob\nok@example.com,Ok\n"
    position = content.index(b"\xff")
    imp = do_import(content)
    assert imp.encoding == "utf-8"
    assert rejections(imp) == [(3, f"Invalid bytes for UTF-8 at byte {position} of the file.")]
    assert set(people(tenant_a)) == {"anna@example.ru", "ok@example.com"}


def test_long_names_and_values_are_rejected_not_cut(do_import, tenant_a):
    imp = do_import(b"email,name\na@example.com," + b"n" * 101 + b"\n")
    assert rejections(imp) == [(2, "Column “name”: a name is longer than 100 characters.")]
    assert not Contact.objects.exists()


def test_a_rejected_value_names_its_column(do_import, tenant_a):
    """A file of thirty columns: the reason says which one to fix."""
    content = "Email;Имя;Фамилия;Компания;Город\n".encode()
    content += b"a@example.com;Ann;Lee;" + b"c" * 1001 + b";Hanoi\n"
    content += b"b@example.com;Bob;" + b"l" * 101 + b";Acme;Hue\n"
    content += b'c@example.com;Cy;Ray;Acme;"' + b"h" * (60 * 1024) + b"\n" + b"h" * (50 * 1024) + b'"\n'
    content += b"d@example.com;Di;Ng;Acme;Hue\n"
    imp = do_import(content, {0: "email", 1: "first_name", 2: "last_name", 3: "new"})
    assert rejections(imp) == [
        (2, "Column “Компания”: the value is longer than 1000 characters."),
        (3, "Column “Фамилия”: a name is longer than 100 characters."),
        (
            4,
            "Column “Город”: the value is longer than 100 KB. "
            "The row runs from line 4 to line 5: is a closing quote missing?",
        ),
    ]
    assert list(people(tenant_a)) == ["d@example.com"]


def test_the_file_is_stored_under_a_random_name_and_deleted_at_the_end(tenant_a, imports_dir, do_import):
    imp = upload(tenant_a, b"email\na@example.com\n", name="../../etc/passwd.csv")
    path = Path(imp.file_path)
    assert path.parent == imports_dir and "passwd" not in path.name and len(path.stem) == 32
    assert path.stat().st_mode & 0o777 == 0o600
    assert imp.file_name == "passwd.csv"
    done = do_import(b"email\nb@example.com\n")
    assert done.status == ContactImport.Status.DONE and not Path(done.file_path).exists()
    assert path.exists()  # the other upload waits for its mapping


def test_a_vanished_file_fails_the_import_with_a_message(tenant_a, django_capture_on_commit_callbacks):
    imp = upload(tenant_a, b"email\na@example.com\n")
    Path(imp.file_path).unlink()
    imp = run(django_capture_on_commit_callbacks, imp)
    assert imp.status == ContactImport.Status.FAILED and "gone" in imp.error and imp.finished_at


def test_an_import_runs_once(tenant_a, django_capture_on_commit_callbacks):
    imp = run(django_capture_on_commit_callbacks, upload(tenant_a, b"email\na@example.com\n"))
    import_runner.import_run(import_id=imp.pk)  # a second delivery of the task
    imp.refresh_from_db()
    assert imp.status == ContactImport.Status.DONE and imp.created == 1 and imp.updated == 0


def test_memory_stays_bounded_while_streaming_a_large_file(tenant_a, django_capture_on_commit_callbacks, monkeypatch):
    monkeypatch.setattr(import_runner, "BATCH_ROWS", 250)
    rows = b"".join(b"person%d@example.com,Name%d,Surname,%s\n" % (i, i, b"n" * 1000) for i in range(2_000))
    imp = upload(tenant_a, b"email,first,last,note\n" + rows)
    assert imp.file_size > 2_000_000
    tracemalloc.start()
    try:
        imp = run(django_capture_on_commit_callbacks, imp, {0: "email", 1: "first_name"})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert imp.created == 2_000 and imp.rejected == 0
    assert peak < imp.file_size / 2  # a batch at a time, never the whole file


def test_a_nul_byte_after_the_inspected_part_rejects_its_row(do_import, tenant_a, monkeypatch):
    monkeypatch.setattr(detection, "CHUNK_BYTES", 16)  # the encoding is settled before the NUL is reached
    monkeypatch.setattr(import_runner, "CHUNK_BYTES", 16)
    content = "email,name\nanna@example.ru,Анна\n".encode() + b"b@example.com,B\x00b\nok@example.com,Ok\n"
    imp = do_import(content)
    assert rejections(imp) == [(3, f"A NUL byte at byte {content.index(0)} of the file.")]
    assert imp.rejections.get().raw == "b@example.com,Bb"
    assert set(people(tenant_a)) == {"anna@example.ru", "ok@example.com"}


def test_a_quote_left_open_is_reported_with_the_lines_it_swallowed(do_import, tenant_a):
    content = b'email,first_name\nann@example.com,"Ann\nbob@example.com,Bob\ncid@example.com,Cid\n'
    imp = do_import(content, {0: "email", 1: "first_name"})
    assert "bob@example.com" not in people(tenant_a)
    assert rejections(imp) == [
        (
            2,
            "A quoted field runs over several lines that look like rows of their own. "
            "The row runs from line 2 to line 4: is a closing quote missing?",
        )
    ]
    assert imp.rejections.get().raw.startswith('ann@example.com,"Ann')


def test_a_quoted_field_over_two_lines_that_holds_no_rows_is_kept(do_import, tenant_a):
    # A custom field may hold line breaks: it may go into a body.
    imp = do_import(b'email,note\ndan@example.com,"Dan\nthe Second"\n', {0: "email", 1: "new"})
    assert rejections(imp) == []
    assert Contact.objects.get(email="dan@example.com").fields == {"note": "Dan\nthe Second"}


def test_an_import_stopped_by_the_time_limit_fails_with_a_message(tenant_a, monkeypatch, do_import):
    from celery.exceptions import SoftTimeLimitExceeded

    def slow(imp):
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(import_runner, "_run", slow)
    imp = do_import(b"Email\r\nann@example.com\r\n")
    assert imp.status == ContactImport.Status.FAILED and "took too long" in imp.error


@pytest.mark.parametrize(
    "header, row",
    [
        ("Имя;Фамилия;Эл. почта", "Иван;Петров;ivan@example.com"),  # 1C
        ("Имя;Фамилия;E-mail:", "Иван;Петров;ivan@example.com"),
        ('"Имя";"Фамилия";"Рабочий e-mail"', '"Иван";"Петров";"ivan@example.com"'),  # Bitrix24
        ("Имя;Фамилия;Адрес электронной почты", "Иван;Петров;ivan@example.com"),
    ],
)
def test_russian_column_names_as_crms_write_them_map_to_the_standard_fields(do_import, tenant_a, header, row):
    imp = do_import(f"{header}\r\n{row}\r\n".encode("cp1251"))
    assert imp.status == ContactImport.Status.DONE and imp.created == 1
    assert people(tenant_a) == {"ivan@example.com": ("Иван", "Петров")}


@pytest.mark.parametrize("form", ["NFC", "NFD"])
def test_vietnamese_column_names_map_to_the_standard_fields_in_either_normal_form(do_import, tenant_a, form):
    header = unicodedata.normalize(form, "Họ,Tên,Địa chỉ email")
    imp = do_import(f"{header}\nNguyễn,An,an@example.com\n".encode())
    assert imp.status == ContactImport.Status.DONE and imp.created == 1
    assert people(tenant_a) == {"an@example.com": ("An", "Nguyễn")}


def test_decomposed_vietnamese_names_are_stored_composed_and_found_by_a_typed_search(do_import, tenant_a):
    text = unicodedata.normalize("NFD", "Email,Họ,Tên,Thành phố\nan@example.com,Nguyễn,Văn Ân,Hà Nội\n")
    imp = do_import(text.encode(), {0: "email", 1: "last_name", 2: "first_name", 3: "new"})
    assert imp.status == ContactImport.Status.DONE and imp.created == 1
    assert people(tenant_a) == {"an@example.com": ("Văn Ân", "Nguyễn")}
    assert list(Contact.objects.get().fields.values()) == ["Hà Nội"]
    found = contacts.contacts_search(tenant=tenant_a, query="Nguyễn Ân")
    assert [c.email for c in found] == ["an@example.com"]


@pytest.mark.parametrize("language, name", [("ru", "Столбец"), ("vi", "Cột")])
def test_columns_without_a_name_are_named_in_the_uploaders_language(tenant_a, language, name):
    with translation.override(language):
        imp = upload(tenant_a, b"Email;;Name;\r\na@example.com;x;Ann;\r\n")
    assert imp.header == ["Email", f"{name} 2", "Name", f"{name} 4"]


def test_addresses_pasted_from_word_or_excel_are_cleaned_or_refused_naming_the_character(do_import, tenant_a):
    # Invisible characters (a zero-width space, a soft hyphen, a byte order
    # mark mid-file) are cleaned; a space inside an address cannot be, and
    # its row says which character and where.
    rows = [
        "email,name",
        "\u200bann@example.com,Ann",
        "bob\u00ad@exam\u200bple.com\u200e,Bob",
        "\ufeffcy@example.com,Cy",
    ]
    rows += ["dan@example\u00a0.com,Dan", "eve\u200d@example.com,Eve"]
    imp = do_import("\r\n".join(rows).encode())
    assert people(tenant_a) == {
        "ann@example.com": ("Ann", ""),
        "bob@example.com": ("Bob", ""),
        "cy@example.com": ("Cy", ""),
    }
    assert rejections(imp) == [
        (
            5,
            "Invalid email address “dan@example\u00a0.com”: The address has a space (U+00A0) at position 12: "
            "an address cannot have one. Remove it, or put each address in a cell of its own.",
        ),
        (
            6,
            "Invalid email address “eve\u200d@example.com”: The address has an invisible character (U+200D) at "
            "position 4, often pasted from Word, Excel or a web page: type the address again without it.",
        ),
    ]


def test_a_vietnamese_windows_1258_file_is_read_as_vietnamese(do_import, tenant_a):
    content = cp1258("Địa chỉ email,Họ,Tên\r\nan@example.vn,Nguyễn,Văn Ân\r\nhuong@example.vn,Trần,Thị Hương\r\n")
    imp = do_import(content)
    assert imp.encoding == "cp1258"
    assert imp.header == ["Địa chỉ email", "Họ", "Tên"]
    assert imp.mapping == {"0": "email", "1": "last_name", "2": "first_name"}
    assert people(tenant_a) == {"an@example.vn": ("Văn Ân", "Nguyễn"), "huong@example.vn": ("Thị Hương", "Trần")}


@pytest.mark.parametrize(
    "content",
    [
        # TCVN3 (ABC): "Nguyễn Văn Ân", the letters on the code points of the font
        b"Email,Ho ten\r\nan@example.vn,Nguy\xd6n V\xa8n \xa2n\r\n",
        # VNI: "Nguyễn Văn Ân", a letter and its marks as separate bytes
        b"Email,Ho ten\r\nan@example.vn,Nguye\xe3n Va\xean A\xc2n\r\n",
        # Windows-1252 (a German name), neither Cyrillic nor Vietnamese
        "Email,Name\r\nanna@example.de,Anna Müller\r\n".encode("cp1252"),
    ],
)
def test_a_file_in_another_code_page_is_refused_not_garbled(tenant_a, imports_dir, content):
    with pytest.raises(ValidationError) as exc:
        upload(tenant_a, content)
    assert "line 2" in exc.value.messages[0] and "TCVN3" in exc.value.messages[0]
    assert not ContactImport.objects.exists() and not Contact.objects.exists()


def test_a_russian_file_with_some_latin_words_stays_windows_1251(do_import, tenant_a):
    """Latin words, and a Russian word typed with a Latin "a" (the keys
    look alike), are no reason to doubt the file."""
    content = "Email;Имя;Компания\nivan@example.ru;Ивaн;ООО «Ромашка» Ltd\nolga@example.ru;Ольга;IBM Россия\n"
    imp = do_import(content.encode("cp1251"))
    assert imp.encoding == "cp1251"
    assert people(tenant_a) == {"ivan@example.ru": ("Ивaн", ""), "olga@example.ru": ("Ольга", "")}


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-16-be"])
def test_excels_unicode_text_in_utf16_is_imported(do_import, tenant_a, codec, imports_dir):
    """Excel's "Unicode Text" is UTF-16 (little-endian, with a BOM) and
    separated by tabs; other tools write it without a BOM or big-endian."""
    text = "Email\tИмя\tHọ tên\r\nivan@example.ru\tИван\tNguyễn Văn Ân\r\nbad-address\tПётр\t\r\n"
    imp = do_import(text.encode(codec), {0: "email", 1: "first_name", 2: "new"})
    assert (imp.encoding, imp.delimiter, imp.header) == ("utf-8", "\t", ["Email", "Имя", "Họ tên"])
    assert imp.file_size == len(text.encode())  # as stored: UTF-8
    assert [(c.email, c.first_name, c.fields) for c in Contact.objects.filter(tenant=tenant_a)] == [
        ("ivan@example.ru", "Иван", {"ho_ten": "Nguyễn Văn Ân"})
    ]
    assert [line for line, _ in rejections(imp)] == [3]
    assert not any(imports_dir.glob("*"))


def test_a_broken_utf16_character_rejects_only_its_row(do_import, tenant_a):
    content = "email\tname\r\na@example.com\tAnn\r\nb@example.com\t".encode("utf-16-le")
    content += b"\x00\xd8" + "x\r\nc@example.com\tCy\r\n".encode("utf-16-le")  # a lone high surrogate
    imp = do_import(content, {0: "email", 1: "first_name"})
    assert sorted(people(tenant_a)) == ["a@example.com", "c@example.com"]
    assert [line for line, _ in rejections(imp)] == [3]


@pytest.mark.parametrize("hint, delimiter", [("sep=;", ";"), ("\ufeffsep=,", ","), ("SEP=\t", "\t")])
def test_excels_separator_line_sets_the_delimiter_and_is_not_the_header(do_import, tenant_a, hint, delimiter):
    """ "sep=;" above the header tells Excel the separator; exporters made
    for Excel write it. The header is the line under it."""
    rows = [["Email", "Имя"], ["ivan@example.ru", "Иван"], ["not-an-address", "Пётр"], ["olga@example.ru", "Ольга"]]
    content = (hint + "\r\n" + "".join(delimiter.join(row) + "\r\n" for row in rows)).encode()
    imp = upload(tenant_a, content)
    assert (imp.delimiter, imp.header) == (delimiter, ["Email", "Имя"])
    assert inspection.preview_rows(imp)[0] == ["ivan@example.ru", "Иван"]
    imp = do_import(content)
    assert people(tenant_a) == {"ivan@example.ru": ("Иван", ""), "olga@example.ru": ("Ольга", "")}
    assert [line for line, _ in rejections(imp)] == [4]


def test_a_stray_carriage_return_in_a_field_rejects_only_its_row(do_import, tenant_a):
    """A cell pasted from a Mac application may hold a bare CR, which the
    csv module cannot read outside quotes: that row alone is rejected, in
    the reader's language, and the file is still taken."""
    content = b'email,name\r\na@example.com,A\rB\r\nb@example.com,Bob\r\nc@example.com,"C\rD"\r\n'
    imp = do_import(content, {0: "email", 1: "new"})
    assert rejections(imp) == [(2, "A line break (CR) inside a field that is not in quotes.")]
    assert {c.email: c.fields for c in Contact.objects.filter(tenant=tenant_a)} == {
        "b@example.com": {"name": "Bob"},
        "c@example.com": {"name": "C\rD"},
    }
    with translation.override("ru"):
        assert inspection.csv_problem(inspection.csv.Error("new-line character seen in unquoted field")) != (
            "A line break (CR) inside a field that is not in quotes."
        )
