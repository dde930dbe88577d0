"""CSV import of contacts.

The upload is stored under IMPORTS_DIR with a random name and inspected
(encoding, delimiter, header row); the user maps the columns; a Celery task
then streams the file in batches. Each batch is one transaction, so a row is
imported whole or not at all, and every bad row becomes an ImportRejection
with the line it starts on (the header is line 1).

Hostile files are bounded: the file size, the length of a physical line, of
a field and of a row, and the number of columns. Lines are read with a
length limit and decoded one by one, which gives the byte offset of an
invalid byte and keeps memory flat however large the file is."""

import codecs
import csv
import io
import logging
import os
import re
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import Sum
from django.template.defaultfilters import filesizeformat
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from accounts.models import Tenant, User

from . import contacts, import_encodings
from .models import ContactImport, ContactList

logger = logging.getLogger(__name__)

Status = ContactImport.Status

MAX_COLUMNS = 200
MAX_FIELD_CHARS = 100 * 1024
MAX_LINE_BYTES = 100 * 1024
MAX_ROW_BYTES = 1024 * 1024
MAX_HEADER_CELL = 200
MAX_RAW_CHARS = 2000  # of a rejected row, kept for the report
SAMPLE_BYTES = 64 * 1024
CHUNK_BYTES = 1024 * 1024
BATCH_ROWS = 1000
DELIMITERS = ",;\t"
STANDARD_TARGETS = ("email", "first_name", "last_name")
FIELD_PREFIX = "field:"
# Imports whose file is still on the disk.
PENDING = (ContactImport.Status.UPLOADED, ContactImport.Status.QUEUED, ContactImport.Status.RUNNING)
# An upload nobody maps in this time is removed, file and all.
UNMAPPED_MAX_AGE = timedelta(hours=1)


class ImportFailed(Exception):
    """The whole file cannot be imported; the message says why."""


def max_bytes() -> int:
    return settings.IMPORT_MAX_BYTES


def imports_dir() -> Path:
    return Path(settings.IMPORTS_DIR)


def size_label() -> str:
    return filesizeformat(max_bytes())


# ---------- Upload and inspection ----------


@dataclass(frozen=True)
class FileFacts:
    encoding: str
    delimiter: str
    header: list[str]


def import_upload(*, tenant: Tenant, by: User | None, upload: UploadedFile) -> ContactImport:
    """Store and inspect an uploaded CSV; raises ValidationError with a
    message for the user when it cannot be imported, or when the tenant
    already has as many uploads waiting, or bytes pending, as it may."""
    if upload.size is not None and upload.size > max_bytes():
        raise ValidationError(_("The file is larger than %(size_label)s.") % {"size_label": size_label()})
    _check_room(tenant, upload.size or 0)  # early, before writing the file
    path = _store(upload)
    try:
        facts = inspect_file(path, encoding=_utf16_to_utf8(path))
        with transaction.atomic():
            # Again under the tenant's row lock: two uploads at once cannot
            # both take the last place.
            Tenant.objects.select_for_update().filter(pk=tenant.pk).first()
            _check_room(tenant, path.stat().st_size)
            return ContactImport.objects.create(
                tenant=tenant,
                created_by=by,
                file_name=Path(upload.name or "contacts.csv").name[:255],  # shown only; never part of a path
                file_path=str(path),
                file_size=path.stat().st_size,
                encoding=facts.encoding,
                delimiter=facts.delimiter,
                header=facts.header,
            )
    except ValidationError:
        path.unlink(missing_ok=True)
        raise


def _check_room(tenant: Tenant, size: int) -> None:
    """A member could otherwise park any number of 50 MB files on the disk
    by never mapping them."""
    pending = ContactImport.objects.filter(tenant=tenant, status__in=PENDING)
    waiting = pending.filter(status=Status.UPLOADED).count()
    if waiting >= settings.IMPORT_MAX_WAITING:
        raise ValidationError(
            ngettext(
                "%(waiting)s uploaded file is waiting for its columns to be mapped. Map or discard it first "
                "(Contacts, Recent imports); a file left unmapped is removed after an hour.",
                "%(waiting)s uploaded files are waiting for their columns to be mapped. Map or discard one of "
                "them first (Contacts, Recent imports); a file left unmapped is removed after an hour.",
                waiting,
            )
            % {"waiting": waiting}
        )
    held = pending.aggregate(total=Sum("file_size"))["total"] or 0
    if held + size > settings.IMPORT_MAX_PENDING_BYTES:
        raise ValidationError(
            _(
                "Your files waiting to be imported already take %(filesizeformat)s, "
                "and together they may take %(filesizeformat2)s. Wait for an import to "
                "finish, or discard a file that waits for its column mapping."
            )
            % {
                "filesizeformat": filesizeformat(held),
                "filesizeformat2": filesizeformat(settings.IMPORT_MAX_PENDING_BYTES),
            }
        )


def _store(upload: UploadedFile) -> Path:
    directory = imports_dir()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / f"{secrets.token_hex(16)}.csv"
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        for chunk in upload.chunks():
            written += len(chunk)
            if written > max_bytes():
                break
            out.write(chunk)
    if written > max_bytes() or written == 0:
        path.unlink(missing_ok=True)
        raise ValidationError(_("The file is empty.") if written == 0 else _("The file is too large."))
    return path


def inspect_file(path: Path, encoding: str | None = None) -> FileFacts:
    with path.open("rb") as f:
        encoding = encoding or _detect_encoding(f)
        f.seek(0)
        sample = f.read(SAMPLE_BYTES)
        whole = not f.read(1)
    text = _decode_sample(sample, encoding, whole=whole)
    if not text.strip():
        raise ValidationError(_("The file is empty."))
    if _is_markup(text):
        raise ValidationError(
            _(
                "This is a web page (HTML) or an XML file, not a CSV file. Open it in Excel "
                "and choose Save As → “CSV UTF-8”."
            )
        )
    if "\r" in text and "\n" not in text:
        raise ValidationError(
            _(
                "The lines of this file end with CR only (the old Mac format). Save it "
                "as “CSV UTF-8” and upload it again."
            )
        )
    if hint := SEP_HINT.match(text):
        delimiter, text = hint.group(1), text[hint.end() :]
    else:
        delimiter = None
    _refuse_title_line(text)
    delimiter = delimiter or _sniff_delimiter(text)
    # The first line did not fit in the sample: what was read is part of it.
    cut = not whole and b"\n" not in sample
    header = _read_header(text, delimiter, whole=whole, cut=cut)
    return FileFacts(encoding=encoding, delimiter=delimiter, header=header)


# Excel's separator line above the header ("sep=;"), which exporters made
# for Excel write: it names the delimiter, and the header is the next line.
SEP_HINT = re.compile(r"sep=([,;\t])[ \r]*(?:\n|$)", re.IGNORECASE)


def skip_header(reader: "csv._reader") -> list[str] | None:
    """The header row's cells, read past the separator line if there is one
    (read with its own delimiter, the line is the two cells "sep=" and "")."""
    cells = next(reader, None)
    if cells is not None and len(cells) == 2 and cells[0].lower() == "sep=" and not cells[1].strip():
        cells = next(reader, None)
    return cells


MARKUP_STARTS = ("<!doctype", "<html", "<?xml", "<meta", "<table", "<head", "<body", "<style")


def _is_markup(text: str) -> bool:
    """Bitrix24's and 1C's "export to Excel" write an HTML table (1C also
    XML Spreadsheet 2003) under the name .xls; renamed .csv, it read as
    two columns of tags split at the semicolon of "text/html;charset"."""
    return text.lstrip().lower().startswith(MARKUP_STARTS)


PREVIEW_ROWS = 5
PREVIEW_CELL = 60


def preview_rows(imp: ContactImport, count: int = PREVIEW_ROWS) -> list[list[str]]:
    """The first rows under the header as they will be read (encoding and
    delimiter included), one cell per column, for the mapping step: wrong
    letters show a wrong encoding before anything is imported."""
    try:
        with Path(imp.file_path).open("rb") as f:
            sample = f.read(SAMPLE_BYTES)
            whole = not f.read(1)
    except OSError:
        return []
    text = _decode_sample(sample, imp.encoding, whole=whole)
    reader = csv.reader(io.StringIO(text), delimiter=imp.delimiter)
    width = len(imp.header)
    rows: list[list[str]] = []
    try:
        skip_header(reader)
        for row in reader:
            if any(cell.strip() for cell in row):
                cells = [_shorten(" ".join(unicodedata.normalize("NFC", cell).split())) for cell in row[:width]]
                rows.append(cells + [""] * (width - len(cells)))
            if len(rows) == count:
                break
    except csv.Error:
        pass  # what was read before the bad line is shown
    return rows


def _shorten(cell: str) -> str:
    return cell if len(cell) <= PREVIEW_CELL else cell[: PREVIEW_CELL - 1] + "…"


def _detect_encoding(f: BinaryIO) -> str:
    """UTF-8 (with or without a BOM) when the file's first non-ASCII bytes
    are valid UTF-8, else the 8-bit encoding whose reading makes the most
    likely text (import_encodings). A UTF-8 file with a stray bad byte later
    on stays UTF-8: that row is rejected, the rest is not garbled."""
    head = f.read(4)
    if head.startswith(b"PK\x03\x04") or head.startswith(b"\xd0\xcf\x11\xe0"):
        raise ValidationError(_("This is an Excel workbook, not a CSV file. In Excel choose Save As → “CSV UTF-8”."))
    f.seek(0)
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    while chunk := f.read(CHUNK_BYTES):
        try:
            text = decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            if not exc.object[: exc.start].isascii():
                return "utf-8"
            return import_encodings.legacy_encoding(f, chunk_bytes=CHUNK_BYTES)
        import_encodings.refuse_binary(chunk, offset)
        if not text.isascii():
            return "utf-8"
        offset += len(chunk)
    return "utf-8"


def _utf16_to_utf8(path: Path) -> str | None:
    """Excel's "Unicode Text" (and other tools' UTF-16, with a BOM or not)
    is rewritten in UTF-8, chunk by chunk, in place of the upload: the
    runner reads lines by their b"\\n", which UTF-16 splits. A broken
    character stays a byte invalid in UTF-8, so its row alone is rejected.
    Returns "utf-8" when the file was UTF-16."""
    with path.open("rb") as f:
        head = f.read(CHUNK_BYTES)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        codec = "utf-16"  # which reads the BOM and drops it
    elif b"\x00" in head and _looks_like_utf16(head):
        codec = "utf-16-be" if head[0::2].count(0) > head[1::2].count(0) else "utf-16-le"
    else:
        return None
    decoder = codecs.getincrementaldecoder(codec)(errors="surrogatepass")
    converted = path.with_name(f"{secrets.token_hex(16)}.csv")
    fd = os.open(converted, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with path.open("rb") as source, os.fdopen(fd, "wb") as out:
            while chunk := source.read(CHUNK_BYTES):
                out.write(decoder.decode(chunk).encode("utf-8", "surrogatepass"))
            try:
                out.write(decoder.decode(b"", final=True).encode("utf-8", "surrogatepass"))
            except UnicodeDecodeError:
                out.write(b"\xff")  # an odd byte at the end: the last row is rejected
        converted.replace(path)
    finally:
        converted.unlink(missing_ok=True)
    return "utf-8"


def _looks_like_utf16(chunk: bytes) -> bool:
    """UTF-16 without a BOM: the NUL half of every ASCII character (the
    digits, "@", the delimiters) falls on even bytes (big-endian) or odd
    bytes (little-endian) only; a binary file has them anywhere."""
    head = chunk[:4096]
    even, odd = head[0::2].count(0), head[1::2].count(0)
    return max(even, odd) >= len(head) // 8 and min(even, odd) * 10 <= max(even, odd)


def _decode_sample(sample: bytes, encoding: str, *, whole: bool) -> str:
    if not whole:
        sample = sample[: sample.rfind(b"\n") + 1] or sample  # whole lines only
    text = sample.decode(encoding, errors="replace")
    return text.removeprefix("\ufeff")


def _refuse_title_line(text: str) -> None:
    """A title above the header (1C's "Список клиентов") has no delimiter:
    the file would be read as one column named after it. It is refused when
    the next line is split like a header (no "@") and so is the one after."""
    lines = [line for line in text.split("\n", 20)[:20] if line.strip()][:3]
    if len(lines) < 3 or any(d in lines[0] for d in DELIMITERS) or "@" in lines[1]:
        return
    for d in DELIMITERS:
        if d in lines[1] and d in lines[2]:
            raise ValidationError(
                _(
                    "The first line “%(line)s” is not the header row: the lines under it have more "
                    "columns. Delete the lines above the names of the columns and upload the file again."
                )
                % {"line": _shorten(" ".join(lines[0].split()))}
            )


def _sniff_delimiter(text: str) -> str:
    """A header line holding only one of the candidates settles it (column
    names rarely contain delimiters); otherwise csv.Sniffer decides, and the
    most frequent candidate in the header is the last resort."""
    first = text.split("\n", 1)[0]
    counts = {d: first.count(d) for d in DELIMITERS}
    present = [d for d, n in counts.items() if n]
    if len(present) == 1:
        return present[0]
    try:
        return csv.Sniffer().sniff(text[: 16 * 1024], delimiters=DELIMITERS).delimiter
    except csv.Error:
        best = max(counts, key=lambda d: counts[d])
        return best if counts[best] else ","


def _read_header(text: str, delimiter: str, *, whole: bool, cut: bool = False) -> list[str]:
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    try:
        # NFC: Windows-1258 writes most Vietnamese letters as a letter and a combining mark.
        header = [" ".join(unicodedata.normalize("NFC", cell).split()) for cell in next(reader, [])]
    except csv.Error as exc:
        raise ValidationError(_("The header row cannot be read as CSV: %(exc)s") % {"exc": csv_problem(exc)}) from exc
    try:
        has_rows = any(any(cell.strip() for cell in row) for row in reader)
    except csv.Error:
        has_rows = True  # a row that cannot be read: the import rejects it with its line
    if not any(header):
        raise ValidationError(_("The first line must be the header row: the names of the columns."))
    if len(header) > MAX_COLUMNS:
        count = _("at least %(len)s") % {"len": len(header)} if cut else str(len(header))
        raise ValidationError(
            _("The file has %(count)s columns; at most %(MAX_COLUMNS)s are supported.")
            % {"count": count, "MAX_COLUMNS": MAX_COLUMNS}
        )
    if any(len(cell) > MAX_HEADER_CELL for cell in header):
        raise ValidationError(_("The first line does not look like a header row: a column name is very long."))
    if whole and not has_rows:
        raise ValidationError(_("The file has a header row but no contacts."))
    return [cell or f"{_('Column')} {i}" for i, cell in enumerate(header, start=1)]  # named in the uploader's language


def csv_problem(exc: csv.Error) -> str:
    """What the csv module could not read, in the reader's language."""
    if "field larger than field limit" in str(exc):
        return _("A field is longer than %(value)s KB.") % {"value": MAX_FIELD_CHARS // 1024}
    if "new-line character seen in unquoted field" in str(exc):
        return _("A line break (CR) inside a field that is not in quotes.")
    return _("The row cannot be read as CSV: %(exc)s.") % {"exc": exc}


# ---------- Mapping ----------

# Column names that name a standard field, as _header_words writes them:
# lower-case, NFC (a Vietnamese header may come decomposed), punctuation,
# "_" and "-" as spaces ("E-mail:" is "e mail"). What Excel, Google Sheets,
# 1C, Bitrix24, AmoCRM and Vietnamese tools write.
GUESSES = {
    "email": {
        "email", "e mail", "mail", "email address", "e mail address", "email адрес", "e mail адрес",
        "почта", "эл почта", "электронная почта", "адрес электронной почты", "адрес эл почты", "емейл", "имейл",
        "địa chỉ email", "địa chỉ e mail", "thư điện tử", "địa chỉ thư điện tử",
    },
    "first_name": {"first name", "firstname", "given name", "name", "имя", "tên"},
    "last_name": {"last name", "lastname", "surname", "family name", "фамилия", "họ"},
}  # fmt: skip
# Words a CRM puts around a field's name ("Work e-mail" in Bitrix24 and
# AmoCRM, "Personal email"): the name without them is matched too.
QUALIFIERS = {"рабочий", "раб", "личный", "домашний", "основной", "другой", "work", "personal", "home", "primary"}


def _header_words(header: str) -> str:
    text = unicodedata.normalize("NFC", header).lower()
    text = "".join(" " if unicodedata.category(ch)[0] in "PSZ" else ch for ch in text)
    return " ".join(text.split())


def guess_target(header: str, existing_keys: set[str]) -> str:
    """The mapping choice offered first for a column: a standard field or
    an existing custom field whose name matches, else ignore ("")."""
    name = _header_words(header)
    plain = " ".join(word for word in name.split() if word not in QUALIFIERS)
    for target, names in GUESSES.items():
        if name in names or plain in names:
            return target
    key = contacts.field_key(header)
    return f"{FIELD_PREFIX}{key}" if key in existing_keys else ""


def check_mapping(mapping: dict[str, str]) -> None:
    """Exactly one email column; no field filled from two columns."""
    targets = [t for t in mapping.values() if t]
    if targets.count("email") != 1:
        raise ValidationError(_("Map exactly one column to “Email address”."), code="email")
    if doubled := sorted({t for t in targets if targets.count(t) > 1}):
        names = ", ".join(t.removeprefix(FIELD_PREFIX).replace("_", " ") for t in doubled)
        raise ValidationError(
            _("Two columns go into the same field: %(names)s. Pick one.") % {"names": names}, code="doubled"
        )


@transaction.atomic
def import_start(
    *,
    contact_import: ContactImport,
    columns: dict[int, str],
    contact_list: ContactList | None,
    new_list_name: str = "",
) -> ContactImport:
    """Fix the mapping and the target list and queue the import. In
    `columns` a value "new" makes a custom field named after the header."""
    imp = ContactImport.objects.select_for_update().get(pk=contact_import.pk)
    if imp.status != Status.UPLOADED:
        raise ValidationError(_("This import has already started."))
    mapping = {str(i): _resolve_target(imp, i, target) for i, target in columns.items() if 0 <= i < len(imp.header)}
    check_mapping(mapping)
    if contact_list is None:
        try:
            contact_list = contacts.list_create(tenant=imp.tenant, name=new_list_name)
        except ValidationError as exc:
            raise ValidationError({"new_list_name": exc.message_dict.get("name", exc.messages)}) from exc
    elif contact_list.tenant_id != imp.tenant_id:
        raise ValidationError(_("Choose one of your own lists."))
    imp.mapping, imp.contact_list, imp.status = mapping, contact_list, Status.QUEUED
    imp.save(update_fields=["mapping", "contact_list", "status"])
    from . import tasks  # tasks imports the runner, which imports this module

    transaction.on_commit(lambda: tasks.run_contact_import.delay(imp.pk))
    return imp


def _resolve_target(imp: ContactImport, index: int, target: str) -> str:
    if target == "new":
        return FIELD_PREFIX + contacts.custom_field_for_header(tenant=imp.tenant, header=imp.header[index]).key
    if target.startswith(FIELD_PREFIX):
        key = target.removeprefix(FIELD_PREFIX)
        if not imp.tenant.custom_fields.filter(key=key).exists():
            raise ValidationError(_("There is no custom field %(key)s.") % {"key": key})
        return target
    if target and target not in STANDARD_TARGETS:
        raise ValidationError(_("Unknown field “%(target)s”.") % {"target": target})
    return target


def import_discard(*, contact_import: ContactImport) -> None:
    """Drop an upload that was never started."""
    if contact_import.status != Status.UPLOADED:
        raise ValidationError(_("An import that has started cannot be discarded."))
    _remove_file(contact_import)
    contact_import.delete()


def imports_discard_stale(*, older_than: timedelta = UNMAPPED_MAX_AGE) -> int:
    """Uploads nobody mapped (the tab was closed): remove them and their
    files. Beat runs it every 10 minutes."""
    stale = ContactImport.objects.filter(status=Status.UPLOADED, created_at__lt=timezone.now() - older_than)
    count = 0
    for imp in stale.iterator():
        _remove_file(imp)
        imp.delete()
        count += 1
    return count


def _remove_file(imp: ContactImport) -> None:
    path = Path(imp.file_path)
    if path.name and path.resolve().parent == imports_dir().resolve():
        path.unlink(missing_ok=True)
