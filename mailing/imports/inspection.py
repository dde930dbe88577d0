"""What a stored upload holds: its header row, its delimiter and its first
rows as they will be read."""

import codecs
import csv
import io
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from ..models import ContactImport
from .detection import _detect_encoding, decode_line
from .limits import DELIMITERS, MAX_COLUMNS, MAX_FIELD_CHARS, MAX_HEADER_CELL, SAMPLE_BYTES


@dataclass(frozen=True)
class FileFacts:
    encoding: str
    delimiter: str
    header: list[str]


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


def _decode_sample(sample: bytes, encoding: str, *, whole: bool) -> str:
    if not whole:
        sample = sample[: sample.rfind(b"\n") + 1] or sample  # whole lines only
    # A UTF-8 BOM before a code page's letters, too (some exports write one).
    # Lines as the runner reads them, to their "\n" (splitlines() splits at a lone CR too).
    lines = sample.removeprefix(codecs.BOM_UTF8).split(b"\n")
    text = "\n".join(decode_line(line, encoding, errors="replace") for line in lines)
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
        return csv.Sniffer().sniff(_sniff_sample(text), delimiters=DELIMITERS).delimiter
    except csv.Error:
        best = max(counts, key=lambda d: counts[d])
        return best if counts[best] else ","


# csv.Sniffer's quote pattern scans ahead from every delimiter and quote
# for their closing pair, so its time grows with the square of the sample:
# 16 KB made to never close took about a second of the request; 4 KB is a
# sixteenth of that and still tens of rows of a real file.
SNIFF_CHARS = 4 * 1024


def _sniff_sample(text: str) -> str:
    """The first SNIFF_CHARS of `text`, cut after its last whole line when
    it has one (a row cut in two would look inconsistent)."""
    sample = text[:SNIFF_CHARS]
    end = sample.rfind("\n")
    return sample[: end + 1] if end > 0 and len(text) > SNIFF_CHARS else sample


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
