"""The system check on settings that go into mail headers: no form sees
them, so `manage.py check` (and every start) refuses a control character."""

import pytest
from django.core.checks import run_checks

pytestmark = pytest.mark.django_db


def header_errors() -> list[str]:
    return [message.msg for message in run_checks() if message.id == "servers.E001"]


def test_the_default_settings_pass():
    assert header_errors() == []


@pytest.mark.parametrize("name", ["DEFAULT_FROM_EMAIL", "SERVER_EMAIL", "SITE_URL"])
def test_a_control_character_in_a_header_setting_is_an_error(settings, name):
    setattr(settings, name, "Post\x0broute <no-reply@postroute.test>")
    assert header_errors() == [f"{name} holds the control character U+000B at position 5."]
