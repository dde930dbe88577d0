"""How long to wait before trying again is said with the plural each
language needs: "1 minute", "2 minutes"; "1 минуту", "2 минуты", "5 минут",
"21 минуту". It said "minute(s)" in English and "мин." in Russian."""

from datetime import timedelta

import pytest
from django.utils import timezone, translation

from accounts import mail_limits, ratelimits, throttle

SAID = {
    "en": {1: "1 minute.", 2: "2 minutes.", 5: "5 minutes.", 21: "21 minutes."},
    "ru": {1: "1 минуту.", 2: "2 минуты.", 5: "5 минут.", 21: "21 минуту."},
    "vi": {1: "1 phút.", 2: "2 phút.", 5: "5 phút.", 21: "21 phút."},
}


@pytest.mark.parametrize("language", SAID)
@pytest.mark.parametrize("minutes", [1, 2, 5, 21])
def test_a_lockout_and_a_mail_limit_say_how_many_minutes(language, minutes):
    until = timezone.now() + timedelta(minutes=minutes, seconds=-10)
    limited = ratelimits.RateLimited(until, [])
    with translation.override(language):
        lockout = throttle.lockout_message(until)
        refusals = [mail_limits.MailLimited(kind, limited).message for kind in mail_limits.Kind]
    for text in (lockout, *refusals):
        assert text.endswith(SAID[language][minutes]), text
        assert "(s)" not in text
