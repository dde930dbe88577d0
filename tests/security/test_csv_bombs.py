"""Hostile CSV files through the real upload page, the real mapping page and
the real import runner (Celery runs eagerly): a file over the size limit, a
10 MB line, a 10 MB quoted field, 10,000 columns, random bytes, UTF-16
without a BOM (read as such), broken UTF-8 and NUL bytes mid-file, and a half-valid file.
Each one is refused with a clear message next to the file field and nothing
left on disk, or imported with every bad row reported by its line number —
never a crash, and the runner's memory stays flat however large the file."""

import csv
import io
import random
import re
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from mailing.imports import runner as import_runner
from mailing.models import Contact, ContactImport

pytestmark = pytest.mark.django_db

MB = 1024 * 1024
UNEXPECTED = "An unexpected error stopped the import"


@dataclass
class Tally:
    files: int = 0
    largest: int = 0
    crashes: int = 0
    peak_growth: int = 0

    def saw(self, size: int) -> None:
        self.files += 1
        self.largest = max(self.largest, size)


TALLY = Tally()


@pytest.fixture(scope="module", autouse=True)
def _summary() -> Iterator[None]:
    yield
    print(
        f"\ncsv bombs: {TALLY.files} files (largest {TALLY.largest / MB:.1f} MB), {TALLY.crashes} crashes, "
        f"peak memory growth {TALLY.peak_growth / MB:.1f} MB"
    )


@pytest.fixture(autouse=True)
def imports_dir(settings, tmp_path) -> Path:
    settings.IMPORTS_DIR = tmp_path / "imports"
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path / "upload-tmp")
    (tmp_path / "upload-tmp").mkdir()
    return settings.IMPORTS_DIR


def left_on_disk(settings) -> list[Path]:
    """Files an upload left behind: the imports directory and Django's
    temporary upload directory."""
    dirs = [Path(settings.IMPORTS_DIR), Path(settings.FILE_UPLOAD_TEMP_DIR)]
    return [p for d in dirs if d.exists() for p in d.iterdir()]


def upload(person, content: bytes, name: str = "contacts.csv"):
    TALLY.saw(len(content))
    response = person.client.post(
        reverse("contacts:import_upload"), {"file": SimpleUploadedFile(name, content, "text/csv")}
    )
    TALLY.crashes += response.status_code >= 500
    return response


def refused(person, content: bytes, settings) -> str:
    """Uploads a file that must be refused; returns the message shown under
    the file field, after checking that nothing was kept."""
    response = upload(person, content)
    assert response.status_code == 400, response.status_code
    errors = response.context["form"].errors["file"]
    assert len(errors) == 1
    message = errors[0].replace("\xa0", " ")  # filesizeformat's no-break space
    html = response.content.decode()
    shown = re.search(r'<ul class="field-errors" id="id_file_error">\s*<li>(.*?)</li>', html, re.S)
    assert shown, "the error is not shown next to the file field"
    assert not ContactImport.objects.exists() and left_on_disk(settings) == []
    return message


def import_file(person, content: bytes, capture, **mapping: str) -> tuple[ContactImport, int]:
    """Upload, map (the page's own guesses, then `mapping`) and run the
    import; returns it and the peak memory growth of mapping plus run."""
    response = upload(person, content)
    assert response.status_code == 302, response.content.decode()[:2000]
    imp = ContactImport.objects.latest("pk")
    url = reverse("contacts:import_mapping", args=[imp.public_id])
    form = person.client.get(url).context["form"]
    data = {name: form[name].value() or "" for name in form.fields} | mapping
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        with capture(execute=True):
            response = person.client.post(url, data)
        growth = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert response.status_code == 302, response.context["form"].errors
    imp.refresh_from_db()
    TALLY.crashes += UNEXPECTED in imp.error
    TALLY.peak_growth = max(TALLY.peak_growth, growth)
    assert imp.status == ContactImport.Status.DONE, imp.error
    assert not Path(imp.file_path).exists()
    return imp, growth


def warm_up(person, capture) -> None:
    """A first import fills Django's caches (templates, SQL compilers, the
    connection); without it they would count as the runner's memory."""
    import_file(person, b"email\nwarm@example.com\n", capture, new_list_name="Warm-up")


def rejections(imp: ContactImport) -> list[tuple[int, str]]:
    return list(imp.rejections.order_by("line").values_list("line", "reason"))


def emails(tenant) -> set[str]:
    return set(Contact.objects.filter(tenant=tenant).values_list("email", flat=True))


def padded(header: bytes, size: int, row_note: int = 1000, prefix: bytes = b"p") -> tuple[bytes, int]:
    """A valid file of exactly `size` bytes: rows of about `row_note` bytes,
    the last one padded to fit, addresses starting with `prefix`. Returns it
    and its number of rows."""
    rows, i = [header], 0
    total = len(header)
    while total < size - 2 * row_note:
        row = b"%s%06d@example.com,Name%d,%s\n" % (prefix, i, i, b"n" * row_note)
        rows.append(row)
        total += len(row)
        i += 1
    last = b"%s%06d@example.com,Last," % (prefix, i)
    rows.append(last + b"n" * (size - total - len(last) - 1) + b"\n")
    content = b"".join(rows)
    assert len(content) == size
    return content, i + 1


# ---------- Size ----------


def test_a_50_mb_file_over_the_default_limit_is_refused_and_nothing_is_stored(alice, settings):
    assert settings.IMPORT_MAX_BYTES == 50 * MB  # the default of config/settings.py
    content, _ = padded(b"email,name,note\n", settings.IMPORT_MAX_BYTES + 1, row_note=4000)
    message = refused(alice, content, settings)
    assert message == "The file is larger than 50.0 MB."
    # One byte less is taken, stored whole, and can be dropped again.
    response = upload(alice, content[:-2] + b"\n")
    assert response.status_code == 302
    imp = ContactImport.objects.get()
    assert imp.file_size == Path(imp.file_path).stat().st_size == settings.IMPORT_MAX_BYTES
    alice.client.post(reverse("contacts:import_discard", args=[imp.public_id]))
    assert not ContactImport.objects.exists() and left_on_disk(settings) == []


def test_a_file_at_the_limit_imports_with_flat_memory_and_one_byte_more_is_refused(
    alice, tenant_a, settings, monkeypatch, django_capture_on_commit_callbacks
):
    settings.IMPORT_MAX_BYTES = 3 * MB
    monkeypatch.setattr(import_runner, "BATCH_ROWS", 200)
    header = b"email,first_name,note\n"
    over, _ = padded(header, 3 * MB + 1)
    assert refused(alice, over, settings) == "The file is larger than 3.0 MB."
    warm_up(alice, django_capture_on_commit_callbacks)
    # Two files at the limit, and the smaller peak is judged: tracemalloc
    # counts every allocation of the process, and in a full suite one run
    # once measured 0.7 MB over what it measures alone (1.2 MB, against
    # 0.5). A runner holding the file, or its rows across batches, is over
    # the bound in both.
    growths = []
    for prefix in (b"p", b"q"):
        content, rows = padded(header, 3 * MB, prefix=prefix)
        imp, growth = import_file(
            alice, content, django_capture_on_commit_callbacks, new_list_name=f"At the limit {prefix}"
        )
        assert (imp.rows_seen, imp.created, imp.rejected) == (rows, rows, 0)
        growths.append(growth)
    assert min(growths) < len(content) / 3, f"{min(growths) / MB:.1f} MB for a {len(content) / MB:.0f} MB file"


# ---------- One huge line, one huge field ----------


def test_a_10_mb_line_rejects_its_row_and_memory_stays_flat(alice, tenant_a, django_capture_on_commit_callbacks):
    huge = b"huge@example.com," + b"x" * (10 * MB) + b"\n"
    content = b"email,name\nfirst@example.com,First\n" + huge + b"after@example.com,After\n"
    warm_up(alice, django_capture_on_commit_callbacks)
    imp, growth = import_file(alice, content, django_capture_on_commit_callbacks)
    assert rejections(imp) == [(3, "The line is longer than 100 KB.")]
    assert imp.created == 2 and emails(tenant_a) >= {"first@example.com", "after@example.com"}
    assert imp.bytes_read == imp.file_size == len(content)
    # The rest of the line is skipped in 1 MB reads (readline joins its
    # pieces, so about three of them at the peak), never held whole.
    assert growth < 5 * MB, f"{growth / MB:.1f} MB to skip a 10 MB line"


def test_a_file_that_is_one_10_mb_line_is_refused_at_the_upload(alice, settings):
    message = refused(alice, b"email," + b"y" * (10 * MB), settings)
    assert message == "The first line does not look like a header row: a column name is very long."


def test_a_10_mb_quoted_field_is_reported_past_the_csv_field_limit(
    alice, tenant_a, django_capture_on_commit_callbacks, monkeypatch
):
    """csv.reader raises _csv.Error "field larger than field limit (131072)"
    inside the field; the runner reports it on the row's first line, goes
    on, and the rest of the runaway field is rejected row by row. Memory
    is one batch of rejections (each raw row capped), whatever the file."""
    monkeypatch.setattr(import_runner, "BATCH_ROWS", 100)
    field_lines = (10 * MB) // (20 * 1024)  # lines of 20 KB: 512 of them
    huge = b'huge@example.com,"' + (b"z" * (20 * 1024 - 1) + b"\n") * field_lines + b'end"\n'
    content = b"email,name\nfirst@example.com,First\n" + huge + b"after@example.com,After\n"
    warm_up(alice, django_capture_on_commit_callbacks)
    imp, growth = import_file(alice, content, django_capture_on_commit_callbacks)
    found = rejections(imp)
    assert (found[0][0], found[0][1].split(" The row runs")[0]) == (3, "A field is longer than 100 KB.")
    assert all(reason.endswith("longer than 254 characters.") for _, reason in found[1:-1])
    assert found[-1][1].startswith('Invalid email address “end"”')
    assert found[-1][0] == 3 + field_lines  # the `end"` line, its number exact
    assert emails(tenant_a) >= {"first@example.com", "after@example.com"}
    assert imp.created == 2 and imp.rows_seen == 2 + len(found)
    assert growth < 5 * MB, f"{growth / MB:.1f} MB for a 10 MB field"


# ---------- Columns ----------


def test_a_header_of_10000_columns_is_refused_at_the_upload(alice, settings):
    header = ",".join(f"c{i}" for i in range(10_000)).encode()
    message = refused(alice, header + b"\na@example.com\n", settings)
    assert message == "The file has 10000 columns; at most 200 are supported."
    wide = ",".join(f"column number {i}" for i in range(10_000)).encode()  # past the 64 KB sample
    message = refused(alice, wide + b"\na@example.com\n", settings)
    assert re.fullmatch(r"The file has at least \d{4} columns; at most 200 are supported\.", message), message


def test_rows_of_10000_columns_are_rejected_one_by_one(alice, tenant_a, django_capture_on_commit_callbacks):
    wide = b"wide@example.com" + b",x" * 9_999 + b"\n"
    content = b"email,name\nok@example.com,Ok\n" + wide * 3 + b"last@example.com,Last\n"
    imp, _ = import_file(alice, content, django_capture_on_commit_callbacks)
    assert rejections(imp) == [(n, "The row has 10000 columns; at most 200 are supported.") for n in (3, 4, 5)]
    assert emails(tenant_a) == {"ok@example.com", "last@example.com"}


# ---------- Encodings ----------


def test_random_bytes_are_refused_with_a_clear_message(alice, settings):
    noise = random.Random(8).randbytes(256 * 1024)
    position = noise.index(b"\x98")  # the one byte Windows-1251 lacks
    message = refused(alice, noise, settings)
    assert f"neither UTF-8 nor Windows-1251 (byte 0x98 at position {position})" in message, message
    assert "NUL bytes" in refused(alice, noise.replace(b"\x98", b""), settings)


def test_random_bytes_that_decode_as_windows_1251_are_refused_for_their_letters(alice, settings):
    """Without NUL and 0x98 any bytes are valid Windows-1251 (and nearly
    any Windows-1258), but their letters make no words: refused, naming the
    first line that reads as neither."""
    noise = random.Random(8).randbytes(256 * 1024).replace(b"\x98", b"").replace(b"\x00", b"")
    message = refused(alice, noise, settings)
    refusal = r"The letters on line \d+ read as none of the encodings the import knows: UTF-8, UTF-16, Windows-1251"
    assert re.match(refusal, message), message


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("Ж".encode("cp1251") * (5 * MB), id="one 5 MB word"),
        pytest.param(b"\xa0" * (5 * MB), id="5 MB of no-break spaces"),
        pytest.param((b"a" * (MB - 1) + "Ж".encode("cp1251")) * 5, id="a letter after each 1 MB of ASCII letters"),
    ],
)
def test_a_file_made_to_slow_the_encoding_detection_is_answered_at_once(alice, settings, body):
    """The detection weighs words in Python, a character at a time: a file
    of one 5 MB "word", or 5 MB of no-break spaces (skipped one by one, as
    no evidence), or a non-ASCII letter after a megabyte of ASCII letters
    (walked back to its start), held the request for tens of seconds. The
    page answers (whatever it says) in well under a second's work a MB."""
    started = time.perf_counter()
    response = upload(alice, b"email,name\r\n" + body)
    elapsed = time.perf_counter() - started
    assert response.status_code in (302, 400)
    assert elapsed < 3, f"{elapsed:.1f} s to answer a {len(body) / MB:.0f} MB upload"


def test_the_delimiter_guess_reads_a_few_kilobytes_of_a_file_made_to_slow_it(alice, monkeypatch):
    """csv.Sniffer's quote pattern scans ahead from every delimiter and
    quote for their closing pair: 16 KB of ",'x" (which never closes) took
    about a second of the request's CPU, at each upload and each Read again.
    It reads the first 4 KB (whole lines where there are some): a sixteenth
    of the work, and still tens of rows of a real file."""
    seen: list[int] = []
    sniff = csv.Sniffer.sniff

    def counted(self, sample, delimiters=None):
        seen.append(len(sample))
        return sniff(self, sample, delimiters)

    monkeypatch.setattr(csv.Sniffer, "sniff", counted)
    response = upload(alice, b"email,name;note\n" + b",'x" * 20_000)
    assert response.status_code in (302, 400)
    assert seen and max(seen) <= 4096, seen


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_utf16_without_a_bom_is_read_as_utf16(alice, tenant_a, codec, django_capture_on_commit_callbacks):
    content = "email,имя\nann@example.com,Анна\n".encode(codec)
    imp, _ = import_file(alice, content, django_capture_on_commit_callbacks, col_1="first_name")
    assert imp.created == 1 and Contact.objects.get(tenant=tenant_a).first_name == "Анна"


def test_old_mac_line_endings_are_refused_with_the_reason(alice, settings):
    message = refused(alice, b"email,name\ra@example.com,A\rb@example.com,B\r", settings)
    assert message.startswith("The lines of this file end with CR only"), message


def test_a_nul_byte_in_the_first_part_of_a_file_refuses_it(alice, settings):
    message = refused(alice, b"email,name\na@example.com,A\x00nn\nb@example.com,B\n", settings)
    assert "NUL bytes" in message


def test_broken_utf8_and_nul_bytes_mid_file_reject_only_their_rows(alice, tenant_a, django_capture_on_commit_callbacks):
    head = "email,name,note\nanna@example.ru,Анна,\n".encode()  # UTF-8, settled on the first chunk
    filler = b"".join(b"f%05d@example.com,F,%s\n" % (i, b"f" * 1000) for i in range(1_100))  # past 1 MB
    bad = [
        b"ff@example.com,B\xffob\n",  # a byte never valid in UTF-8
        b"cont@example.com,\xc3\x28x\n",  # a lead byte without its continuation
        b"cut@example.com,\xd0\n",  # a character cut at the end of the line
        b"nul@example.com,N\x00ul\n",  # a NUL byte
        b"over@example.com,\xed\xa0\x80\n",  # a UTF-16 surrogate, invalid in UTF-8
    ]
    content = head + filler + b"".join([*bad, b"ok@example.com,\xd0\x9e\xd0\xba\n"])
    imp, _ = import_file(alice, content, django_capture_on_commit_callbacks)
    assert imp.encoding == "utf-8"
    first_bad = 3 + 1_100
    found = rejections(imp)
    assert [line for line, _ in found] == list(range(first_bad, first_bad + len(bad)))
    positions = [content.index(b) + re.search(rb"[\x80-\xff\x00]", b).start() for b in bad]
    expected = [f"Invalid bytes for UTF-8 at byte {p} of the file." for p in positions]
    expected[3] = f"A NUL byte at byte {positions[3]} of the file."
    assert [reason for _, reason in found] == expected
    assert {"anna@example.ru", "ok@example.com", "f01099@example.com"} <= emails(tenant_a)
    assert len(emails(tenant_a)) == 2 + 1_100
    assert Contact.objects.get(email="ok@example.com").first_name == "Ок"


def test_utf8_whose_first_line_of_letters_is_damaged_rejects_that_row_alone(
    alice, tenant_a, django_capture_on_commit_callbacks
):
    """The first line with non-ASCII bytes is the evidence for UTF-8 (a
    code page's "Віктор" starts with a UTF-8 character); where it is
    damaged and no code page reads the file either, its first character
    settles UTF-8, as before, and the line is one damaged row."""
    content = "email,name\nbad@example.ru,Иван".encode() + b"\xff\n" + "ok@example.ru,Ольга Шишкина\n".encode()
    imp, _ = import_file(alice, content, django_capture_on_commit_callbacks)
    assert imp.encoding == "utf-8"
    assert [reason for _, reason in rejections(imp)] == [
        f"Invalid bytes for UTF-8 at byte {content.index(0xFF)} of the file."
    ]
    assert Contact.objects.get(tenant=tenant_a).first_name == "Ольга Шишкина"


# ---------- Half valid ----------


def test_a_half_valid_file_imports_the_good_rows_and_lists_the_bad_ones_by_line(
    alice, tenant_a, django_capture_on_commit_callbacks
):
    lines = [
        b"email;first name;last name",  # 1
        b"good1@example.com;Ann;Lee",  # 2
        b"not-an-address;Bob;",  # 3
        b"",  # 4: blank, skipped
        b";No;Address",  # 5
        b'multi@example.com;"Multi',  # 6: a line break in a name, which goes into subjects
        b'Line";Name',  # 7
        b"x@localhost;Local;",  # 8
        b"good3@example.com;" + b"n" * 101 + b";",  # 9: the name is too long
        b"wide@example.com" + b";w" * 300,  # 10
        b"good4@example.com;Dee;",  # 11
        b'"unclosed@example.com;Eve;',  # 12: a quote that never closes
    ]
    content = b"\n".join(lines) + b"\n"
    imp, _ = import_file(alice, content, django_capture_on_commit_callbacks)
    found = dict(rejections(imp))
    assert sorted(found) == [3, 5, 6, 8, 9, 10, 12]
    assert found[3].startswith("Invalid email address “not-an-address”")
    assert found[5] == "No email address."
    assert found[6].startswith("First name: Remove the line break U+000A (position 6)")
    assert found[9] == "Column “first name”: a name is longer than 100 characters."
    assert found[10] == "The row has 301 columns; at most 200 are supported."
    assert found[12].startswith("Invalid email address")
    assert emails(tenant_a) == {f"good{i}@example.com" for i in (1, 4)}
    assert (imp.rows_seen, imp.created, imp.rejected) == (9, 2, 7)
    download = alice.client.get(reverse("contacts:import_rejections", args=[imp.public_id]))
    rows = list(csv.reader(io.StringIO(b"".join(download.streaming_content).decode().removeprefix("\ufeff"))))
    assert [int(row[0]) for row in rows[1:]] == sorted(found)


def test_a_nul_byte_past_the_first_megabyte_of_a_plain_ascii_file_rejects_only_its_row(
    alice, tenant_a, django_capture_on_commit_callbacks
):
    """The same rule whatever the encoding: NUL bytes refuse a file only at its
    start (a binary file); later they are one damaged row."""
    filler = b"".join(b"f%05d@example.com,F,%s\n" % (i, b"f" * 1000) for i in range(1_100))  # past 1 MB, ASCII
    content = b"email,name,note\n" + filler + b"nul@example.com,N\x00ul,\nok@example.com,Ok,\n"
    imp, _ = import_file(alice, content, django_capture_on_commit_callbacks)
    assert rejections(imp) == [(2 + 1_100, f"A NUL byte at byte {content.index(0)} of the file.")]
    assert {"ok@example.com", "f01099@example.com"} <= emails(tenant_a)
