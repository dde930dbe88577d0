"""Header safety: the one definition of the characters that may not go into
a mail header or a mail-protocol command, for every app; and the one rule
that a name the user gives (a list, template, mailing, server,
organisation, key) shows at least one character (visible_name).

It lives in `servers`, the lowest app that sends mail: `mailing` already
depends on it and imports it from here, and `servers` never imports
`mailing`. Migrations name `no_control_chars` by this path, so it stays.

Refused: every C0 control (U+0000-U+001F, TAB included), DEL (U+007F), every
C1 control (U+0080-U+009F) and the Unicode line and paragraph separators
(U+2028, U+2029). CR and LF would start a new header (injection); the email
package also breaks a header at VT, FF, U+001C-U+001E, U+0085 and the two
separators (str.splitlines()); the others are invisible, and mail servers
refuse or mangle them."""

import re
import unicodedata

from django.core.exceptions import ValidationError
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
UNSAFE_RUN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]+")

# What the user is told the character is; every other one is "the control character".
NAMES: dict[str, Promise] = {
    "\t": _("the tab"),
    "\n": _("the line break"),
    "\r": _("the line break"),
    "\u2028": _("the line separator"),
    "\u2029": _("the paragraph separator"),
}
MESSAGE = _("Remove %(what)s %(code)s (position %(position)d): it cannot go into a mail header.")


def first_unsafe(value: str) -> tuple[int, str] | None:
    """The position (from 0) and the character of the first unsafe one."""
    match = UNSAFE.search(value or "")
    return None if match is None else (match.start(), match.group())


def no_control_chars(value: str) -> None:
    """The validator of every header-bound field, on models and forms."""
    if (found := first_unsafe(value)) is None:
        return
    position, char = found
    params = {
        "what": NAMES.get(char, _("the control character")),
        "code": f"U+{ord(char):04X}",
        "position": position + 1,
    }
    raise ValidationError(MESSAGE, code="header_injection", params=params)


LINE_BREAK = re.compile("[\r\n\x00]")
PASSWORD_MESSAGE = _(
    "A password cannot contain a line break: the mail server would read the rest of it as another command."
)


def no_line_breaks(value: str) -> None:
    """The validator of the mailbox passwords: IMAP's LOGIN and POP3's PASS
    carry them as typed, so a line break would end the command and start
    another (servers.netguard refuses to send one too)."""
    if LINE_BREAK.search(value or ""):
        raise ValidationError(PASSWORD_MESSAGE, code="line_break")


def header_text(value: str) -> str:
    """`value` with every run of unsafe characters made one space: for data
    that may hold them (a contact's custom field) on its way into a header."""
    return UNSAFE_RUN.sub(" ", value)


# Nothing to see, alone: format characters (zero-width space, joiners, the
# BOM, the soft hyphen, bidi and tag characters), spaces and separators of
# every kind, controls, surrogates, and marks, which show only on a letter.
NOT_SHOWN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zs", "Zl", "Zp", "Mn", "Mc", "Me"})
# Letters and symbols by their category that draw nothing: the Hangul
# fillers and the braille blank, the usual stand-ins for an empty name.
NOT_SHOWN = frozenset("\u115f\u1160\u3164\uffa0\u2800")
# Default-ignorable code points not yet assigned (their category is Cn):
# Unicode has them drawn as nothing already, so a newer font shows none.
IGNORABLE_UNASSIGNED = re.compile("[\u2065\ufff0-\ufff8\U000e0000-\U000e0fff]")
NO_VISIBLE = _("Use at least one visible character: this name would show as empty.")


def _shows(char: str) -> bool:
    return not (
        char.isspace()
        or char in NOT_SHOWN
        or unicodedata.category(char) in NOT_SHOWN_CATEGORIES
        or IGNORABLE_UNASSIGNED.match(char)
    )


def visible_name(value: str) -> None:
    """The validator of every name a user gives, on forms and the API. An
    empty value is left to `required`, so it serves optional names too."""
    if value and not any(_shows(char) for char in value):
        raise ValidationError(NO_VISIBLE, code="invisible")
