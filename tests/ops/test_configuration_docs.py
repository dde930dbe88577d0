"""The README is the operator's reference: every environment variable the
product reads is in it, the defaults its configuration table gives are the
ones the settings use, and the production commands it shows serve every
queue (a queue no worker consumes is work that never happens)."""

import ast
import re
import shlex

from config import health
from tests.helpers import ROOT

README = (ROOT / "README.md").read_text()
SETTINGS = (ROOT / "config" / "settings.py").read_text()
READ_IN_SETTINGS = re.compile(r'env(?:\.\w+)?\(\s*"([A-Z][A-Z0-9_]+)"(?:,\s*default=([^\n]+?))?\)\n')
READ_FROM_ENVIRON = re.compile(r'environ(?:\.get\(|\[)"([A-Z][A-Z0-9_]+)"')


def variables_read() -> set[str]:
    names = {m[1] for m in READ_IN_SETTINGS.finditer(SETTINGS)}
    for path in (ROOT / "config").glob("*.py"):
        if path.name not in ("settings_test.py", "settings.py"):
            names |= set(READ_FROM_ENVIRON.findall(path.read_text()))
    return names - {"DJANGO_SETTINGS_MODULE"}


def documented(name: str) -> bool:
    return re.search(rf"`{name}(=[^`]*)?`", README) is not None


def test_every_variable_the_product_reads_is_documented():
    assert "SECRET_KEY" in variables_read() and "GUNICORN_BIND" in variables_read()
    assert sorted(name for name in variables_read() if not documented(name)) == []


def table_defaults() -> dict[str, str]:
    """NAME -> the default the configuration tables give, where a row names
    its variables and gives each one plain value."""
    defaults = {}
    for line in README.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        names = re.findall(r"`([A-Z][A-Z0-9_]+)`", cells[0])
        values = re.fullmatch(r"`([^`]*)`(?:\s*[,/]\s*`([^`]*)`)*", cells[1])
        given = re.findall(r"`([^`]*)`", cells[1]) if values else []
        if names and len(names) == len(given):
            defaults.update(zip(names, given, strict=True))
    return defaults


def literal(expression: str) -> object:
    """A default written as a constant or arithmetic on constants."""
    try:
        return eval(compile(ast.parse(expression, mode="eval"), "<default>", "eval"), {"__builtins__": {}})
    except Exception:
        return None


def test_the_documented_defaults_are_the_settings_defaults():
    documented_defaults = table_defaults()
    compared, wrong = 0, []
    for match in READ_IN_SETTINGS.finditer(SETTINGS):
        name, default = match[1], literal(match[2] or "")
        if name not in documented_defaults or default is None or isinstance(default, list):
            continue
        given = documented_defaults[name]
        expected = ("1" if default else "0") if isinstance(default, bool) else None
        same = given == expected if expected is not None else literal(given) == default or given == str(default)
        compared += 1
        if not same:
            wrong.append((name, given, default))
    assert compared > 30
    assert wrong == []


def production_commands() -> list[list[str]]:
    block = README[README.index("A production host runs:") :]
    block = block[block.index("```sh") + 5 : block.index("```", block.index("```sh") + 5)]
    commands = [shlex.split(line, comments=True) for line in block.splitlines()]
    return [words for words in commands if "celery" in words]


def test_the_production_commands_consume_every_queue():
    consumed = set()
    for words in production_commands():
        if "worker" in words:
            consumed |= set(words[words.index("-Q") + 1].split(","))
    assert set(health.queues()) - consumed == set()
