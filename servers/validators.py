"""Header safety: a value that ends up in a mail header or an SMTP command
must not carry CR, LF or NUL (header and command injection)."""

from django.core.exceptions import ValidationError

FORBIDDEN = {"\r": "a line break (CR)", "\n": "a line break (LF)", "\x00": "a NUL character"}


def no_control_chars(value: str) -> None:
    for char, what in FORBIDDEN.items():
        if char in (value or ""):
            raise ValidationError(f"This field may not contain {what}.", code="header_injection")
