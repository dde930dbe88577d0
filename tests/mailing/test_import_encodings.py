"""Contact files in the encodings our users' tools really write, imported
through the pages (upload, mapping, the runner): the encoding is recognised,
the mapping page names it, and the names stored are the letters written,
composed (NFC), whatever the file held."""

import codecs
import io
import sys
import tracemalloc
import unicodedata
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from mailing.imports import code_pages, detection
from mailing.models import Contact, ContactImport

pytestmark = pytest.mark.django_db

HEADER = {"ru": "Email;Имя;Фамилия;Компания", "uk": "Email;Ім'я;Прізвище;Місто", "vi": "Email;Tên;Họ;Công ty"}
ROWS = {
    "ru": [
        ("ivanov@mail.ru", "Сергей", "Иванов", "ООО «Техснаб», Екатеринбург"),
        ("smirnova@yandex.ru", "Елена", "Смирнова", "ЗАО «Вектор», Санкт-Петербург"),
        ("f.shcherbakov@example.ru", "Фёдор", "Щербаков", "ИП Щербаков Ф. Ю., Нижний Новгород"),
        ("yakovleva@example.ru", "Юлия", "Яковлева", "Ростов-на-Дону, Большая Садовая ул., дом № 5"),
    ],
    "uk": [
        ("t.shevchenko@ukr.net", "Тарас", "Шевченко", "Київ"),
        ("o.kovalchuk@i.ua", "Олена", "Ковальчук", "Львів"),
        ("g.gudz@example.ua", "Ґанна", "Ґудзь", "Біла Церква"),
        ("yizhak@example.ua", "Мар'яна", "Їжакевич", "Івано-Франківськ"),
    ],
    "vi": [
        ("an.nguyen@example.vn", "Văn Ân", "Nguyễn", "Công ty TNHH Thương mại Hòa Phát, Hà Nội"),
        ("huong.tran@example.vn", "Thị Hương", "Trần", "Đà Nẵng"),
        ("quynh.dang@example.vn", "Ngọc Quỳnh", "Đặng", "Thành phố Hồ Chí Minh"),
        ("anh.do@example.vn", "Ánh", "Đỗ", "Cần Thơ"),
    ],
}
# What the mapping page says, as NAMES has it.
SHOWN = {
    "utf-8": "UTF-8",
    "cp1251": "Windows-1251",
    "koi8_r": "KOI8-R",
    "koi8_u": "KOI8-U (Ukrainian)",
    "cp866": "CP866 (DOS)",
    "mac_cyrillic": "Mac Cyrillic",
    "cp1258": "Windows-1258",
}


@pytest.fixture(autouse=True)
def imports_dir(settings, tmp_path) -> Path:
    settings.IMPORTS_DIR = tmp_path / "imports"
    return settings.IMPORTS_DIR


TONE_MARKS = "\u0300\u0301\u0303\u0309\u0323"


def cp1258(text: str) -> bytes:
    """`text` as Excel on a Vietnamese Windows saves it: Windows-1258 has
    the letters with their hat, horn or breve ("ê", "ơ", "ă") and the tone
    marks as combining characters, so "ễ" is "ê" and the combining tilde,
    and "ặ" "ă" and the dot below (which NFD puts before the breve)."""
    out = b""
    for char in text:
        try:
            out += char.encode("cp1258")
            continue
        except UnicodeEncodeError:
            pass
        marks = unicodedata.normalize("NFD", char)
        tones = "".join(mark for mark in marks if mark in TONE_MARKS)
        letter = unicodedata.normalize("NFC", "".join(mark for mark in marks if mark not in TONE_MARKS))
        out += (letter + tones).encode("cp1258")  # raises for what the code page cannot write at all
    return out


def written(text: str, how: str) -> bytes:
    """`text` as a tool writes it: a codec, or one of the ways below."""
    if how == "cp1258":
        return cp1258(text)
    if how == "utf-8-nfd":  # macOS
        return unicodedata.normalize("NFD", text).encode()
    if how == "utf-8-bom":
        return codecs.BOM_UTF8 + text.encode()
    if how.startswith("bom+"):  # a UTF-8 BOM, then a code page (a CRM's export "with BOM for Excel")
        return codecs.BOM_UTF8 + written(text, how.removeprefix("bom+"))
    return text.encode(how)


def writable(text: str, how: str) -> str:
    """KOI8-R and CP866 have no « », KOI8-R no "№": their users type none."""
    if how == "koi8_r":
        text = text.replace("№", "N")
    return text.replace("«", "").replace("»", "") if how in ("koi8_r", "cp866") else text


def csv_text(language: str, rows: int) -> str:
    lines = [HEADER[language], *(";".join(row) for row in ROWS[language][:rows])]
    return "\r\n".join(lines) + "\r\n"


def import_through_the_pages(person, content: bytes, capture, columns: list[str]) -> tuple[ContactImport, str]:
    """Upload, read the mapping page, map the columns to `columns` and
    import; the import and the mapping page's HTML."""
    file = SimpleUploadedFile("contacts.csv", content, "text/csv")
    response = person.client.post(reverse("contacts:import_upload"), {"file": file})
    assert response.status_code == 302, response.context["form"].errors
    page = person.client.get(response["Location"])
    data = {f"col_{i}": target for i, target in enumerate(columns)}
    with capture(execute=True):
        person.client.post(response["Location"], {**data, "contact_list": "", "new_list_name": "Imported"})
    imp = ContactImport.objects.get()
    assert imp.status == ContactImport.Status.DONE, imp.error
    return imp, page.content.decode()


def stored(tenant) -> dict[str, tuple[str, str, dict]]:
    return {c.email: (c.first_name, c.last_name, c.fields) for c in Contact.objects.filter(tenant=tenant)}


def expected(language: str, rows: int, key: str) -> dict[str, tuple[str, str, dict]]:
    return {email: (first, last, {key: value}) for email, first, last, value in ROWS[language][:rows]}


CASES = [
    ("ru", "cp1251", "cp1251"),
    ("ru", "koi8_r", "koi8_r"),
    ("ru", "cp866", "cp866"),
    ("ru", "mac_cyrillic", "mac_cyrillic"),
    ("uk", "cp1251", "cp1251"),
    ("uk", "koi8_u", "koi8_u"),
    ("uk", "mac_cyrillic", "mac_cyrillic"),
    ("vi", "cp1258", "cp1258"),
    ("vi", "utf-8-nfd", "utf-8"),
    ("ru", "utf-8-bom", "utf-8"),
    ("vi", "utf-8-bom", "utf-8"),
    ("ru", "utf-16-le", "utf-8"),  # Excel's "Unicode Text" without its BOM
    ("vi", "utf-16-be", "utf-8"),
    # The BOM is no evidence: the letters after it are in a code page.
    ("ru", "bom+cp1251", "cp1251"),
    ("uk", "bom+koi8_u", "koi8_u"),
    ("vi", "bom+cp1258", "cp1258"),
]


@pytest.mark.parametrize("rows", [1, 2, 4])
@pytest.mark.parametrize(("language", "how", "encoding"), CASES)
def test_a_file_is_read_in_the_encoding_it_was_written_in(
    alice, tenant_a, django_capture_on_commit_callbacks, language, how, encoding, rows
):
    text = writable(csv_text(language, rows), how)
    imp, page = import_through_the_pages(
        alice, written(text, how), django_capture_on_commit_callbacks, ["email", "first_name", "last_name", "new"]
    )
    assert imp.encoding == encoding
    assert f"{SHOWN[encoding]}. " in page
    key = {"ru": "kompaniya", "uk": "misto", "vi": "cong_ty"}[language]
    want = {email: (first, last, {k: writable(v, how) for k, v in values.items()})
            for email, (first, last, values) in expected(language, rows, key).items()}  # fmt: skip
    assert stored(tenant_a) == want
    assert imp.header == [unicodedata.normalize("NFC", name) for name in HEADER[language].split(";")]


@pytest.mark.parametrize("codec", ["cp1251", "koi8_r", "cp866", "mac_cyrillic"])
def test_ascii_and_one_cyrillic_word(alice, tenant_a, django_capture_on_commit_callbacks, codec):
    text = "email,name,city\r\njohn.smith@example.com,John Smith,Москва\r\n"
    imp, _ = import_through_the_pages(
        alice, text.encode(codec), django_capture_on_commit_callbacks, ["email", "first_name", "new"]
    )
    assert imp.encoding == codec
    assert stored(tenant_a) == {"john.smith@example.com": ("John Smith", "", {"city": "Москва"})}


@pytest.mark.parametrize(
    ("name", "city"),
    [
        pytest.param("Віктор", "Рівне", id="Viktor"),  # starts C2 B3 in Windows-1251, UTF-8's "³"
        pytest.param("Лідія", "Ніжин", id="Lidiya"),  # "Лі" CB B3, UTF-8's "˳"
        pytest.param("Пётр", "Тверь", id="Pyotr"),  # "Пё" CF B8, UTF-8's "ϸ"
        pytest.param("ФЁДОР", "Ёлки", id="FYODOR"),  # "ФЁ" D4 A8, UTF-8's "Ԩ"
    ],
)
def test_a_windows_1251_word_whose_first_two_letters_are_a_utf8_character(
    alice, tenant_a, django_capture_on_commit_callbacks, name, city
):
    """A capital and a Ukrainian i, "ё" or "Ё" after it are two bytes that
    make one valid UTF-8 character: the file was read as UTF-8 with a
    damaged row, every row rejected. The first line with non-ASCII bytes is
    the evidence, and it is no UTF-8."""
    text = f"email,name,city\r\nv@example.ua,{name},{city}\r\no@example.ua,Олена,Київ\r\n"
    imp, _ = import_through_the_pages(
        alice, text.encode("cp1251"), django_capture_on_commit_callbacks, ["email", "first_name", "new"]
    )
    assert imp.encoding == "cp1251"
    assert stored(tenant_a) == {
        "v@example.ua": (name, "", {"city": city}),
        "o@example.ua": ("Олена", "", {"city": "Київ"}),
    }


@pytest.mark.parametrize("codec", ["cp1251", "koi8_r", "cp866", "mac_cyrillic"])
def test_an_international_address_in_a_code_page(alice, tenant_a, django_capture_on_commit_callbacks, codec):
    """Excel on a Russian Windows saves "CSV" in Windows-1251 today, and an
    address of a .рф domain is one the platform mails: its letters are words
    of the file's language, not damage. (A short file holding one was
    refused, naming a line that reads right.)"""
    text = "email;name\r\ninfo@компания.рф;Иван Петров\r\nольга@пример.рф;Ольга\r\n"
    imp, _ = import_through_the_pages(
        alice, text.encode(codec), django_capture_on_commit_callbacks, ["email", "first_name"]
    )
    assert imp.encoding == codec
    assert stored(tenant_a) == {
        "info@компания.рф": ("Иван Петров", "", {}),
        "ольга@пример.рф": ("Ольга", "", {}),
    }


@pytest.mark.parametrize("codec", ["cp1251", "koi8_r", "cp866", "mac_cyrillic"])
def test_latin_and_cyrillic_mixed_in_names_and_companies(alice, tenant_a, django_capture_on_commit_callbacks, codec):
    """Latin words next to Russian ones, and a Russian word typed with a
    Latin "a" (the keys look alike), are no reason to doubt the file."""
    rows = [
        ("ivan@example.ru", "Ивaн Petrov", "ООО Ромашка Ltd"),
        ("ann@example.com", "Ann Lee", "Globex Россия"),
        ("olga@example.ru", "Ольга", "IBM"),
    ]
    text = "email;name;company\r\n" + "".join(";".join(row) + "\r\n" for row in rows)
    imp, _ = import_through_the_pages(
        alice, text.encode(codec), django_capture_on_commit_callbacks, ["email", "first_name", "new"]
    )
    assert imp.encoding == codec
    assert stored(tenant_a) == {email: (name, "", {"company": company}) for email, name, company in rows}


@pytest.mark.parametrize(
    ("codec", "company", "contract"),
    [
        ("cp1251", "«Acme»", "№ 15"),
        ("mac_cyrillic", "«Acme»", "№ 15"),
        ("cp866", "Acme", "№ 15"),  # CP866 has "№" but no « »
        ("cp1251", "Acme", "№15"),
    ],
)
def test_a_file_whose_only_non_ascii_are_quotes_and_the_number_sign(
    alice, tenant_a, django_capture_on_commit_callbacks, codec, company, contract
):
    text = f"email;company;contract\r\nsales@acme.com;{company};{contract}\r\n"
    imp, _ = import_through_the_pages(
        alice, text.encode(codec), django_capture_on_commit_callbacks, ["email", "new", "new"]
    )
    assert imp.encoding == codec
    assert stored(tenant_a) == {"sales@acme.com": ("", "", {"company": company, "contract": contract})}


@pytest.mark.parametrize(
    ("text", "how", "encoding"),
    [
        ("email,ho_ten\r\nanh.do@example.vn,Đỗ\r\n", "cp1258", "cp1258"),  # every byte read as Cyrillic is a letter
        ("email,ho_ten\r\nlan@example.vn,Lê Thị Lan\r\n", "cp1258", "cp1258"),
        ("email,name\r\nivan@example.ru,Иван\r\n", "cp1251", "cp1251"),  # "Èâàí" in Windows-1258
        ("email,name\r\nivan@example.ru,Иван\r\n", "koi8_r", "koi8_r"),
        ("email,name\r\nivan@example.ru,Иван\r\n", "mac_cyrillic", "mac_cyrillic"),
    ],
)
def test_a_short_vietnamese_file_is_never_read_as_cyrillic_nor_the_other_way(
    alice, tenant_a, django_capture_on_commit_callbacks, text, how, encoding
):
    imp, _ = import_through_the_pages(alice, written(text, how), django_capture_on_commit_callbacks, ["email", "new"])
    assert imp.encoding == encoding
    (value,) = Contact.objects.get(tenant=tenant_a).fields.values()
    assert value == text.split(",")[-1].strip()


def test_a_letter_and_its_tone_mark_on_both_sides_of_a_megabyte(alice, tenant_a, django_capture_on_commit_callbacks):
    """The detection reads a megabyte at a time: Windows-1258's "ễ" of
    "Nguyễn" ("ê" and the combining tilde) split by its edge left a tilde
    alone at the start of the next one, odd in Vietnamese, and the file was
    refused. A word at the edge is weighed whole."""
    from mailing.imports.limits import CHUNK_BYTES

    last = cp1258("ho@example.vn,Nguyễn Hoàng\r\n")
    edge = last.index(cp1258("ễ")) + 1  # after the "ê", before the tilde
    head = b"email,name\r\n"
    row = b"an@example.vn,Nguyen Van An\r\n"
    rows = (CHUNK_BYTES - edge - len(head) - 17) // len(row)  # room for the pad row's 17 bytes
    pad = b"pad@example.vn," + b"x" * (CHUNK_BYTES - edge - len(head) - rows * len(row) - 17) + b"\r\n"
    content = head + row * rows + pad + last
    assert content[CHUNK_BYTES - 1 : CHUNK_BYTES + 1] == cp1258("ễ")
    imp, _ = import_through_the_pages(alice, content, django_capture_on_commit_callbacks, ["email", "first_name"])
    assert imp.encoding == "cp1258"
    assert Contact.objects.get(tenant=tenant_a, email="ho@example.vn").first_name == "Nguyễn Hoàng"


def test_a_first_line_of_letters_cut_by_the_edge_of_a_megabyte(alice, tenant_a, django_capture_on_commit_callbacks):
    """The UTF-8 check reads a megabyte at a time too: Windows-1251's
    "Віктор", whose first two letters are one UTF-8 character, cut after
    them by the end of the first megabyte, settled UTF-8 before the rest of
    its line was read."""
    from mailing.imports.limits import CHUNK_BYTES

    last = "v@example.ua,Віктор\r\n".encode("cp1251")
    edge = last.index("Ві".encode("cp1251")) + 2
    head = b"email,name\r\n"
    row = b"an@example.ua,Ann\r\n"
    rows = (CHUNK_BYTES - edge - len(head) - 17) // len(row)  # room for the pad row's 17 bytes
    pad = b"pad@example.ua," + b"x" * (CHUNK_BYTES - edge - len(head) - rows * len(row) - 17) + b"\r\n"
    content = head + row * rows + pad + last
    assert content[CHUNK_BYTES - 2 : CHUNK_BYTES + 1] == "Вік".encode("cp1251")
    imp, _ = import_through_the_pages(alice, content, django_capture_on_commit_callbacks, ["email", "first_name"])
    assert imp.encoding == "cp1251"
    assert Contact.objects.get(tenant=tenant_a, email="v@example.ua").first_name == "Віктор"


# A file put together from two exports: the rows of a code page, and one
# row a later export wrote in UTF-8. Read in the code page, that row's names
# were stored garbled (Windows-1251 reads the UTF-8 of "Иван" as eight
# letters and a control character) and nothing said so.
MIXED = [
    ("ru", "cp1251", ("late@example.ru", "Дмитрий", "Ёлкин", "ООО «Север», Мурманск")),
    ("ru", "mac_cyrillic", ("late@example.ru", "Дмитрий", "Ёлкин", "ООО «Север», Мурманск")),
    ("uk", "cp1251", ("late@example.ua", "Марʼяна", "Ґонта", "ТОВ «Ґонта™», Ужгород, 100 ₴")),
    ("vi", "cp1258", ("late@example.vn", "Thị Mỹ", "Phạm", "Hải Phòng")),
]


@pytest.mark.parametrize(("language", "codec", "late"), MIXED, ids=[f"{m[0]}-{m[1]}" for m in MIXED])
def test_a_utf8_row_among_code_page_rows_is_read_as_utf8(
    alice, tenant_a, django_capture_on_commit_callbacks, language, codec, late
):
    write = cp1258 if codec == "cp1258" else (lambda text: text.encode(codec))
    rows = ROWS[language] * 3  # a dozen rows: the code page is beyond doubt
    rows = [(f"{n}.{email}", first, last, value) for n, (email, first, last, value) in enumerate(rows)]
    lines = [write(HEADER[language] + "\r\n"), *(write(";".join(row) + "\r\n") for row in rows[:7])]
    lines += [(";".join(late) + "\r\n").encode("utf-8"), *(write(";".join(row) + "\r\n") for row in rows[7:])]
    imp, _ = import_through_the_pages(
        alice, b"".join(lines), django_capture_on_commit_callbacks, ["email", "first_name", "last_name", "new"]
    )
    assert imp.encoding == codec
    got = stored(tenant_a)
    [key] = got[rows[0][0]][2]  # the new field's key, as the import names it
    nfc = partial(unicodedata.normalize, "NFC")
    want = {email: (nfc(first), nfc(last), {key: nfc(value)}) for email, first, last, value in [*rows, late]}
    assert got[late[0]] == want[late[0]]
    assert got == want


def test_a_code_page_row_that_happens_to_be_valid_utf8_stays_in_its_code_page(
    alice, tenant_a, django_capture_on_commit_callbacks
):
    # "ФЁ" is D4 A8 in Windows-1251, which UTF-8 reads as "Ԩ", a letter of
    # no language our users write: the row is the file's code page.
    rows = [(f"{n}.{email}", first, last, value) for n, (email, first, last, value) in enumerate(ROWS["ru"] * 3)]
    text = HEADER["ru"] + "\r\n" + "".join(";".join(row) + "\r\n" for row in rows) + "fe@example.ru;ФЁ;Ли;Ош\r\n"
    imp, _ = import_through_the_pages(
        alice, text.encode("cp1251"), django_capture_on_commit_callbacks, ["email", "first_name", "last_name", "new"]
    )
    assert imp.encoding == "cp1251"
    assert stored(tenant_a)["fe@example.ru"][:2] == ("ФЁ", "Ли")


def test_the_preview_reads_a_utf8_row_among_code_page_rows_as_the_import_will(alice):
    rows = [f"{n}.{email};{first};{last};{value}\r\n" for n, (email, first, last, value) in enumerate(ROWS["ru"] * 3)]
    content = (HEADER["ru"] + "\r\n" + "".join(rows[:4])).encode("cp1251")
    content += "late@example.ru;Дмитрий;Ёлкин;Мурманск\r\n".encode() + "".join(rows[4:]).encode("cp1251")
    file = SimpleUploadedFile("contacts.csv", content, "text/csv")
    response = alice.client.post(reverse("contacts:import_upload"), {"file": file})
    page = alice.client.get(response["Location"]).content.decode()
    assert "Дмитрий" in page and "Ёлкин" in page and "Сергей" in page


HALVES = [("ru", "cp1251"), ("ru", "koi8_r"), ("uk", "cp1251"), ("uk", "mac_cyrillic"), ("vi", "cp1258")]


@pytest.mark.parametrize("joined", ["rows", "with its BOM and header"])
@pytest.mark.parametrize(("language", "codec"), HALVES, ids=[f"{h[0]}-{h[1]}" for h in HALVES])
def test_a_file_of_two_exports_of_a_dozen_rows_each_is_read_in_both(
    alice, tenant_a, django_capture_on_commit_callbacks, language, codec, joined
):
    # The later export as long as the first, its names the usual ones
    # ("Иванов", "ИП": UTF-8's "И" is D0 98, and 0x98 is no character of
    # Windows-1251; "Đà Nẵng": UTF-8's "Đ" is C4 90, 0x90 none of
    # Windows-1258's). Weighed as the code page's letters, its rows were
    # the file's odd words, and the upload was refused. Excel's "CSV UTF-8"
    # (and most exports "for Excel") start with a BOM: the files put
    # together byte for byte ("copy /b old.csv+new.csv"), the later one's
    # header line starts with it, and that line was taken for the code
    # page's too.
    def rows(prefix: str) -> list[tuple[str, ...]]:
        return [(f"{prefix}{n}.{e}", f, la, writable(v, codec)) for n, (e, f, la, v) in enumerate(ROWS[language] * 3)]

    early, late = rows("a"), rows("b")
    content = written(HEADER[language] + "\r\n" + "".join(";".join(row) + "\r\n" for row in early), codec)
    later = "".join(";".join(row) + "\r\n" for row in late)
    bom = joined != "rows"
    content += written(HEADER[language] + "\r\n" + later, "utf-8-bom") if bom else later.encode()
    imp, _ = import_through_the_pages(
        alice, content, django_capture_on_commit_callbacks, ["email", "first_name", "last_name", "new"]
    )
    assert imp.encoding == codec
    got = stored(tenant_a)
    [key] = got[early[0][0]][2]
    nfc = partial(unicodedata.normalize, "NFC")
    assert got == {email: (nfc(first), nfc(last), {key: nfc(value)}) for email, first, last, value in early + late}
    # The later header, read as UTF-8, is a row with no address.
    assert [r.raw for r in imp.rejections.all()] == ([HEADER[language]] if bom else [])


def test_the_preview_takes_a_line_for_utf8_as_the_import_does_a_lone_cr_inside(
    alice, tenant_a, django_capture_on_commit_callbacks
):
    # The runner reads a line to its "\n": this UTF-8 row holds "✓", none of
    # our users' letters, so the whole line is Windows-1251's. The preview
    # split it at the lone CR inside the quoted company too, and showed the
    # names before it as UTF-8: right letters, where the import stores others.
    rows = "".join(f"{n}.{e};{f};{la};{v}\r\n" for n, (e, f, la, v) in enumerate(ROWS["ru"] * 3)).encode("cp1251")
    late = 'late@example.ru;Дмитрий;Ёлкин;"Мурманск\rAcme ✓"\r\n'.encode()
    content = (HEADER["ru"] + "\r\n").encode("cp1251") + late + rows
    imp, page = import_through_the_pages(
        alice, content, django_capture_on_commit_callbacks, ["email", "first_name", "last_name", "new"]
    )
    assert imp.encoding == "cp1251"
    first, last, _ = stored(tenant_a)["late@example.ru"]
    assert (first, last) == tuple(late.decode("cp1251").split(";")[1:3])
    assert f'<td class="break">{first}</td>' in page and "Дмитрий" not in page


@pytest.mark.parametrize("line", [b"\n", "И\n".encode("cp1251")], ids=["empty", "one-letter"])
def test_the_utf8_lines_are_found_without_a_step_a_line(monkeypatch, line):
    # A Windows-1251 header, then 3 MB of empty lines: the detection and
    # Read again split each megabyte into its lines and tested each one, a
    # million a megabyte (50 MB of them held the upload for 6.6 s and 106 MB,
    # Read again for 8 s, against 0.8 s and 0.08 s before; 20 MB of "И\n" in
    # Windows-1251, 6 s each).
    content = "Email;Имя\r\n".encode("cp1251") + line * (3 * 2**20 // len(line))
    looked_at = []
    utf8_line = code_pages.utf8_line
    monkeypatch.setattr(code_pages, "utf8_line", lambda raw: looked_at.append(raw) or utf8_line(raw))
    tracemalloc.start()
    try:
        assert code_pages.legacy_encoding(io.BytesIO(content), chunk_bytes=2**20) == "cp1251"
        assert detection.unreadable_byte(io.BytesIO(content), "cp1251") is None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(looked_at) <= 2  # the header's line at most, once in each
    assert peak < 16 * 2**20


def calls_made(work: Callable[[], object]) -> int:
    """How many functions, Python's and C's, `work` called: a bound on its
    steps that a slow machine does not break."""
    calls = 0

    def count(frame: object, event: str, arg: object) -> None:
        nonlocal calls
        calls += event in ("call", "c_call")

    sys.setprofile(count)
    try:
        work()
    finally:
        sys.setprofile(None)
    return calls


@pytest.mark.parametrize(
    "line", ["Ж\n", "Иванов Иван Петрович;ivan.ivanov@example.ru;Москва\r\n"], ids=["one-letter", "contact"]
)
def test_the_utf8_lines_after_a_code_page_line_are_read_a_run_at_a_time(line):
    # A Windows-1251 header, then 3 MB of lines a later export wrote in
    # UTF-8: the detection and Read again took each UTF-8 line in Python (20
    # MB of "Ж" lines held the upload 5.5 s against 0.27 s before the UTF-8
    # lines were looked for; 23 MB of contacts 1.0 s against 0.1 s).
    content = "Email;Имя\r\n".encode("cp1251") + line.encode() * (3 * 2**20 // len(line.encode()))
    assert calls_made(lambda: code_pages.legacy_encoding(io.BytesIO(content), chunk_bytes=2**20)) < 2000
    assert calls_made(lambda: detection.unreadable_byte(io.BytesIO(content), "cp1251")) < 2000
    assert code_pages.legacy_encoding(io.BytesIO(content), chunk_bytes=2**20) == "cp1251"


@pytest.mark.parametrize("damaged", [0, 5, -1], ids=["first", "middle", "last"])
def test_a_utf8_file_with_a_damaged_row_is_utf8(alice, tenant_a, django_capture_on_commit_callbacks, damaged):
    # "Ёлкин" cut after the lead byte of its "Ё" (0xD0, a Windows-1251 letter):
    # where that row was the first with letters, the UTF-8 rows of our
    # users' letters were no evidence, and the damaged one named a code page
    # (Windows-1251, or 1258, KOI8-R, Mac Cyrillic), or, with a row of emoji
    # or Chinese among them, the file was refused. It is UTF-8, that row
    # rejected.
    rows = [f"{n}.{e};{f};{la};{v}" for n, (e, f, la, v) in enumerate(ROWS["ru"] * 3)]
    rows[3:3] = ["emoji@example.ru;Анна 😀;Ли;Омск", "zh@example.cn;小龙;李;北京"]
    lines = [(row + "\r\n").encode() for row in ["email;name;surname;city", *rows]]
    bad = ("cut@example.ru;Ёлкин;Ли;Тула\r\n".encode()).replace("Ё".encode(), b"\xd0", 1)
    lines.insert(len(lines) if damaged == -1 else 1 + damaged, bad)
    imp, _ = import_through_the_pages(
        alice, b"".join(lines), django_capture_on_commit_callbacks, ["email", "first_name", "last_name", "new"]
    )
    assert imp.encoding == "utf-8"
    got = stored(tenant_a)
    assert got["emoji@example.ru"][:2] == ("Анна 😀", "Ли") and got["zh@example.cn"][:2] == ("小龙", "李")
    assert "cut@example.ru" not in got and len(got) == len(rows)
    assert imp.rejections.count() == 1
