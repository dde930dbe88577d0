"""System checks for settings that go into mail headers. No form sees
them, and a control character in one breaks every message: Django's mail
writes a VT in DEFAULT_FROM_EMAIL out as a line break inside the From
header, and the letter builder refuses a List-Unsubscribe header made from a
SITE_URL holding one. `manage.py check` and every start refuse it instead."""

from collections.abc import Sequence

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, register

from .validators import first_unsafe

# DEFAULT_FROM_EMAIL and SERVER_EMAIL head the platform's own emails;
# SITE_URL is in every letter's List-Unsubscribe header.
HEADER_SETTINGS = ("DEFAULT_FROM_EMAIL", "SERVER_EMAIL", "SITE_URL")


@register()
def header_settings(app_configs: Sequence[AppConfig] | None = None, **kwargs: object) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    for name in HEADER_SETTINGS:
        value = getattr(settings, name, "")
        if isinstance(value, str) and (found := first_unsafe(value)) is not None:
            position, char = found
            errors.append(
                Error(
                    f"{name} holds the control character U+{ord(char):04X} at position {position + 1}.",
                    hint="Remove it: the value goes into mail headers, which cannot hold it.",
                    id="servers.E001",
                )
            )
    return errors
