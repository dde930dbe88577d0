"""Running a contact import: stream the stored file in batches of
BATCH_ROWS rows, one transaction each, merging duplicates and keeping every
bad row as an ImportRejection with the line it starts on."""

import codecs
import csv
import io
import json
import logging
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from celery.exceptions import SoftTimeLimitExceeded
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts import languages
from accounts.models import Tenant, User
from servers.validators import no_control_chars

from .. import contacts, events
from ..models import Contact, ContactImport, ContactList, ImportRejection
from .detection import decode_line
from .inspection import csv_problem, skip_header
from .limits import (
    BATCH_ROWS,
    CHUNK_BYTES,
    FIELD_PREFIX,
    MAX_COLUMNS,
    MAX_FIELD_CHARS,
    MAX_LINE_BYTES,
    MAX_RAW_CHARS,
    MAX_ROW_BYTES,
    imports_dir,
)  # fmt: skip
from .services import _remove_file

logger = logging.getLogger(__name__)

MAX_EMAIL_CHARS = 254  # RFC 5321's limit, the one email_validator applies

Status = ContactImport.Status


class ImportFailed(Exception):
    """The whole file cannot be imported; the message says why."""


@dataclass
class Parsed:
    line: int
    email: str
    first_name: str
    last_name: str
    fields: dict[str, str]


@dataclass
class Mapping:
    email: int
    first_name: int | None
    last_name: int | None
    fields: dict[str, int]
    header: list[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, mapping: dict[str, str], header: list[str]) -> "Mapping":
        by_target = {target: int(index) for index, target in mapping.items() if target}
        fields = {t.removeprefix(FIELD_PREFIX): i for t, i in by_target.items() if t.startswith(FIELD_PREFIX)}
        return cls(by_target["email"], by_target.get("first_name"), by_target.get("last_name"), fields, header)

    def column(self, index: int) -> str:
        """The column's name as the header row gives it (a rejection names it)."""
        return self.header[index] if index < len(self.header) else f"{_('Column')} {index + 1}"


@dataclass
class Counts:
    rows_seen: int = 0
    created: int = 0
    updated: int = 0
    rejected: int = 0


# An import whose worker died (killed, out of memory, the host gone) would
# stay "running" for ever: its runner holds a PostgreSQL advisory lock (two
# int keys: this namespace and the import's id) for as long as it lives, and
# the lock goes with its connection. Beat's sweep takes the lock of each
# running import it can: one it gets has no runner any more.
LOCK_NAMESPACE = 0x1D0
DEAD_RUNNER = gettext_lazy(
    "The worker running this import stopped (a restart or a crash). The rows counted above were imported; "
    "upload the file again to import the rest (contacts already in are updated, not duplicated)."
)
# Without PostgreSQL (development): an import running this long is dead.
SQLITE_DEAD_AFTER = timedelta(hours=2)


@contextmanager
def _runner_lock(import_id: int, *, cursor) -> Iterator[bool]:
    if connection.vendor != "postgresql":
        yield True
        return
    key = [LOCK_NAMESPACE, import_id % 2**31]
    cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", key)
    held = cursor.fetchone()[0]
    try:
        yield held
    finally:
        if held:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", key)


def import_run(*, import_id: int) -> None:
    language = ContactImport.objects.filter(pk=import_id).values_list("tenant__default_language", flat=True).first()
    with (
        languages.of_organisation(language),
        connection.cursor() as cursor,
        _runner_lock(import_id, cursor=cursor) as held,
    ):
        if held:
            _claim_and_run(import_id)


def imports_fail_dead(*, now: datetime | None = None) -> int:
    """Beat: running imports nobody runs any more end failed (and their
    file is removed)."""
    running = ContactImport.objects.filter(status=Status.RUNNING)
    if connection.vendor != "postgresql":
        running = running.filter(created_at__lt=(now or timezone.now()) - SQLITE_DEAD_AFTER)
    failed = 0
    for imp in running.only("pk", "tenant_id", "file_path"):
        with connection.cursor() as cursor, _runner_lock(imp.pk, cursor=cursor) as free:
            if free and ContactImport.objects.filter(pk=imp.pk, status=Status.RUNNING).update(
                status=Status.FAILED, error=DEAD_RUNNER, finished_at=timezone.now()
            ):
                _remove_file(imp)
                events.import_finished(imp.pk, imp.tenant_id)
                failed += 1
    return failed


def _claim_and_run(import_id: int) -> None:
    claimed = ContactImport.objects.filter(pk=import_id, status=Status.QUEUED).update(status=Status.RUNNING)
    if not claimed:
        return  # another worker has it, or it already ran
    imp = ContactImport.objects.get(pk=import_id)
    try:
        _run(imp)
    except ImportFailed as exc:
        _finish(imp, Status.FAILED, str(exc))
    except SoftTimeLimitExceeded:
        _finish(
            imp, Status.FAILED, _("The import took too long and was stopped. The rows counted above were imported.")
        )
    except Exception:
        logger.exception("contact import %s failed", imp.pk)
        _finish(imp, Status.FAILED, _("An unexpected error stopped the import. The rows counted above were imported."))
    else:
        _finish(imp, Status.DONE)
    finally:
        _remove_file(imp)


def _finish(imp: ContactImport, status: str, error: str = "") -> None:
    ContactImport.objects.filter(pk=imp.pk).update(status=status, error=error, finished_at=timezone.now())
    events.import_finished(imp.pk, imp.tenant_id)


def _run(imp: ContactImport) -> None:
    path = Path(imp.file_path)
    if path.resolve().parent != imports_dir().resolve() or not path.is_file():
        raise ImportFailed(_("The uploaded file is gone. Upload it again."))
    if imp.contact_list_id is None:
        raise ImportFailed(_("The target list was deleted."))
    mapping = Mapping.from_json(imp.mapping, imp.header)
    counts = Counts()
    with path.open("rb") as f:
        source = LineSource(f, imp.encoding)
        reader = csv.reader(source, delimiter=imp.delimiter or ",")
        _skip_header(reader)
        rows = _rows(reader, source, mapping, imp.delimiter or ",")
        _stream(imp, rows, counts, lambda: source.offset)


def _stream(
    imp: ContactImport, rows: Iterable[Parsed | ImportRejection], counts: Counts, offset: Callable[[], int]
) -> None:
    """Save the rows in batches of BATCH_ROWS, one transaction each."""
    batch: list[Parsed | ImportRejection] = []
    for item in rows:
        batch.append(item)
        if len(batch) >= BATCH_ROWS:
            _save_batch(imp, batch, counts, offset())
            batch = []
    _save_batch(imp, batch, counts, offset())


def _skip_header(reader: "csv._reader") -> None:
    try:
        skip_header(reader)
    except csv.Error as exc:  # it was read once at upload; the file changed?
        raise ImportFailed(_("The header row cannot be read: %(exc)s.") % {"exc": exc}) from exc


class LineSource:
    """The file's lines, decoded one by one, for csv.reader. Yields exactly
    one string per physical line, so reader.line_num is the file's line
    number. Notes what went wrong in the current row for the caller."""

    def __init__(self, f: BinaryIO, encoding: str) -> None:
        self.f = f
        self.encoding = encoding or "utf-8"
        self.offset = 0
        self.first = True
        self.start_row()

    def start_row(self) -> None:
        self.problem: str | None = None
        self.row_bytes = 0

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        raw = self.f.readline(MAX_LINE_BYTES + 1)
        if not raw:
            raise StopIteration
        start, self.offset = self.offset, self.offset + len(raw)
        self.row_bytes += len(raw)
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            self._skip_rest_of_line()
            self._note(_("The line is longer than %(value)s KB.") % {"value": MAX_LINE_BYTES // 1024})
            return "\n"
        if self.row_bytes > MAX_ROW_BYTES:
            # Only a quoted field makes a row span lines: close it, end the row.
            self._note(_("The row is longer than %(value)s KB.") % {"value": MAX_ROW_BYTES // 1024})
            return '"\n'
        return self._decode(raw, start)

    def _decode(self, raw: bytes, start: int) -> str:
        if self.first:
            self.first = False
            if raw.startswith(codecs.BOM_UTF8):  # before a code page's letters, too (some exports write one)
                raw, start = raw[len(codecs.BOM_UTF8) :], start + len(codecs.BOM_UTF8)
        try:
            text = decode_line(raw, self.encoding)
        except UnicodeDecodeError as exc:
            self._note(
                _("Invalid bytes for %(upper)s at byte %(value)s of the file.")
                % {"upper": self.encoding.upper(), "value": start + exc.start}
            )
            text = raw.decode(self.encoding, errors="replace")
        if "\x00" in text:  # PostgreSQL cannot store it, and no name contains it
            self._note(_("A NUL byte at byte %(value)s of the file.") % {"value": start + raw.index(0)})
            text = text.replace("\x00", "")
        return text

    def _skip_rest_of_line(self) -> None:
        while chunk := self.f.readline(CHUNK_BYTES):
            self.offset += len(chunk)
            if chunk.endswith(b"\n"):
                return

    def _note(self, problem: str) -> None:
        self.problem = self.problem or problem


def _rows(
    reader: "csv._reader", source: LineSource, mapping: Mapping, delimiter: str
) -> Iterator[Parsed | ImportRejection]:
    """Each row of the file, parsed or rejected; blank rows are skipped."""
    while True:
        line = reader.line_num + 1
        source.start_row()
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield _reject(line, csv_problem(exc) + _span(line, reader.line_num), "")
            continue
        if source.problem:
            yield _reject(line, source.problem + _span(line, reader.line_num), _raw(cells, delimiter))
        elif reader.line_num > line and _swallows_rows(cells, delimiter):
            reason = _("A quoted field runs over several lines that look like rows of their own.")
            yield _reject(line, reason + _span(line, reader.line_num), _raw(cells, delimiter))
        elif any(cell.strip() for cell in cells):
            result = _parse(cells, mapping)
            if isinstance(result, tuple):
                yield Parsed(line, *result)
            else:
                yield _reject(line, result + _span(line, reader.line_num), _raw(cells, delimiter))


def _swallows_rows(cells: list[str], delimiter: str) -> bool:
    """A field whose later lines hold the delimiter and an address: a quote
    left open took the rows after it (they would vanish into a name)."""
    return any(delimiter in part and "@" in part for cell in cells for part in cell.splitlines()[1:])


def _span(first: int, last: int) -> str:
    """A rejected row that runs over several lines: most often a quote left
    open, which swallows the rows after it; say where to look."""
    if last <= first:
        return ""
    return _(" The row runs from line %(first)s to line %(last)s: is a closing quote missing?") % {
        "first": first,
        "last": last,
    }


def _reject(line: int, reason: str, raw: str) -> ImportRejection:
    # A reason may quote the row (an API row's field names): what PostgreSQL
    # cannot store must not turn a rejected row into a failed request.
    return ImportRejection(line=line, reason=_storable_text(reason[:300]), raw=_storable_text(raw))


def _raw(cells: list[str], delimiter: str) -> str:
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter).writerow(cell[:MAX_RAW_CHARS] for cell in cells)
    return out.getvalue().removesuffix("\r\n")[:MAX_RAW_CHARS]


def _parse(cells: list[str], m: Mapping) -> tuple[str, str, str, dict[str, str]] | str:
    """(email, first name, last name, custom fields), or why the row is refused."""
    if len(cells) > MAX_COLUMNS:
        return _("The row has %(len)s columns; at most %(MAX_COLUMNS)s are supported.") % {
            "len": len(cells),
            "MAX_COLUMNS": MAX_COLUMNS,
        }
    if (index := next((i for i, cell in enumerate(cells) if len(cell) > MAX_FIELD_CHARS), None)) is not None:
        return _("Column “%(column)s”: the value is longer than %(value)s KB.") % {
            "column": m.column(index),
            "value": MAX_FIELD_CHARS // 1024,
        }

    def cell(index: int | None) -> str:
        # NFC: a file from a Mac or a Vietnamese tool may hold "ễ" as "e" and
        # two combining marks; what users type (a search, a segment) is NFC.
        return unicodedata.normalize("NFC", cells[index].strip()) if index is not None and index < len(cells) else ""

    address = cell(m.email)
    if not address:
        return _("No email address.")
    if len(address) > MAX_EMAIL_CHARS:
        # The validator walks the address character by character in Python:
        # a 100 KB cell on every row would cost seconds per batch.
        return _("Invalid email address “%(value)s…”: longer than %(MAX_EMAIL_CHARS)s characters.") % {
            "value": address[:100],
            "MAX_EMAIL_CHARS": MAX_EMAIL_CHARS,
        }
    try:
        email = contacts.normalize_email(address)
    except ValidationError as exc:
        return _("Invalid email address “%(value)s”: %(0)s") % {"value": address[:100], "0": exc.messages[0]}
    first, last = cell(m.first_name), cell(m.last_name)
    for index, name in ((m.first_name, first), (m.last_name, last)):
        if index is not None and len(name) > contacts.MAX_NAME_LENGTH:
            return _("Column “%(column)s”: a name is longer than %(MAX_NAME_LENGTH)s characters.") % {
                "column": m.column(index),
                "MAX_NAME_LENGTH": contacts.MAX_NAME_LENGTH,
            }
    if problem := _name_problem(first, last):
        return problem
    fields = {key: value for key, index in m.fields.items() if (value := cell(index))}
    for key, index in m.fields.items():
        if len(fields.get(key, "")) > contacts.MAX_VALUE_LENGTH:
            return _("Column “%(column)s”: the value is longer than %(MAX_VALUE_LENGTH)s characters.") % {
                "column": m.column(index),
                "MAX_VALUE_LENGTH": contacts.MAX_VALUE_LENGTH,
            }
    return email, first, last, fields


def _name_problem(first: str, last: str) -> str | None:
    """Names go into subjects: a control character in one (a quoted cell
    with a line break, a stray byte) rejects the row, as the form does."""
    for label, value in ((_("First name"), first), (_("Last name"), last)):
        try:
            no_control_chars(value)
        except ValidationError as exc:
            return f"{label}: {exc.messages[0]}"
    return None


@dataclass
class _Merged:
    first_name: str = ""
    last_name: str = ""
    fields: dict[str, str] = field(default_factory=dict)

    def take(self, row: Parsed) -> None:
        """Later non-empty values win; empty ones never erase."""
        self.first_name = row.first_name or self.first_name
        self.last_name = row.last_name or self.last_name
        self.fields.update(row.fields)


def _save_batch(imp: ContactImport, batch: list[Parsed | ImportRejection], counts: Counts, offset: int) -> None:
    rejections = [item for item in batch if isinstance(item, ImportRejection)]
    merged: dict[str, _Merged] = {}
    for item in batch:
        if isinstance(item, Parsed):
            merged.setdefault(item.email, _Merged()).take(item)
    with transaction.atomic():
        created = _upsert(imp, merged)
        for rejection in rejections:
            rejection.contact_import = imp
        ImportRejection.objects.bulk_create(rejections)
        counts.rows_seen += len(batch)
        counts.rejected += len(rejections)
        counts.created += created
        counts.updated += len(batch) - len(rejections) - created
        ContactImport.objects.filter(pk=imp.pk).update(bytes_read=offset, **vars(counts))


def _upsert(imp: ContactImport, merged: dict[str, _Merged]) -> int:
    """Create the new addresses, merge into the existing ones, put them all
    in the list; returns how many were created."""
    if not merged:
        return 0
    tenant_contacts = Contact.objects.filter(tenant_id=imp.tenant_id)
    existing = {c.email: c for c in tenant_contacts.filter(email__in=list(merged))}
    new = [
        Contact(tenant_id=imp.tenant_id, email=email, first_name=m.first_name, last_name=m.last_name, fields=m.fields)
        for email, m in merged.items()
        if email not in existing
    ]
    # A contact added by hand a moment ago wins; its row still joins the list.
    Contact.objects.bulk_create(new, ignore_conflicts=True)
    now = timezone.now()
    for contact in existing.values():
        m = merged[contact.email]
        contact.first_name = m.first_name or contact.first_name
        contact.last_name = m.last_name or contact.last_name
        contact.fields = {**(contact.fields or {}), **m.fields}
        contact.updated_at = now
    Contact.objects.bulk_update(list(existing.values()), ["first_name", "last_name", "fields", "updated_at"])
    ids = tenant_contacts.filter(email__in=list(merged)).values_list("pk", flat=True)
    through = Contact.lists.through
    through.objects.bulk_create(
        [through(contact_id=pk, contactlist_id=imp.contact_list_id) for pk in ids], ignore_conflicts=True
    )
    return len(new)


# ---------- Rows sent through the API ----------

FIXED = ["email", "first_name", "last_name"]


def import_rows(
    *, contact_list: ContactList, by: User | None, rows: list[object], source: str
) -> tuple[ContactImport, list[ImportRejection]]:
    """Import contacts given as objects ({"email", "first_name",
    "last_name", "fields": {key: value}}), as a CSV import would import the
    same rows: each becomes the cells of a row, checked by the same _parse,
    saved by the same batches into `contact_list`, and recorded as an
    import (with `source` as its file name) whose rejected rows carry their
    position (from 1) as their line. Runs here, in the caller's process: a
    request holds at most API_BULK_MAX_ROWS rows. Field keys not defined
    yet are created, as the import's "new field" column choice does."""
    tenant = contact_list.tenant
    keys = _field_keys(tenant, rows)
    mapping = {str(i): target for i, target in enumerate([*FIXED, *(FIELD_PREFIX + k for k in keys)])}
    imp = ContactImport.objects.create(
        tenant=tenant,
        contact_list=contact_list,
        created_by=by,
        file_name=source[:255],
        header=[*FIXED, *keys],
        mapping=mapping,
        status=Status.RUNNING,
    )
    counts, rejections = Counts(), []
    parsed = Mapping.from_json(mapping, imp.header)

    def items() -> Iterator[Parsed | ImportRejection]:
        for line, row in enumerate(rows, start=1):
            item = _api_row(line, row, keys, parsed)
            if isinstance(item, ImportRejection):
                rejections.append(item)
            yield item

    with connection.cursor() as cursor, _runner_lock(imp.pk, cursor=cursor):
        try:
            _stream(imp, items(), counts, lambda: 0)
        except BaseException:
            _finish(
                imp, Status.FAILED, _("An unexpected error stopped the import. The rows counted above were imported.")
            )
            raise
        _finish(imp, Status.DONE)
    imp.refresh_from_db()
    return imp, rejections


def _field_keys(tenant: Tenant, rows: list[object]) -> list[str]:
    """The custom field keys the rows use that may be fields (a valid
    placeholder name, not a standard one), at most MAX_COLUMNS of them;
    the missing ones are created. A row with any other key is rejected."""
    seen: dict[str, None] = {}
    for row in rows:
        extra = row.get("fields") if isinstance(row, dict) else None
        if isinstance(extra, dict):
            for key in extra:
                if key in seen or len(seen) >= MAX_COLUMNS:
                    continue
                if isinstance(key, str) and contacts.KEY.fullmatch(key) and key not in contacts.RESERVED_KEYS:
                    seen[key] = None
    keys = list(seen)
    for key in keys:
        contacts.custom_field_for_key(tenant=tenant, key=key)
    return keys


def _text(value: object) -> str | None:
    """A cell's text: strings as they are, numbers as written, null as
    empty; anything else (an object, a list) is no cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return None
    if isinstance(value, (str, int, float)):
        return str(value)
    return None


def _storable(text: str) -> bool:
    """PostgreSQL stores neither a NUL nor half a surrogate pair (which
    JSON's \\ud800 escapes can make); a CSV's bytes never decode to either."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def _storable_text(text: str) -> str:
    """`text` with U+FFFD in place of each character _storable refuses."""
    return text if _storable(text) else "".join(c if _storable(c) else "\ufffd" for c in text)


def _api_row(line: int, row: object, keys: list[str], mapping: Mapping) -> Parsed | ImportRejection:
    raw = json.dumps(row, ensure_ascii=False, default=str)[:MAX_RAW_CHARS]
    if not _storable(raw):
        raw = json.dumps(row, default=str)[:MAX_RAW_CHARS]  # escaped: ASCII only
    if not isinstance(row, dict):
        return _reject(line, _("The row must be an object with an “email”."), raw)
    if unknown := [k for k in row if k not in (*FIXED, "fields")]:  # dropped, they were data lost unsaid
        return _reject(line, _("Not a contact's field: %(keys)s.") % {"keys": ", ".join(map(str, unknown))[:200]}, raw)
    fields = row.get("fields") or {}
    if not isinstance(fields, dict):
        return _reject(line, _("“fields” must be an object of field names and values."), raw)
    if unknown := [k for k in fields if k not in keys]:
        return _reject(line, _("Not a field name: %(keys)s.") % {"keys": ", ".join(map(str, unknown))[:200]}, raw)
    cells = [_text(row.get(name)) for name in FIXED] + [_text(fields.get(key)) for key in keys]
    if any(cell is None for cell in cells):
        return _reject(line, _("A value must be text or a number."), raw)
    if not all(_storable(cell) for cell in cells):
        return _reject(line, _("A value holds a NUL or an invalid Unicode character."), raw)
    result = _parse(cells, mapping)
    if isinstance(result, tuple):
        return Parsed(line, *result)
    return _reject(line, result, raw)
