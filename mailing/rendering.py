"""The restricted placeholder engine of mail templates.

The only syntax is ``{{ name }}``: a contact field or one of the few names we
provide, substituted as text. Django's template language is deliberately not
used: it can ``{% load %}`` installed libraries, call methods and walk
attributes, which a tenant's template must never do. Anything that looks like
template syntax and is not a plain known placeholder is an error, reported
with its line and column when the template is saved, not when it is sent.
"""

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache

from django.utils.html import escape

from accounts.models import Tenant
from servers.validators import header_text

from .models import Contact, CustomField

STANDARD_NAMES = ("first_name", "last_name", "email")
UNSUBSCRIBE = "unsubscribe_url"
TEMPLATE_FIELDS = ("subject", "text_body", "html_body")
MAX_ERRORS = 10

NAME = re.compile(r"[a-z_][a-z0-9_]*")
OPENING = re.compile(r"\{[{%#]")
# Every character str.splitlines() breaks on: a source holding one has
# several lines (a body); a placeholder may not span them.
LINE_BREAKS = re.compile(r"[\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029]+")


class RenderError(ValueError):
    """The source has bad syntax; check() would have reported it at save."""


@dataclass(frozen=True)
class Placeholder:
    name: str


def known_names(tenant: Tenant) -> set[str]:
    keys = CustomField.objects.filter(tenant=tenant).values_list("key", flat=True)
    return {*STANDARD_NAMES, UNSUBSCRIBE, *(k for k in keys if NAME.fullmatch(k))}


def ordered(names: set[str]) -> list[str]:
    """The names as people expect to read them: the contact's standard
    fields, the custom fields, then the unsubscribe link."""
    standard = [n for n in STANDARD_NAMES if n in names]
    custom = sorted(names - {*STANDARD_NAMES, UNSUBSCRIBE})
    return standard + custom + ([UNSUBSCRIBE] if UNSUBSCRIBE in names else [])


def contact_context(contact: Contact, *, unsubscribe_url: str) -> dict[str, str]:
    """The values a letter to `contact` is rendered with. Standard names win
    over a custom field of the same key."""
    fields = {key: _text(value) for key, value in (contact.fields or {}).items() if NAME.fullmatch(key)}
    standard = {"email": contact.email, "first_name": contact.first_name, "last_name": contact.last_name}
    return {**fields, **standard, UNSUBSCRIBE: unsubscribe_url}


def check(source: str, *, known: set[str]) -> list[str]:
    """Every problem of `source`, each naming itself and its position."""
    errors = []
    for item, offset in _parse(source):
        if isinstance(item, _Error):
            errors.append(item.message(source, offset))
        elif isinstance(item, Placeholder) and item.name not in known:
            errors.append(
                f"Unknown placeholder {{{{ {item.name} }}}} at {_position(source, offset)} — "
                f"known: {_known_list(known)}."
            )
    if len(errors) > MAX_ERRORS:
        errors[MAX_ERRORS:] = [f"… and {len(errors) - MAX_ERRORS} more problems."]
    return errors


def check_fields(sources: Mapping[str, str], *, known: set[str]) -> dict[str, list[str]]:
    """check() for several fields at once: field name -> its errors."""
    found = {field: check(source or "", known=known) for field, source in sources.items()}
    return {field: errors for field, errors in found.items() if errors}


def render(source: str, context: Mapping[str, str], *, html: bool) -> str:
    """Substitute the placeholders. In HTML values are escaped; a name the
    context lacks (a custom field this contact has no value for) gives "".
    A source without line breaks (a subject) renders without any character
    a header refuses (servers.validators), each run of them made a space:
    contact data can neither add a header nor make the letter refused."""
    one_line = LINE_BREAKS.search(source) is None
    parts = []
    for item, offset in _parse(source):
        if isinstance(item, _Error):
            raise RenderError(item.message(source, offset))
        if isinstance(item, str):
            parts.append(item)
            continue
        value = _text(context.get(item.name)).replace("\x00", "")
        if one_line:
            value = header_text(value)
        parts.append(escape(value) if html else value)
    return "".join(parts)


@dataclass(frozen=True)
class _Error:
    describe: Callable[[str], str]  # the position ("line 2, column 5") -> the message

    def message(self, source: str, offset: int) -> str:
        return self.describe(_position(source, offset))


@lru_cache(maxsize=64)
def _parse(source: str) -> tuple[tuple[str | Placeholder | _Error, int], ...]:
    """Literal text, placeholders and errors, each with its offset. Cached:
    a mailing renders the same few sources for every letter."""
    items: list[tuple[str | Placeholder | _Error, int]] = []
    pos = 0
    while (match := OPENING.search(source, pos)) is not None:
        start = match.start()
        if start > pos:
            items.append((source[pos:start], pos))
        item, pos = _read_tag(source, start)
        items.append((item, start))
    if pos < len(source):
        items.append((source[pos:], pos))
    return tuple(items)


def _read_tag(source: str, start: int) -> tuple[Placeholder | _Error, int]:
    """What starts at `start` ("{{", "{%" or "{#") and where reading goes on."""
    kind = source[start : start + 2]
    if kind == "{%":
        end = source.find("%}", start)
        shown = _shorten(source[start : end + 2] if end != -1 else source[start : start + 30])
        return _Error(
            lambda where: (
                f"Template tags such as {shown} are not allowed ({where}): "
                "only {{ name }} placeholders are supported, no logic or loading."
            )
        ), (end + 2 if end != -1 else start + 2)
    if kind == "{#":
        return _Error(lambda where: f"Template comments {{# … #}} are not allowed ({where}); remove it."), start + 2
    end = source.find("}}", start + 2)
    inner = source[start + 2 : end] if end != -1 else ""
    if end == -1 or OPENING.search(inner) or LINE_BREAKS.search(inner):
        # Resume just after "{{" so that later placeholders are still checked.
        return _Error(lambda where: f"Unclosed placeholder {{{{ at {where}: add the closing }}}}."), start + 2
    return _placeholder(inner.strip(" \t")), end + 2


def _placeholder(name: str) -> Placeholder | _Error:
    shown = _shorten("{{ " + name + " }}")
    if NAME.fullmatch(name):
        return Placeholder(name)
    if not name:
        return _Error(
            lambda where: f"Empty placeholder {{{{ }}}} at {where}: write a name inside, such as {{{{ email }}}}."
        )
    if "|" in name:
        plain = name.split("|", 1)[0].strip()
        return _Error(
            lambda where: f"Filters are not allowed: {shown} at {where}; write {{{{ {plain} }}}} without the |."
        )
    if "." in name or "[" in name:
        return _Error(
            lambda where: (
                f"Attribute lookups are not allowed: {shown} at {where}; "
                "placeholders are plain names such as {{ email }} or {{ first_name }}."
            )
        )
    return _Error(
        lambda where: (
            f"Invalid placeholder {shown} at {where}: a name is lower-case letters, digits and _, "
            "starting with a letter or _, such as {{ first_name }}."
        )
    )


def _position(source: str, offset: int) -> str:
    line = source.count("\n", 0, offset) + 1
    column = offset - (source.rfind("\n", 0, offset) + 1) + 1
    return f"line {line}, column {column}"


def _known_list(known: set[str]) -> str:
    return ", ".join(ordered(known))


def _shorten(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _text(value: object) -> str:
    return "" if value is None else str(value)
