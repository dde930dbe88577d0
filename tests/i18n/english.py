"""The English the interface is written in, from the catalogue's msgids, to
find what a translated page still shows in English."""

import re
from functools import cache
from pathlib import Path

import polib
from django.conf import settings

PLACEHOLDER = re.compile(r"%\([^)]*\)[sd]|%[sd]|\{\{[^}]*\}\}|\{[a-z_]+\}|<[^>]+>|&\w+;")
# Words a Russian or Vietnamese mail professional writes as they are: names
# of protocols, headers, formats, providers, programs and the product.
SAME_IN_EVERY_LANGUAGE = {
    "AUTH", "BOM", "CRM", "CSV", "DATA", "Email", "From", "Gmail", "HTML", "ID", "IMAP", "MAIL", "Mail", "Message",
    "NOOP", "NUL", "Outlook", "POP3", "Postroute", "QR", "QUIT", "Rambler", "Reply", "SMTP", "SPF", "SSL",
    "STARTTLS", "TLS", "TOTP", "Thunderbird", "UTF", "Windows", "Yandex", "English", "OK", "Message-ID", "Reply-To",
}  # fmt: skip
WORD = re.compile(r"[A-Za-z][A-Za-z'-]*[A-Za-z]")


@cache
def phrases() -> tuple[frozenset[str], frozenset[str]]:
    """(English phrases of two words or more, English single words): the
    pieces of every msgid between its placeholders and markup."""
    catalogue = polib.pofile(str(Path(settings.BASE_DIR) / "locale" / "ru" / "LC_MESSAGES" / "django.po"))
    multi, single = set(), set()
    for entry in catalogue:
        for text in filter(None, (entry.msgid, entry.msgid_plural)):
            for piece in PLACEHOLDER.split(text):
                words = WORD.findall(piece)
                if len(words) >= 2:
                    multi.add(" ".join(piece.split()).strip(" .,:;—·()«»“”\"'"))
                elif len(words) == 1 and len(words[0]) >= 4 and words[0] not in SAME_IN_EVERY_LANGUAGE:
                    single.add(words[0])
    return frozenset(p for p in multi if len(p) >= 6), frozenset(single)


def english_left(text: str) -> list[str]:
    """The catalogue's English found in `text` (a page's visible text)."""
    multi, single = phrases()
    flat = " ".join(text.split())
    found = sorted(p for p in multi if p in flat)
    words = set(WORD.findall(flat))
    found += sorted(w for w in single & words)
    return found
