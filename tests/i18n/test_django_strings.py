"""Django's own words our pages show, in Vietnamese too: Django's
Vietnamese catalogue lacks some (config/django_strings.py lists them).
The staff admin's are checked page by page in test_admin_language."""

from datetime import timedelta

import pytest
from django.utils import timezone, translation
from django.utils.timesince import timesince

SAID = [("en", "2\xa0days, 5\xa0hours"), ("ru", "2\xa0дня, 5\xa0часов"), ("vi", "2\xa0ngày, 5\xa0giờ")]


@pytest.mark.parametrize(("language", "expected"), SAID)
def test_how_long_ago_is_said_in_the_language(language, expected):
    now = timezone.now()
    with translation.override(language):
        assert timesince(now - timedelta(days=2, hours=5), now) == expected
