"""Every user-facing string is marked for translation. Three scans, each
with the exceptions it knows and why:

- Python (AST): a string of words not inside gettext/ngettext/..., in the
  apps and config, except where words are not for users (below).
- Templates: text between tags and the visible attributes (title,
  placeholder, aria-label, alt, data-label, data-confirm) outside
  {% translate %} / {% blocktranslate %}.
- JavaScript: a sentence-like string literal not inside gettext().

A new string that fails here: wrap it (gettext_lazy at module or class
level, gettext in a function, {% translate %} in a template, gettext() in
static/js), then `make messages` and translate it."""

import ast
import re
from pathlib import Path

from django.conf import settings

ROOT = Path(settings.BASE_DIR)
APPS = ("accounts", "servers", "mailing", "config")
MARKERS = {
    "_",
    "gettext",
    "gettext_lazy",
    "ngettext",
    "ngettext_lazy",
    "pgettext",
    "pgettext_lazy",
    "npgettext",
    "npgettext_lazy",
    "gettext_noop",
}
# Two words or more of letters: a phrase someone could read.
PHRASE = re.compile(r"[A-Za-z]{2,}[,.:;!?]?\s+[A-Za-z(“\"'«]")
# Words not for users: the calls whose string arguments are for operators,
# developers, log files, mail servers or the database.
NOT_FOR_USERS_CALLS = {
    # logs and developers' exceptions (Django's error pages show no message)
    "debug", "info", "warning", "error", "exception", "critical", "log",
    "ValueError", "TypeError", "AssertionError", "RuntimeError", "KeyError", "LookupError", "NotImplementedError",
    "ImproperlyConfigured", "Http404", "PermissionDenied", "SuspiciousOperation", "TimeoutError", "OSError",
    "RecordingFailed", "OperationalError",  # (a database driver's, for the logs)
    # protocol errors raised inside the SMTP/IMAP/POP3 clients, as the standard library words them
    "SMTPServerDisconnected", "SMTPResponseException", "error_proto", "abort",
    # regular expressions, SQL, format strings for machines
    "compile", "search", "match", "fullmatch", "sub", "split", "execute", "RawSQL", "strftime", "strptime",
    # system checks and management commands speak to the operator, in English
    "Error", "Warning", "Critical", "CheckMessage", "CommandError", "write", "add_argument",
    # headers of the letters Postroute sends are the tenant's own text
    "set_content", "add_header",
}  # fmt: skip
# Files whose strings are all for operators or machines.
NOT_FOR_USERS_FILES = (
    "/migrations/", "/management/", "config/settings.py", "config/celery.py", "mailing/sink.py",
    "mailing/dispatch/results.py",  # SQL
    "mailing/bounces/parser.py",  # words of other servers' reports it matches
    "mailing/limits.py",  # SQL and developers' errors
    "config/metrics.py",  # Prometheus help texts, read by the operator's monitoring
    "config/checks.py",  # system checks speak to the operator
    "config/gunicorn.conf.py",  # the access log's format
    "config/migration_operations.py",  # what migrate prints to the operator
    "config/production.py",  # why a production process does not start, to the operator
)  # fmt: skip
# Single strings, each with its reason.
NOT_FOR_USERS = {
    "mailing/contacts.py": "a b v g d",  # the transliteration table of Cyrillic
    # the CSV headers it recognises
    "mailing/imports/mapping.py": "mail address|first name|given name|last name|family name",
    "mailing/views/templates.py": "sandbox; default-src",  # the preview's Content-Security-Policy
    "servers/netguard.py": "please run connect|Connection unexpectedly closed|Server not connected|Line too long",
    "servers/errors.py": "timed out",  # the words of socket errors it recognises
    # The beginnings of email-validator's English refusals it recognises
    "servers/addresses.py": "@-sign|^An email address cannot|^The email address is too long|after the email address",
    "accounts/ratelimits.py": "rate limited until",  # an internal exception's repr
    "mailing/bounces/imap.py": "cannot open the folder",  # an IMAP error relayed to the diagnosis
    "mailing/models/limits.py": " on server | waits for server ",  # __str__ for the shell
    "servers/models.py": "/day on |rests until ",  # __str__ for the shell and the admin's own lists
    "mailing/dispatch/rests.py": "is failing|rests until|on platform server",  # log lines
    "accounts/models.py": "An email address is required",  # UserManager: developers only
    "servers/deliverability/hosts.py": "Amazon SES|Microsoft 365",  # providers' names
    # The exception's own words after a note of the dispatcher's (mailing/dispatch/replies.py, shown translated).
    "mailing/dispatch/batch.py": "no reason",
}  # fmt: skip
# Strings for machines whatever the file: SQL (statements and conditions)
# and MIME and HTTP header values.
MACHINE_TEXT = re.compile(
    r"^\s*(INSERT|SELECT|UPDATE|DELETE|WITH)\b|\bIS (NOT )?NULL\b|\b(NOT )?LIKE %s|charset=|boundary=|^attachment;"
    r"|^(GET|HEAD|POST)(, [A-Z]+)+$"
)


def _name(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def _text(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return " ".join(v.value for v in node.values if isinstance(v, ast.Constant))
    return None


def unmarked_python(path: Path) -> list[str]:
    relative = path.relative_to(ROOT).as_posix()
    tree = ast.parse(path.read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    allowed = NOT_FOR_USERS.get(relative)
    found = []
    for node in ast.walk(tree):
        text = _text(node)
        if text is None or not PHRASE.search(text) or isinstance(parents.get(node), ast.JoinedStr | ast.Expr):
            continue  # not words, part of an f-string, or a docstring
        if (allowed and re.search(allowed, text)) or MACHINE_TEXT.search(text) or _in_str_method(node, parents):
            continue
        if not _for_users(node, parents):
            continue
        found.append(f"{relative}:{node.lineno}: {text[:70]!r}")
    return found


def _in_str_method(node: ast.AST, parents: dict) -> bool:
    """__str__ names a record for the shell and the admin's lists, in data."""
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.FunctionDef):
            return node.name == "__str__"
    return False


def _for_users(node: ast.AST, parents: dict) -> bool:
    parent = parents.get(node)
    if (isinstance(parent, ast.Dict) and node in parent.keys) or isinstance(parent, ast.Compare):
        return False  # a key, or text compared with what a server said
    while parent is not None and not isinstance(parent, ast.stmt):
        if isinstance(parent, ast.Call):
            name = _name(parent)
            if name in MARKERS:
                return False
            if name in NOT_FOR_USERS_CALLS:
                return False
        parent = parents.get(parent)
    return True


def test_python_strings_for_users_are_marked():
    found = []
    for app in APPS:
        for path in sorted((ROOT / app).rglob("*.py")):
            if not any(part in path.as_posix() for part in NOT_FOR_USERS_FILES):
                found += unmarked_python(path)
    assert found == []


# Templates ---------------------------------------------------------------

VISIBLE_ATTRIBUTES = re.compile(r'\b(?:title|placeholder|aria-label|alt|data-label|data-confirm)="([^"]*)"')
# The template split into template tags, variables, comments and HTML tags
# (a tag with template tags inside it is one piece); the rest is text.
PIECES = re.compile(r"(\{%.*?%\}|\{\{.*?\}\}|\{#.*?#\}|<!--.*?-->|<[^>]*>)", re.S)
WORDS = re.compile(r"[A-Za-z]{2,}")
# Words that stay as they are in every language.
UNTRANSLATED_WORDS = {"Postroute"}
# Blocks holding no interface text: comments, what is marked already, CSS classes.
SKIP = {"comment": "endcomment", "blocktranslate": "endblocktranslate", "verbatim": "endverbatim"}
SKIP_NAMED_BLOCKS = {"main_class"}


def _words(text: str) -> set[str]:
    text = re.sub(r"\{%\s*blocktranslate.*?endblocktranslate\s*%\}", " ", text, flags=re.S)
    text = re.sub(r"\{\{.*?\}\}|\{%.*?%\}|&\w+;", " ", text)
    return set(WORDS.findall(text)) - UNTRANSLATED_WORDS


def unmarked_template(path: Path) -> list[str]:
    source = path.read_text()
    found, closing = [], None
    for piece in PIECES.split(source):
        tag = re.match(r"\{%\s*(\w+)\s*(\w*)", piece)
        if closing:
            if re.match(closing, piece):
                closing = None
            continue
        if tag:
            name, argument = tag.groups()
            if name in SKIP:
                closing = r"\{%\s*" + SKIP[name]
            elif name == "block" and argument in SKIP_NAMED_BLOCKS:
                closing = r"\{%\s*endblock"
            continue
        if re.match(r"<(script|style)\b", piece):
            closing = r"</(script|style)"
            continue
        if piece.startswith("<"):
            piece = re.sub(r"\{%\s*translate\s+(\"[^\"]*\"|'[^']*')[^%]*%\}", "", piece)
            found += [f"{path.relative_to(ROOT)}: attribute {value!r}" for value in VISIBLE_ATTRIBUTES.findall(piece)
                      if _words(value)]  # fmt: skip
        elif not piece.startswith(("{", "<!--")) and _words(piece):
            found.append(f"{path.relative_to(ROOT)}: {' '.join(piece.split())[:70]!r}")
    return found


def test_template_text_is_marked():
    found = []
    for path in sorted((ROOT / "templates").rglob("*")):
        if path.is_file() and path.suffix in (".html", ".txt"):
            found += unmarked_template(path)
    assert found == []


# JavaScript --------------------------------------------------------------

JS_STRING = re.compile(r'"((?:[^"\\\n]|\\.)*)"')
# A sentence or a label: begins with a capital or ends with punctuation; or
# words in brackets or after a space, put after another text (" (done)").
SENTENCE = re.compile(
    r"^[A-Z][a-z]+\b.*\s|[a-z ][.:…!?]\s*$|\\u2026$|^\s*\([A-Za-z][A-Za-z ]*\)|^\s+[A-Za-z]{2,}(\s|$)"
)
# Host names made from the mailbox's domain ("imap." + domain) are not words.
NOT_WORDS = re.compile(r"^(imap|smtp|pop|mail)\.$")


def test_javascript_strings_for_users_go_through_gettext():
    found = []
    for path in sorted((ROOT / "static" / "js").glob("*.js")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for match in JS_STRING.finditer(line):
                text = match.group(1)
                before = line[: match.start()]
                if not re.search("[A-Za-z]{2}", text) or text == "use strict" or NOT_WORDS.match(text):
                    continue
                if re.search(r"gettext\($", before):
                    continue
                if SENTENCE.search(text):
                    found.append(f"{path.name}:{number}: {text[:70]!r}")
    assert found == []
