"""Which column of a file goes into which field of a contact."""

import unicodedata

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from .. import contacts
from .limits import FIELD_PREFIX

# Column names that name a standard field, as _header_words writes them:
# lower-case, NFC (a Vietnamese header may come decomposed), punctuation,
# "_" and "-" as spaces ("E-mail:" is "e mail"). What Excel, Google Sheets,
# 1C, Bitrix24, AmoCRM and Vietnamese tools write.
GUESSES = {
    "email": {
        "email", "e mail", "mail", "email address", "e mail address", "email адрес", "e mail адрес",
        "почта", "эл почта", "электронная почта", "адрес электронной почты", "адрес эл почты", "емейл", "имейл",
        "địa chỉ email", "địa chỉ e mail", "thư điện tử", "địa chỉ thư điện tử",
    },
    "first_name": {"first name", "firstname", "given name", "name", "имя", "tên"},
    "last_name": {"last name", "lastname", "surname", "family name", "фамилия", "họ"},
}  # fmt: skip
# Words a CRM puts around a field's name ("Work e-mail" in Bitrix24 and
# AmoCRM, "Personal email"): the name without them is matched too.
QUALIFIERS = {"рабочий", "раб", "личный", "домашний", "основной", "другой", "work", "personal", "home", "primary"}


def _header_words(header: str) -> str:
    text = unicodedata.normalize("NFC", header).lower()
    text = "".join(" " if unicodedata.category(ch)[0] in "PSZ" else ch for ch in text)
    return " ".join(text.split())


def guess_target(header: str, existing_keys: set[str]) -> str:
    """The mapping choice offered first for a column: a standard field or
    an existing custom field whose name matches, else ignore ("")."""
    name = _header_words(header)
    plain = " ".join(word for word in name.split() if word not in QUALIFIERS)
    for target, names in GUESSES.items():
        if name in names or plain in names:
            return target
    key = contacts.field_key(header)
    return f"{FIELD_PREFIX}{key}" if key in existing_keys else ""


def check_mapping(mapping: dict[str, str]) -> None:
    """Exactly one email column; no field filled from two columns."""
    targets = [t for t in mapping.values() if t]
    if targets.count("email") != 1:
        raise ValidationError(_("Map exactly one column to “Email address”."), code="email")
    if doubled := sorted({t for t in targets if targets.count(t) > 1}):
        names = ", ".join(t.removeprefix(FIELD_PREFIX).replace("_", " ") for t in doubled)
        raise ValidationError(
            _("Two columns go into the same field: %(names)s. Pick one.") % {"names": names}, code="doubled"
        )
