"""Where a request may carry a file: the contact import's upload page, and
nowhere else.

Django parses a multipart body as it arrives, and its default upload
handlers spool every file part, of any size, to the temporary directory; the
CSRF check reads the body to find its token, so a 60 MB "file" posted to the
login page was written to disk before anything could refuse it. This
middleware comes before anything reads the body:

1. A multipart body larger than the page can take is refused with 413
   before a byte of it is read: on the import page a file of
   IMPORT_MAX_BYTES and the form around it, elsewhere the fields Django
   accepts (DATA_UPLOAD_MAX_MEMORY_SIZE), each with room for the framing.
2. Anywhere but the import page, the parsing stops at the first file part,
   before a byte of it is stored, and the answer is 400 (a body without a
   Content-Length, which step 1 cannot measure, is stopped there too).

The import page puts ImportUploadHandler first (before the CSRF check
reads the body): it keeps one file, up to IMPORT_MAX_BYTES.
"""

from collections.abc import Callable

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, SkipFile
from django.http import HttpRequest, HttpResponse
from django.http.multipartparser import MultiPartParserError
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext as _

from .limits import max_bytes, size_label

# Boundaries and part headers around the fields (a few hundred bytes each).
FRAMING = 256 * 1024


class FilePartRefused(MultiPartParserError):
    """A file part where no file is taken; Django answers 400 to a body it
    cannot parse, and never reads the rest of it."""


class NoFilesUploadHandler(FileUploadHandler):
    def new_file(self, *args: object, **kwargs: object) -> None:
        raise FilePartRefused(_("A file was sent to a page that takes none."))

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        return None  # never reached: new_file refused the part

    def file_complete(self, file_size: int) -> None:
        return None


class ImportUploadHandler(FileUploadHandler):
    """Stops storing the file once it passes IMPORT_MAX_BYTES (the page then
    says so), instead of writing a file of any size to the temporary
    directory first; and refuses a second file part, so that one request
    cannot multiply the limit (the form has one file field)."""

    def __init__(self, request: object = None) -> None:
        super().__init__(request)
        self.exceeded = False
        self.files = 0

    def new_file(self, *args: object, **kwargs: object) -> None:
        super().new_file(*args, **kwargs)
        self.files += 1
        if self.files > 1:
            # Not SkipFile: skipping closes the open files of every handler,
            # the first file's among them.
            raise FilePartRefused(_("The import takes one file."))

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        if start + len(raw_data) > max_bytes():
            self.exceeded = True
            raise SkipFile
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None


class UploadGuardMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.content_type != "multipart/form-data":
            return self.get_response(request)
        importing = request.path == reverse("contacts:import_upload")
        if (limit := _body_limit(importing)) is not None and _content_length(request) > limit:
            context = {"importing": importing, "max_size": size_label()}
            return render(request, "413.html", context, status=413)
        if not importing:
            request.upload_handlers = [NoFilesUploadHandler(request)]
        return self.get_response(request)


def _body_limit(importing: bool) -> int | None:
    if importing:
        return settings.IMPORT_MAX_BYTES + FRAMING
    fields = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return None if fields is None else fields + FRAMING


def _content_length(request: HttpRequest) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0  # Django reads no body then
