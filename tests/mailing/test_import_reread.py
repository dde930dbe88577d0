"""The mapping page's "Encoding" choice: a file the detection read wrong
(one word that is a word in two encodings) is read again in the encoding
the user chooses, without uploading it again, and imported in it; a choice
that cannot read the file, or that is not one of ours, is refused next to
the field with nothing lost."""

import codecs
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.urls import reverse

from accounts import services as account_services
from mailing.imports import services
from mailing.models import Contact, ContactImport

pytestmark = pytest.mark.django_db

# Mac Cyrillic's "Д" is Windows-1251's low quote "„", its "Ё" Windows-1251's
# "Э": "„митрий" and "Элки" read as text, and Windows-1251 is the likelier.
MAC_HEADER_ASCII = "email,name,city\r\ndima@example.ru,Дмитрий,Moscow\r\n".encode("mac_cyrillic")
MAC_HEADER_CYRILLIC = "email,name,Ёлки\r\ndima@example.ru,Дмитрий,1\r\n".encode("mac_cyrillic")
# "Ёлка" in CP866 is four bytes that are one valid UTF-8 character, "𫪠".
CP866_AS_UTF8 = "email,name\r\nolga@example.ru,Ёлка\r\n".encode("cp866")
# Read right at upload; bytes 28 ("Д") and 36 ("П") are no UTF-8 and no
# Windows-1258 ("П" is 0x8F, undefined in it), "Ш" (0x98 at 33) no Windows-1251.
MAC_DMITRY = "email,name\r\ndima@example.ru,Дмитрий Петров\r\n".encode("mac_cyrillic")
MAC_SHISHKINA = "email,name\r\nolga@example.ru,Ёлка Шишкина\r\n".encode("mac_cyrillic")


@pytest.fixture(autouse=True)
def imports_dir(settings, tmp_path) -> Path:
    settings.IMPORTS_DIR = tmp_path / "imports"
    return settings.IMPORTS_DIR


def uploaded(person, content: bytes) -> ContactImport:
    file = SimpleUploadedFile("people.csv", content, "text/csv")
    response = person.client.post(reverse("contacts:import_upload"), {"file": file})
    assert response.status_code == 302, response.context["form"].errors
    return ContactImport.objects.get()


def mapping_url(imp: ContactImport) -> str:
    return reverse("contacts:import_mapping", args=[imp.public_id])


def proposed(page) -> dict:
    form = page.context["form"]
    return {name: form[name].value() or "" for name in form.fields}


@pytest.mark.parametrize(
    ("content", "detected", "read", "right", "name"),
    [
        (MAC_HEADER_ASCII, "cp1251", "„митрий", "mac_cyrillic", "Дмитрий"),
        (CP866_AS_UTF8, "utf-8", "𫪠", "cp866", "Ёлка"),
    ],
)
def test_a_file_read_wrong_is_read_again_in_the_chosen_encoding_and_imported_in_it(
    alice, tenant_a, django_capture_on_commit_callbacks, content, detected, read, right, name
):
    imp = uploaded(alice, content)
    page = alice.client.get(mapping_url(imp))
    assert imp.encoding == detected and page.context["preview"][0][1] == read
    html = page.content.decode()
    assert '<select name="encoding"' in html and f'<option value="{detected}" selected>' in html
    assert '<option value="mac_cyrillic">Mac Cyrillic</option>' in html  # by its name, not the codec's
    # The user maps the name to the last name (not the guess) and names the list, then corrects the encoding.
    chosen = {**proposed(page), "col_1": "last_name", "contact_list": "", "new_list_name": "Mine"}
    page = alice.client.post(mapping_url(imp), {**chosen, "encoding": right, "reread": "1"})
    assert page.status_code == 200
    imp.refresh_from_db()
    assert imp.status == ContactImport.Status.UPLOADED and imp.encoding == right
    assert page.context["preview"][0][1] == name and f'<td class="break">{name}</td>' in page.content.decode()
    assert f'<option value="{right}" selected>' in page.content.decode()
    again = proposed(page)
    assert (again["col_0"], again["col_1"], again["new_list_name"]) == ("email", "last_name", "Mine")
    with django_capture_on_commit_callbacks(execute=True):
        response = alice.client.post(mapping_url(imp), {**again, "encoding": right})
    assert response.status_code == 302
    imp.refresh_from_db()
    assert imp.status == ContactImport.Status.DONE, imp.error
    assert Contact.objects.get(tenant=tenant_a).last_name == name
    assert alice.client.get(mapping_url(imp)).status_code == 302  # started: the page is the progress now


def test_a_column_whose_name_the_new_reading_changes_gets_a_fresh_guess(alice, tenant_a):
    imp = uploaded(alice, MAC_HEADER_CYRILLIC)
    assert imp.header == ["email", "name", "Элки"]
    chosen = {**proposed(alice.client.get(mapping_url(imp))), "col_1": "last_name", "col_2": "new"}
    page = alice.client.post(mapping_url(imp), {**chosen, "encoding": "mac_cyrillic", "reread": "1"})
    imp.refresh_from_db()
    assert imp.header == ["email", "name", "Ёлки"]
    again = proposed(page)
    assert (again["col_0"], again["col_1"], again["col_2"]) == ("email", "last_name", "")
    assert "New field “Ёлки”" in page.content.decode()


def test_a_changed_choice_sent_with_import_reads_the_file_again_and_imports_nothing(alice):
    """The rows of the new reading are shown before anything is imported."""
    imp = uploaded(alice, MAC_HEADER_ASCII)
    chosen = {**proposed(alice.client.get(mapping_url(imp))), "new_list_name": "Mine"}
    page = alice.client.post(mapping_url(imp), {**chosen, "encoding": "mac_cyrillic"})
    assert page.status_code == 200 and page.context["preview"][0][1] == "Дмитрий"
    imp.refresh_from_db()
    assert imp.status == ContactImport.Status.UPLOADED and imp.encoding == "mac_cyrillic"
    assert "Read again as Mac Cyrillic" in page.content.decode()


@pytest.mark.parametrize(
    ("content", "encoding", "message"),
    [
        (MAC_DMITRY, "utf-8", "The file cannot be read as UTF-8: the byte at position 28"),
        (MAC_DMITRY, "cp1258", "The file cannot be read as Windows-1258: the byte at position 36"),
        (MAC_SHISHKINA, "cp1251", "The file cannot be read as Windows-1251: the byte at position 33"),
        # A UTF-8 BOM before a code page's letters is no UTF-8 text (it was, and every row was rejected).
        (codecs.BOM_UTF8 + MAC_DMITRY, "utf-8", "The file cannot be read as UTF-8: the byte at position 31"),
    ],
)
def test_an_encoding_that_cannot_read_the_file_is_refused_next_to_the_field_and_nothing_is_lost(
    alice, content, encoding, message
):
    imp = uploaded(alice, content)
    before = (imp.encoding, imp.delimiter, imp.header)
    chosen = {**proposed(alice.client.get(mapping_url(imp))), "col_1": "last_name", "new_list_name": "Mine"}
    page = alice.client.post(mapping_url(imp), {**chosen, "encoding": encoding, "reread": "1"})
    assert page.status_code == 400
    message += " of the file is not a character in it."
    assert page.context["encoding_form"].errors["encoding"] == [f"{message} Choose another encoding."]
    html = page.content.decode()
    assert 'id="id_encoding_error"' in html and message in html
    imp.refresh_from_db()
    assert (imp.encoding, imp.delimiter, imp.header, imp.status) == (*before, ContactImport.Status.UPLOADED)
    assert Path(imp.file_path).exists()
    again = proposed(page)
    assert (again["col_1"], again["new_list_name"]) == ("last_name", "Mine")
    assert page.context["preview"][0][1] == "Ёлка Шишкина" if content == MAC_SHISHKINA else "Дмитрий Петров"


@pytest.mark.parametrize(
    "value",
    [
        "rot13",
        "base64",
        "utf-8-sig",
        "utf_8",
        "UTF-8",
        "latin-1",
        "hex",
        "zlib",
        "cp1252",
        "",
        " ",
        "a\x00b",
        "x" * 10240,
    ],
)
def test_an_encoding_not_offered_is_refused(alice, value):
    """Python's codecs would read with some ("utf-8-sig", "latin-1") and
    fail on others ("rot13", "base64" are no text encodings): neither."""
    imp = uploaded(alice, MAC_HEADER_ASCII)
    page = alice.client.post(mapping_url(imp), {"col_0": "email", "encoding": value, "reread": "1"})
    assert page.status_code == 400 and page.context["encoding_form"].errors["encoding"]
    assert 'id="id_encoding_error"' in page.content.decode()
    imp.refresh_from_db()
    assert imp.encoding == "cp1251" and imp.status == ContactImport.Status.UPLOADED


def test_two_values_for_the_encoding_are_one_refusal_or_one_reading_never_an_error(alice):
    imp = uploaded(alice, MAC_HEADER_ASCII)
    page = alice.client.post(mapping_url(imp), {"col_0": "email", "encoding": ["rot13", "mac_cyrillic"], "reread": "1"})
    assert page.status_code in (200, 400)


def test_the_service_refuses_what_is_not_offered(alice):
    imp = uploaded(alice, MAC_HEADER_ASCII)
    for value in ("rot13", "base64", "utf-8-sig", "koi8-r"):
        with pytest.raises(ValidationError):
            services.import_reread(contact_import=imp, encoding=value)
    imp.refresh_from_db()
    assert imp.encoding == "cp1251"


def test_an_import_that_started_is_not_read_again(alice):
    imp = uploaded(alice, MAC_HEADER_ASCII)
    ContactImport.objects.filter(pk=imp.pk).update(status=ContactImport.Status.QUEUED)
    with pytest.raises(ValidationError):
        services.import_reread(contact_import=imp, encoding="mac_cyrillic")
    response = alice.client.post(mapping_url(imp), {"encoding": "mac_cyrillic", "reread": "1"})
    assert response.status_code == 302
    assert ContactImport.objects.get(pk=imp.pk).encoding == "cp1251"


def test_an_import_discarded_while_it_is_read_again_is_gone_not_an_error(alice):
    """Read again in one tab, Discard (or the hourly clean-up) in another:
    the page had the import, the reading found the file, and the row was
    gone when it came to be saved (DoesNotExist, a 500)."""
    imp = uploaded(alice, MAC_HEADER_ASCII)
    ContactImport.objects.filter(pk=imp.pk).delete()  # as import_discard does, after the file
    with pytest.raises(ValidationError) as refused:
        services.import_reread(contact_import=imp, encoding="mac_cyrillic")
    assert refused.value.code == "gone"


def test_an_import_discarded_while_it_is_started_is_gone_not_an_error(alice):
    """Import pressed in one tab, Discard (or the hourly clean-up) in another:
    the page had the import and the row was gone when it came to be locked
    (DoesNotExist, a 500)."""
    imp = uploaded(alice, MAC_HEADER_ASCII)
    ContactImport.objects.filter(pk=imp.pk).delete()
    with pytest.raises(ValidationError) as refused, transaction.atomic():
        services.import_start(contact_import=imp, columns={0: "email"}, contact_list=None, new_list_name="L")
    assert refused.value.code == "gone"


def test_only_the_imports_tenant_reads_it_again(alice, bob, charlie, tenant_a):
    imp = uploaded(alice, MAC_HEADER_ASCII)
    data = {"col_0": "email", "encoding": "mac_cyrillic", "reread": "1"}
    assert charlie.client.post(mapping_url(imp), data).status_code == 404
    assert charlie.client.get(mapping_url(imp), {"encoding": "mac_cyrillic"}).status_code == 404
    assert ContactImport.objects.get().encoding == "cp1251"
    account_services.tenant_suspend(tenant=tenant_a, reason="phishing")
    assert bob.client.post(mapping_url(imp), data).status_code == 403
    assert ContactImport.objects.get().encoding == "cp1251"
    account_services.tenant_reactivate(tenant=tenant_a)
    assert bob.client.post(mapping_url(imp), data).status_code == 200  # a member of the tenant may, as they import
    assert ContactImport.objects.get().encoding == "mac_cyrillic"


def test_a_fresh_guess_never_takes_a_field_a_kept_choice_fills(alice):
    from mailing.forms.contacts import ImportMappingForm

    imp = uploaded(alice, "email,name,Фамилия\r\nivan@example.ru,Иван,Петров\r\n".encode("cp1251"))
    assert ImportMappingForm(contact_import=imp)["col_2"].value() == "last_name"
    form = ImportMappingForm(contact_import=imp, initial={"col_1": "last_name"})
    assert (form["col_1"].value(), form["col_2"].value()) == ("last_name", "")


def test_utf8_with_a_damaged_row_may_be_chosen_again_as_the_upload_read_it(
    alice, tenant_a, django_capture_on_commit_callbacks
):
    """A bad byte after valid UTF-8 letters is a damaged row, rejected alone:
    going back to UTF-8 after trying another encoding is not refused."""
    content = "email,name\r\nann@example.com,Анна\r\n".encode() + b"bob@example.com,B\xffb\r\n"
    imp = uploaded(alice, content)
    assert imp.encoding == "utf-8"
    data = {"col_0": "email", "col_1": "first_name", "new_list_name": "Mine"}
    assert alice.client.post(mapping_url(imp), {**data, "encoding": "koi8_r"}).status_code == 200
    page = alice.client.post(mapping_url(imp), {**data, "encoding": "utf-8"})
    assert page.status_code == 200 and page.context["preview"][0][1] == "Анна"
    with django_capture_on_commit_callbacks(execute=True):
        alice.client.post(mapping_url(imp), {**data, "encoding": "utf-8"})
    imp.refresh_from_db()
    assert (imp.status, imp.encoding, imp.created, imp.rejected) == (ContactImport.Status.DONE, "utf-8", 1, 1)
    assert Contact.objects.get(tenant=tenant_a).first_name == "Анна"


def test_a_code_page_file_with_a_utf8_row_may_be_chosen_again_as_the_upload_read_it(
    alice, tenant_a, django_capture_on_commit_callbacks
):
    """A file of two exports: Windows-1251's rows, then a later one's in
    UTF-8, which the import reads as UTF-8. Its "И" (D0 98) holds 0x98, no
    character of Windows-1251: going back to Windows-1251 after trying
    another encoding was refused, naming that byte."""
    content = "email,name\r\nann@example.com,Анна Сергеевна Смирнова\r\n".encode("cp1251")
    content += "ivan@example.com,Иван\r\n".encode()
    imp = uploaded(alice, content)
    assert imp.encoding == "cp1251"
    data = {"col_0": "email", "col_1": "first_name", "new_list_name": "Mine"}
    assert alice.client.post(mapping_url(imp), {**data, "encoding": "koi8_r"}).status_code == 200
    page = alice.client.post(mapping_url(imp), {**data, "encoding": "cp1251"})
    assert page.status_code == 200, page.context["encoding_form"].errors
    assert [row[1] for row in page.context["preview"]] == ["Анна Сергеевна Смирнова", "Иван"]
    with django_capture_on_commit_callbacks(execute=True):
        alice.client.post(mapping_url(imp), {**data, "encoding": "cp1251"})
    imp.refresh_from_db()
    assert (imp.status, imp.encoding, imp.created, imp.rejected) == (ContactImport.Status.DONE, "cp1251", 2, 0)
    assert sorted(Contact.objects.filter(tenant=tenant_a).values_list("first_name", flat=True)) == [
        "Анна Сергеевна Смирнова",
        "Иван",
    ]
