"""What the contacts, suppression and import pages share: paging, the
way back to the page a form was on, errors of a service on its form, and
CSV downloads safe to open in a spreadsheet."""

import csv
import re
from collections.abc import Iterable
from datetime import datetime, tzinfo

from django.core.exceptions import ValidationError
from django.core.paginator import Page, Paginator
from django.forms import Form
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import get_language

from ..forms.contacts import SearchForm

PAGE_SIZE = 50


def invalid(form: Form, exc: ValidationError) -> None:
    """Put a service's ValidationError on the form, by field where it can."""
    if hasattr(exc, "error_dict"):
        for name, errors in exc.error_dict.items():
            form.add_error(name if name in form.fields else None, errors)
    else:
        form.add_error(None, exc)


def page_of(request: HttpRequest, items: Iterable) -> Page:
    return Paginator(items, PAGE_SIZE).get_page(request.GET.get("page"))


def back(request: HttpRequest, default: str) -> HttpResponse:
    """Return to the page the form was on, if it is one of ours."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return redirect(target)
    return redirect(default)


def search_query(request: HttpRequest) -> str:
    form = SearchForm(request.GET)
    return form.cleaned_data["q"] if form.is_valid() else ""


class _Echo:
    def write(self, value: str) -> str:
        return value


# Languages whose Excel splits a CSV file at the semicolon: where the comma
# is the decimal separator, Windows makes the semicolon the list separator,
# and a file written with commas opens as one column.
SEMICOLON_LANGUAGES = frozenset({"ru", "vi"})


def csv_response(filename: str, header: list[str], rows: Iterable[Iterable[object]]) -> StreamingHttpResponse:
    """A CSV download in the reader's language's separator (imports read
    either), its header in that language. The rows are written once the
    view has returned, with no language active: whatever in them is
    worded must be worded in the view."""
    writer = csv.writer(_Echo(), delimiter=";" if get_language() in SEMICOLON_LANGUAGES else ",")
    # The rows are written after the middleware has reset the request's
    # zone: keep the organisation's for the moments in them.
    zone = timezone.get_current_timezone()

    def lines() -> Iterable[str]:
        yield "\ufeff"  # so that Excel reads the file as UTF-8
        yield writer.writerow(header)
        for row in rows:
            yield writer.writerow([_cell(value, zone) for value in row])

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


# Where a spreadsheet may cut a cell: the comma we write with, the
# semicolon a Russian or Vietnamese Excel splits at (its list separator),
# the tab, and a line break.
_SPLITS = re.compile(r"([,;\t\r\n])")
_FORMULA_START = ("=", "+", "-", "@")
# Skipped before the first character a spreadsheet reads: spaces, and the
# quote that opens a quoted field.
_LEADING = ' \u00a0"'


def _cell(value: object, zone: tzinfo) -> str:
    """A spreadsheet must not run a cell as a formula: the rows come from
    files, forms and bounces anyone could have filled. Not only the
    cell's start: opened with another separator than the comma (Excel in
    Russian or Vietnamese splits at the semicolon), every part after a
    separator is a cell of its own, so each part that would begin with a
    formula character gets an apostrophe before it. A moment is the
    organisation's wall-clock time with its offset, to the second, as its
    pages show it: "2025-12-05T04:15:00+05:45"."""
    if isinstance(value, datetime) and timezone.is_aware(value):
        value = timezone.localtime(value, zone).replace(microsecond=0)
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    text = "".join(_defused(part) for part in _SPLITS.split(text))
    return "'" + text if text[:1] in ("\t", "\r") else text


def _defused(part: str) -> str:
    body = part.lstrip(_LEADING)
    if body[:1] not in _FORMULA_START:
        return part
    lead = part[: len(part) - len(body)]
    return lead + "'" + body
