"""locale/ru and locale/vi are complete, and the committed .mo files are the
compiled .po files (a fresh machine has no GNU gettext to compile them)."""

import re
from pathlib import Path

import polib
import pytest
from django.conf import settings

LOCALE = Path(settings.BASE_DIR) / "locale"
CATALOGUES = [(language, domain) for language in ("ru", "vi") for domain in ("django", "djangojs")]
PLACEHOLDER = re.compile(r"%\([^)]+\)[sd]|%[sd]|\{[a-z_]+\}")


def po(language: str, domain: str) -> polib.POFile:
    return polib.pofile(str(LOCALE / language / "LC_MESSAGES" / f"{domain}.po"))


@pytest.mark.parametrize(("language", "domain"), CATALOGUES)
def test_every_string_is_translated_and_none_is_fuzzy(language, domain):
    catalogue = po(language, domain)
    assert len(catalogue) > 10
    untranslated = [entry.msgid for entry in catalogue if not entry.translated()]
    fuzzy = [entry.msgid for entry in catalogue if "fuzzy" in entry.flags]
    assert untranslated == [], "make messages lists them"
    assert fuzzy == []


@pytest.mark.parametrize(("language", "domain"), CATALOGUES)
def test_translations_keep_the_placeholders(language, domain):
    wrong = []
    for entry in po(language, domain):
        if entry.msgid_plural:
            want = set(PLACEHOLDER.findall(entry.msgid_plural))
            # Singular forms may name the number in words ("один раз").
            wrong += [entry.msgid for form in entry.msgstr_plural.values() if set(PLACEHOLDER.findall(form)) - want]
        elif set(PLACEHOLDER.findall(entry.msgstr)) != set(PLACEHOLDER.findall(entry.msgid)):
            wrong.append(entry.msgid)
    assert wrong == []


def _messages(catalogue) -> dict:
    out = {}
    for entry in catalogue:
        if entry.msgid and (entry.msgstr or entry.msgstr_plural) and "fuzzy" not in entry.flags:
            forms = entry.msgstr_plural
            out[(entry.msgctxt, entry.msgid)] = tuple(forms[k] for k in sorted(forms)) if forms else entry.msgstr
    return out


@pytest.mark.parametrize(("language", "domain"), CATALOGUES)
def test_the_committed_mo_is_the_po_compiled(language, domain):
    mo = polib.mofile(str(LOCALE / language / "LC_MESSAGES" / f"{domain}.mo"))
    assert _messages(mo) == _messages(po(language, domain)), "run: python scripts/i18n.py compile"


# A piece of a sentence: a separator at an end ("· Import", ", as %(name)s"), a lone joining
# word ("of", " and "), or the tail of a sentence whose head is another
# string ("and receives no letters."). A language puts its words in its own
# order only when it translates the whole phrase.
FRAGMENT = re.compile(r"^\s*[·,]|·\s*$|^\s*(and|or|of|to|from|by|the)\s*$|^(and|or|to|on|under|will)\s.*\.$")


def test_no_string_is_a_piece_of_a_sentence():
    pieces = [entry.msgid for entry in po("ru", "django") if FRAGMENT.search(entry.msgid)]
    assert pieces == []
    pieces = ("· Import", "Updates by itself ·", "of", " and ", "to fix it.", ", as %(name)s")
    assert all(FRAGMENT.search(s) for s in pieces)
