"""The bounds a hostile file meets, and where uploads wait."""

from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.template.defaultfilters import filesizeformat

from ..models import ContactImport

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


def max_bytes() -> int:
    return settings.IMPORT_MAX_BYTES


def imports_dir() -> Path:
    return Path(settings.IMPORTS_DIR)


def size_label() -> str:
    return filesizeformat(max_bytes())
