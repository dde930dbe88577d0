"""A sentence kept as its English original and its parameters, worded when
it is read, in the reader's language.

What background work stores to be read later by people of several
languages (a platform server's health is read by every tenant sending
through it) is kept so: `Words("The server refused: %(reply)s.",
{"reply": "554 no"})`. A parameter is the server's own text (shown as it
came), a number (written as the reader's language writes one: 12 345),
other Words ("the server") or Seconds (a duration, its plural and decimal
comma in the reader's language). Rows written before
a sentence had its words keep their text (`from_json` of nothing is None).
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Union

from django.core.exceptions import ValidationError
from django.utils import formats, translation
from django.utils.functional import Promise
from django.utils.translation import gettext

Param = Union[str, int, float, "Words", "Seconds"]


@dataclass(frozen=True)
class Seconds:
    value: float

    def __str__(self) -> str:
        from .deadlines import seconds_text  # deadlines words its sentences with Words

        return seconds_text(self.value)


@dataclass(frozen=True)
class Words:
    msgid: str
    params: dict[str, Param] = field(default_factory=dict)
    # A sentence already worded (an exception's text made where it was
    # raised): shown as it is, in the language it was written in.
    verbatim: bool = False

    @classmethod
    def of(cls, text: "str | Promise | Words") -> "Words":
        """A translatable string marked with gettext_lazy keeps its
        original; a plain string is verbatim."""
        if isinstance(text, Words):
            return text
        if isinstance(text, Promise):
            with translation.override(None):  # no catalogue: the msgid itself
                return cls(str(text))
        return cls(str(text), verbatim=True)

    def __str__(self) -> str:
        if self.verbatim or not self.msgid:
            return self.msgid
        if not self.params:
            return gettext(self.msgid)
        values = {name: _shown(value) for name, value in self.params.items()}
        for sentence in (gettext(self.msgid), self.msgid):
            try:
                return sentence % values
            except (KeyError, ValueError, TypeError):  # stored words that do not fit the sentence
                continue
        return self.msgid

    def __bool__(self) -> bool:
        return bool(self.msgid)

    def to_json(self) -> dict[str, Any]:
        if self.verbatim:
            return {"text": _storable(self.msgid)}
        return {"id": self.msgid, "p": {name: _param_json(value) for name, value in self.params.items()}}

    @classmethod
    def from_json(cls, data: Any) -> "Words | None":
        """None for anything that is not stored words (an old row, a
        hand-edited value): the caller shows the stored text."""
        try:
            if "text" in data:
                return cls(str(data["text"]), verbatim=True)
            return cls(str(data["id"]), {str(k): _param(v) for k, v in data.get("p", {}).items()})
        except (TypeError, KeyError, AttributeError, ValueError):
            return None


def _shown(value: Param) -> str:
    """A number as the reader's language writes it (12 345, 12.345)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return formats.localize(value)
    return str(value)


def _storable(text: str) -> str:
    return text.replace("\x00", "\ufffd")  # no PostgreSQL text (nor jsonb) holds NUL


def _param_json(value: Param) -> Any:
    if isinstance(value, Words):
        return value.to_json()
    if isinstance(value, Seconds):
        return {"seconds": value.value}
    if isinstance(value, int | float):
        return value
    return _storable(str(value))


def _param(data: Any) -> Param:
    if isinstance(data, dict):
        if "seconds" in data:
            return Seconds(float(data["seconds"]))
        words = Words.from_json(data)
        if words is None:
            raise ValueError(data)
        return words
    if isinstance(data, bool) or not isinstance(data, str | int | float):
        raise ValueError(data)
    return data


def shown(stored_words: Any, key: str, stored_text: str) -> str:
    """`stored_words[key]` in the reader's language, else the stored text
    (a row written before words were kept, or words that do not load)."""
    data = stored_words.get(key) if isinstance(stored_words, dict) else None
    words = Words.from_json(data) if data else None
    return stored_text if words is None else str(words)


# A note of several sentences (a mailing's history) is stored as a list of
# words, each worded on its own and joined with a space.
Said = str | Promise | Words | Iterable[Words]


def sentences(said: Said) -> list[Words]:
    if isinstance(said, str | Promise | Words):
        return [Words.of(said)] if said else []
    return list(said)


def sentences_json(said: Said) -> list[dict[str, Any]]:
    return [words.to_json() for words in sentences(said)]


def worded(said: Said) -> str:
    """The sentences in the active language, joined with a space."""
    return " ".join(str(words) for words in sentences(said))


def shown_sentences(stored: Any, stored_text: str) -> str:
    """Stored sentences in the reader's language, else the stored text (a
    row written before words were kept, or words that do not load)."""
    said = [Words.from_json(data) for data in stored] if isinstance(stored, list) and stored else [None]
    if any(words is None for words in said):
        return stored_text
    return worded([words for words in said if words is not None])


def error_words(exc: ValidationError) -> list[Words]:
    """A ValidationError's messages as words: a lazy message keeps its
    English original and its parameters; a worded one is verbatim. A
    ValidationError of fields (a model's clean()) gives each field's."""
    if hasattr(exc, "error_dict"):
        return [_error_words(error) for errors in exc.error_dict.values() for error in errors]
    return [_error_words(error) for error in exc.error_list]


def _error_words(error: ValidationError) -> Words:
    params = error.params or {}
    if isinstance(error.message, Promise) and isinstance(params, dict):
        try:
            values = {str(k): v if isinstance(v, str | int | float) else Words.of(v) for k, v in params.items()}
            return Words(Words.of(error.message).msgid, values)
        except (TypeError, KeyError, ValueError):  # a plural lazy message: the active language's text
            pass
    return Words(" ".join(ValidationError([error]).messages), verbatim=True)
