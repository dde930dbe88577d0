"""Every day a page shows reads as its language writes a date, in the
organisation's zone: "5 декабря 2025" in Russian (the month in the genitive,
lower case), "5/12/2025" in Vietnamese, never Django's bare month
abbreviations ("5 Дек 2025", "5 Tháng 12 2025") or the nominative ("5
Декабрь 2025") that a fixed `|date:"j M Y"` gives."""

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from accounts.models import Invitation
from mailing.models import ContactImport, ContactList, Suppression
from servers.models import ConnectionTest
from tests.mailing.builders import make_list
from tests.servers.factories import make_server

pytestmark = pytest.mark.django_db
# 22:30 UTC on 4 December is already 5 December in Moscow.
LATE_EVENING = datetime(2025, 12, 4, 22, 30, tzinfo=UTC)
WRITTEN = {"ru": "5 декабря 2025", "vi": "5/12/2025", "en": "5 Dec 2025"}


def _pages(alice, tenant_a) -> list[str]:
    ContactList.objects.filter(pk=make_list(tenant_a, "Clients").pk).update(created_at=LATE_EVENING)
    Suppression.objects.create(tenant=tenant_a, email="gone@x.test", reason="manual", created_at=LATE_EVENING)
    Invitation.objects.create(tenant=tenant_a, email="new@x.test", invited_by=alice.user, created_at=LATE_EVENING)
    tenant_a.memberships.update(created_at=LATE_EVENING)
    type(alice.device).objects.filter(pk=alice.device.pk).update(created_at=LATE_EVENING)
    imp = ContactImport.objects.create(tenant=tenant_a, file_name="a.csv", status="done", created_at=LATE_EVENING)
    test = ConnectionTest.objects.create(tenant=tenant_a, status="passed", created_at=LATE_EVENING)
    return [
        reverse("contacts:import", args=[imp.public_id]),
        reverse("servers:test", args=[test.public_id]),
        reverse("contacts:index"),
        reverse("contacts:suppressions"),
        reverse("accounts:team"),
        reverse("accounts:security"),
    ]


@pytest.mark.parametrize("language", ["ru", "vi", "en"])
def test_a_day_on_a_page_is_written_as_the_language_writes_it(alice, tenant_a, language):
    tenant_a.time_zone = "Europe/Moscow"
    tenant_a.save(update_fields=["time_zone"])
    alice.user.language = language
    alice.user.save(update_fields=["language"])
    for url in _pages(alice, tenant_a):
        html = alice.client.get(url).content.decode()
        assert WRITTEN[language] in html, url


TEMPLATES = Path(settings.BASE_DIR) / "templates"
# A shown date or time formatted in place: only `|date:'c'` (the machine
# form in <time datetime>) is not shown.
FIXED_FORMAT = re.compile(r"\|(?:date|time):(['\"])(?!c\1)[^'\"]*\1")


def test_templates_show_days_and_times_only_through_the_catalogues_formats():
    found = []
    for path in sorted(TEMPLATES.rglob("*.html")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            found += [f"{path.relative_to(TEMPLATES)}:{number}: {m.group(0)}" for m in FIXED_FORMAT.finditer(line)]
    assert found == []


def test_templates_say_how_long_ago_only_through_ago():
    """|timesince names its units as they stand alone: Russian "1 минута
    назад" where it says "1 минуту назад"."""
    found = [
        f"{path.relative_to(TEMPLATES)}: {match}"
        for path in sorted(TEMPLATES.rglob("*.html"))
        for match in re.findall(r"\|time(?:since|until)\b", path.read_text())
    ]
    assert found == []


@pytest.mark.parametrize(
    ("minutes", "ru", "vi"),
    [
        (1, "1\xa0минуту назад", "1\xa0phút trước"),
        (21, "21\xa0минуту назад", "21\xa0phút trước"),
        (3, "3\xa0минуты назад", "3\xa0phút trước"),
        (11, "11\xa0минут назад", "11\xa0phút trước"),
        (7 * 24 * 60, "1\xa0неделю назад", "1\xa0tuần trước"),
    ],
)
def test_how_long_ago_a_server_was_tested_agrees_with_ago(alice, tenant_a, minutes, ru, vi):
    server = make_server(tenant_a, health_checked_at=timezone.now() - timedelta(minutes=minutes, seconds=5))
    for language, said in (("ru", ru), ("vi", vi)):
        alice.user.language = language
        alice.user.save(update_fields=["language"])
        html = alice.client.get(reverse("servers:list")).content.decode()
        assert said in html, (language, server.health_checked_at)
