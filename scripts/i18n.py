"""The translation catalogues' chores, with nothing but Python (polib):

    python scripts/i18n.py missing          what locale/ru and locale/vi lack
    python scripts/i18n.py missing --tsv    the same as a sheet to fill in
    python scripts/i18n.py fill FILE.tsv    put a filled sheet into the .po files
    python scripts/i18n.py compile          write the .mo files from the .po files

A sheet has one line per string: domain, msgid, Russian, Vietnamese, tab
separated; a plural's forms are joined by " ||| " (msgid: singular ||| plural;
Russian: one ||| few ||| many; Vietnamese: one form), a line break is \\n.
`make messages` re-extracts the strings (GNU gettext) and runs `missing`."""

import sys
from pathlib import Path

import polib

LOCALE = Path(__file__).resolve().parent.parent / "locale"
LANGUAGES = ("ru", "vi")
DOMAINS = ("django", "djangojs")


def catalogue(language: str, domain: str) -> polib.POFile:
    return polib.pofile(str(LOCALE / language / "LC_MESSAGES" / f"{domain}.po"))


def needs_work(entry: polib.POEntry) -> bool:
    return not entry.translated() or "fuzzy" in entry.flags


def key(entry: polib.POEntry) -> str:
    text = entry.msgid + (" ||| " + entry.msgid_plural if entry.msgid_plural else "")
    return text.replace("\n", "\\n")


def missing(tsv: bool) -> int:
    rows: dict[tuple[str, str], set[str]] = {}
    for language in LANGUAGES:
        for domain in DOMAINS:
            for entry in filter(needs_work, catalogue(language, domain)):
                rows.setdefault((domain, key(entry)), set()).add(language)
    for (domain, text), languages in rows.items():
        print(f"{domain}\t{text}\t\t" if tsv else f"{domain} [{', '.join(sorted(languages))}]: {text}")
    if not tsv:
        print(f"{len(rows)} string(s) to translate", file=sys.stderr)
    return 1 if rows else 0


def fill(sheet: str) -> int:
    wanted = {}
    for line in Path(sheet).read_text().splitlines():
        if line.strip():
            domain, text, russian, vietnamese = line.split("\t")
            wanted[(domain, text)] = {"ru": russian, "vi": vietnamese}
    for language in LANGUAGES:
        for domain in DOMAINS:
            po = catalogue(language, domain)
            nplurals = po.metadata.get("Plural-Forms", "nplurals=1").split("nplurals=")[1].split(";")[0]
            for entry in po:
                if (domain, key(entry)) in wanted:
                    _put(entry, wanted[(domain, key(entry))][language], int(nplurals))
            po.save()
    return 0


def _put(entry: polib.POEntry, text: str, nplurals: int) -> None:
    forms = [form.replace("\\n", "\n") for form in text.split(" ||| ")]
    if entry.msgid_plural:
        forms += [forms[min(1, len(forms) - 1)]] * (nplurals - len(forms))
        entry.msgstr_plural = dict(enumerate(forms[:nplurals]))
    else:
        entry.msgstr = forms[0]
    if "fuzzy" in entry.flags:
        entry.flags.remove("fuzzy")
        entry.previous_msgid = entry.previous_msgid_plural = None


def compile_all() -> int:
    for language in LANGUAGES:
        for domain in DOMAINS:
            path = LOCALE / language / "LC_MESSAGES" / f"{domain}.po"
            polib.pofile(str(path)).save_as_mofile(str(path.with_suffix(".mo")))
    return 0


if __name__ == "__main__":
    command = sys.argv[1:2] or ["missing"]
    if command == ["fill"]:
        sys.exit(fill(sys.argv[2]))
    if command == ["compile"]:
        sys.exit(compile_all())
    sys.exit(missing("--tsv" in sys.argv))
