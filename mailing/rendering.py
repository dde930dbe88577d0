"""The restricted placeholder engine of mail templates.

The only syntax is ``{{ name }}``: a contact field or one of the few names we
provide, substituted as text. Django's template language is deliberately not
used: it can ``{% load %}`` installed libraries, call methods and walk
attributes, which a tenant's template must never do. Anything that looks like
template syntax and is not a plain known placeholder is an error, reported
with its line and column when the template is saved, not when it is sent.
"""

import re
from collections.abc import Iterator, Mapping
from functools import lru_cache
from itertools import islice
from urllib.parse import quote

from django.utils.html import escape
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts.models import Tenant
from servers.validators import header_text

from .models import Contact, CustomField

STANDARD_NAMES = ("first_name", "last_name", "email")
UNSUBSCRIBE = "unsubscribe_url"
TEMPLATE_FIELDS = ("subject", "text_body", "html_body")
MAX_ERRORS = 10

NAME = re.compile(r"[a-z_][a-z0-9_]*")
# Every character str.splitlines() breaks on: a source holding one has
# several lines (a body); a placeholder may not span them.
BREAKS = r"\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029"
LINE_BREAKS = re.compile(f"[{BREAKS}]+")
# The space around a name: any but a line break, so that a placeholder
# pasted from a word processor with no-break spaces is one.
SPACE = rf"[^\S{BREAKS}]"
# What is template syntax: a whole placeholder ("{{", then neither an
# opening nor a line break up to the first "}}"), or else an opening alone.
# Each character of a placeholder can be taken one way only and is never
# given back (possessive), so a failed attempt costs one scan up to the
# character that ends it, never a search to the end; the leading "{"
# outside the groups lets the engine skip plain text quickly.
TOKEN = re.compile(
    rf"\{{(?:(?P<placeholder>\{{(?:[^{{}}{BREAKS}]++|\{{(?![{{%#])|\}}(?!\}}))*+\}}\}})"
    r"|(?P<unclosed>\{)|(?P<comment>#)|(?P<tag>%))"
)


# A script element with its content, or an unclosed one to the end: mail
# clients strip scripts, so a letter never carries one.
SCRIPT = re.compile(r"<script\b[^>]*+>.*?(?:</script\s*>|\Z)", re.IGNORECASE | re.DOTALL)
SCRIPT_WARNING = gettext_lazy(
    "The HTML body has a <script>: mail clients remove scripts, so it does nothing in a letter. "
    "Postroute leaves it out of the letters it sends."
)


def has_script(html: str) -> bool:
    return SCRIPT.search(html) is not None


# A script's opening or closing tag left once the scripts are out: taking
# one out may join the text around it into another ("<scr<script>…</script>
# ipt>"), which a second pass could hide again, as deep as the template
# nests them. Written as text instead ("&lt;script"), in one pass that
# makes no "<".
SCRIPT_TAG = re.compile(r"<(?=/?script\b)", re.IGNORECASE)


def strip_scripts(html: str) -> str:
    return SCRIPT_TAG.sub("&lt;", SCRIPT.sub("", html))


class RenderError(ValueError):
    """The source has bad syntax; check() would have reported it at save."""


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
    """Every problem of `source`, each naming itself and its position; past
    MAX_ERRORS only their number. The regular expression engine walks over
    what is fine and counts the problems: a megabyte of "{{" holds half a
    million, too many to take one by one in Python."""
    pattern = _problem_pattern(frozenset(known))
    text = _for_counting(source)
    found = [m for m in islice(pattern.finditer(text), MAX_ERRORS) if m.start("token") < len(source)]
    errors = [_message(source, *_problem(match, source), known) for match in found]
    if len(found) == MAX_ERRORS and (more := pattern.subn("", text)[1] - 1 - MAX_ERRORS) > 0:
        errors.append(_("… and %(more)s more problems.") % {"more": more})
    return errors


def check_fields(sources: Mapping[str, str], *, known: set[str]) -> dict[str, list[str]]:
    """check() for several fields at once: field name -> its errors."""
    found = {field: check(source or "", known=known) for field, source in sources.items()}
    return {field: errors for field, errors in found.items() if errors}


def render(source: str, context: Mapping[str, str], *, html: bool) -> str:
    """Substitute the placeholders. In HTML values are escaped; a name the
    context lacks (a custom field this contact has no value for) gives "".
    A value inside a link, after its host, is percent-encoded first
    (_in_link): whole in the query or fragment (`?e={{ email }}`), its
    link characters kept in the path. A source without line breaks (a
    subject) renders without any character a header refuses
    (servers.validators), each run of them made a space: contact data can
    neither add a header nor make the letter refused."""
    one_line, items = _parse(source)
    parts = []
    for text, name, safe in items:
        if name is None:
            parts.append(text)
            continue
        value = _text(context.get(name)).replace("\x00", "")
        if one_line:
            value = header_text(value)
        if safe is not None:
            value = quote(value, safe=safe)
        parts.append(escape(value) if html else value)
    return "".join(parts)


Item = tuple[str, str | None, str | None]


@lru_cache(maxsize=64)
def _parse(source: str) -> tuple[bool, tuple[Item, ...]]:
    """Whether `source` is one line, and its (literal text, None, None)
    and ("", placeholder name, what stays unencoded in it: _in_link) in order; or the
    first problem raised. Cached: a mailing renders the same few sources
    for every letter."""
    items: list[Item] = []
    pos = 0
    word = ""  # the text since the last space or tag bracket, placeholders as "\x00"
    for kind, start, end in _tokens(source):
        if start > pos:
            items.append((source[pos:start], None, None))
            word = _last_word(word, source[pos:start])
        if kind != "placeholder" or not NAME.fullmatch(name := _name(source, start, end)):
            raise RenderError(_message(source, kind, start, end, known=set()))
        items.append(("", name, _in_link(word)))
        word = _last_word(word, "\x00")
        pos = end
    if pos < len(source):
        items.append((source[pos:], None, None))
    return LINE_BREAKS.search(source) is None, tuple(items)


# A link is a word: it runs from the last space or tag bracket.
WORD_START = re.compile(r"[\s<>][^\s<>]*+\Z")
WORD_LIMIT = 4096  # a link's start is kept; a longer word is no link we know
# A link in an attribute (href="...", src='...'), or a word that begins
# with a scheme (after an opening bracket or quote).
LINK_ATTRIBUTE = re.compile(r"(?:href|src|action|background)=[\"']?", re.IGNORECASE)
SCHEME = re.compile(r"[(\[«\"']*+([a-z][a-z0-9+.-]*+):(//[^/?#]*+)?", re.IGNORECASE)


def _last_word(word: str, text: str) -> str:
    if (found := WORD_START.search(text)) is not None:
        return text[found.start() + 1 :][:WORD_LIMIT]
    return (word + text)[:WORD_LIMIT]


# In a query or a fragment a value is one parameter's: everything but "@"
# encoded (a "+" reads as a space there, an "&" or "#" ends the value). In
# a path it may be a piece of link ("sale/shoes?size=42"): only what a link
# cannot hold (spaces, quotes, non-ASCII) is encoded.
QUERY_SAFE = "@"
PATH_SAFE = "/?#[]@!$&'()*+,;=:%~"


def _in_link(word: str) -> str | None:
    """What stays unencoded in a placeholder after `word`: None outside a
    link's path, query or fragment. A whole link (href="{{ site }}"), a
    host (https://{{ sub }}.example) and a mailto address are left as they
    are."""
    if (attribute := LINK_ATTRIBUTE.match(word)) is not None:
        link = word[attribute.end() :]
    elif SCHEME.match(word) is not None:
        link = word
    else:
        return None
    if (scheme := SCHEME.match(link)) is not None:
        link = link[scheme.end() :]  # the scheme and the host: a mailto address, a host, is not encoded
    if "?" in link or "#" in link:
        return QUERY_SAFE
    return PATH_SAFE if "/" in link else None


def _tokens(source: str) -> Iterator[tuple[str, int, int]]:
    """The template syntax in `source` as (kind, start, end), kind a TOKEN
    group's name; the rest is literal text. One pass, linear in the length
    whatever the text holds (a megabyte of "{{" included). A tag runs to its
    "%}", looked for only when the text has one further on."""
    last_tag_end = source.rfind("%}")
    search = TOKEN.search
    end = 0
    while (match := search(source, end)) is not None:
        start, kind, end = match.start(), match.lastgroup or "", match.end()
        if kind == "tag" and last_tag_end > start:
            end = source.find("%}", start) + 2
        # An unclosed "{{" is 2 characters long: later placeholders are still checked.
        yield kind, start, end


# Ends the text check() reads, so that its pattern always has one more
# match: after the last problem, a search from the next position would
# otherwise walk over the whole rest again for every position. The line
# break keeps a "{" or an unclosed "{{" at the end of the text as it was.
SENTINEL = "\n{#"


@lru_cache(maxsize=32)
def _problem_pattern(known: frozenset[str]) -> re.Pattern[str]:
    """Everything that is fine (text, a "{" that opens nothing, a known
    placeholder), taken possessively, then one TOKEN that is a problem."""
    fine = r"[^{]++|\{(?![{%#])"
    if names := "|".join(re.escape(name) for name in sorted(known) if NAME.fullmatch(name)):
        fine += rf"|\{{\{{{SPACE}*+(?:{names}){SPACE}*+\}}\}}"
    # In the text check() reads every "{%" has its "%}": the tag runs to it.
    tokens = TOKEN.pattern.replace("(?P<tag>%)", r"(?P<tag>%(?:\}|[\s\S]*?%\}))")
    return re.compile(rf"(?:{fine})*+(?P<token>{tokens})")


def _for_counting(source: str) -> str:
    """`source` with the same positions, where every "{%" has a "%}" further
    on: those after the last "%}" become "{#", a 2-character problem like
    the unclosed tag they are; then SENTINEL."""
    last = source.rfind("%}")
    tail = last + 2 if last != -1 else 0
    return source[:tail] + source[tail:].replace("{%", "{#") + SENTINEL


def _problem(match: re.Match[str], source: str) -> tuple[str, int, int]:
    start, end = match.span("token")
    kind = next(kind for kind in ("placeholder", "unclosed", "comment", "tag") if match.group(kind) is not None)
    return ("tag" if source[start + 1] == "%" else kind), start, end


def _name(source: str, start: int, end: int) -> str:
    """The name inside the placeholder source[start:end]."""
    return source[start + 2 : end - 2].strip()


def _message(source: str, kind: str, start: int, end: int, known: set[str]) -> str:
    where = _position(source, start)
    if kind == "unclosed":
        return _("Unclosed placeholder {{ at %(where)s: add the closing }}.") % {"where": where}
    if kind == "comment":
        return _("Template comments {# … #} are not allowed (%(where)s); remove it.") % {"where": where}
    if kind == "tag":
        shown = _shorten(source[start : min(end, start + 41)]) if end > start + 2 else source[start : start + 30]
        return _(
            "Template tags such as %(shown)s are not allowed (%(where)s): only {{ "
            "name }} placeholders are supported, no logic or loading."
        ) % {"shown": shown, "where": where}
    name = _name(source, start, end)
    if NAME.fullmatch(name):
        return _("Unknown placeholder {{ %(name)s }} at %(where)s — known: %(known_list)s.") % {
            "name": name,
            "where": where,
            "known_list": _known_list(known),
        }
    return _invalid(name, where)


def _invalid(name: str, where: str) -> str:
    shown = _shorten("{{ " + name + " }}")
    if not name:
        return _("Empty placeholder {{ }} at %(where)s: write a name inside, such as {{ email }}.") % {"where": where}
    if "|" in name:
        plain = name.split("|", 1)[0].strip()
        return _("Filters are not allowed: %(shown)s at %(where)s; write {{ %(plain)s }} without the |.") % {
            "shown": shown,
            "where": where,
            "plain": plain,
        }
    if "." in name or "[" in name:
        return _(
            "Attribute lookups are not allowed: %(shown)s at %(where)s; "
            "placeholders are plain names such as {{ email }} or {{ first_name }}."
        ) % {"shown": shown, "where": where}
    return _(
        "Invalid placeholder %(shown)s at %(where)s: a name is lower-case "
        "letters, digits and _, starting with a letter or _, such as {{ "
        "first_name }}."
    ) % {"shown": shown, "where": where}


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
