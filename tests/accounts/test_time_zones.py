"""Each tenant's time zone: chosen at sign-up, changed by owners and admins,
active for each of its requests, shown with every time ("tomorrow at 10:01
MSK"), and read DST-safe when a mailing is scheduled."""

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import Tenant
from accounts.timezones import local_to_aware, when
from mailing.models import Mailing
from tests.mailing.builders import make_list, make_template
from tests.servers.factories import make_server

pytestmark = pytest.mark.django_db
MOSCOW, BERLIN, SAIGON = ZoneInfo("Europe/Moscow"), ZoneInfo("Europe/Berlin"), ZoneInfo("Asia/Ho_Chi_Minh")
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)  # 12:00 in Moscow


@pytest.mark.parametrize(
    ("moment", "zone", "text"),
    [
        (datetime(2026, 12, 1, 20, 30, tzinfo=UTC), MOSCOW, "today at 23:30"),
        (datetime(2026, 12, 1, 21, 1, tzinfo=UTC), MOSCOW, "tomorrow at 00:01"),  # still the 1st in UTC
        (datetime(2026, 11, 30, 20, 0, tzinfo=UTC), MOSCOW, "yesterday at 23:00"),
        (datetime(2026, 12, 5, 7, 1, tzinfo=UTC), MOSCOW, "5 Dec at 10:01"),
        (datetime(2027, 1, 5, 7, 1, tzinfo=UTC), MOSCOW, "5 Jan 2027 at 10:01"),
        (datetime(2026, 12, 1, 17, 30, tzinfo=UTC), SAIGON, "tomorrow at 00:30"),
        (datetime(2026, 12, 1, 20, 30, tzinfo=UTC), UTC, "today at 20:30"),
    ],
)
def test_a_moment_reads_in_the_zone_with_its_day(moment, zone, text):
    with timezone.override(zone):
        assert when(moment, now=NOW) == text


@pytest.mark.parametrize(
    ("zone", "suffix"),
    [("Europe/Moscow", "MSK"), ("Asia/Ho_Chi_Minh", "UTC+7"), ("Asia/Kathmandu", "UTC+5:45"), ("UTC", "UTC")],
)
def test_the_zone_is_named_where_a_time_could_be_misread(zone, suffix):
    with timezone.override(ZoneInfo(zone)):
        assert when(NOW, now=NOW, zone=True).endswith(f" {suffix}")


def test_the_signup_takes_the_zone_and_refuses_a_name_that_is_not_one(client):
    data = {"email": "vy@saigon.test", "organisation": "Saigon Mail", "password": "a long passphrase 42"}
    refused = client.post(reverse("accounts:signup"), {**data, "time_zone": "Mars/Olympus_Mons"})
    assert refused.status_code == 200 and "Mars/Olympus_Mons is not one of the available choices" in refused.text
    assert client.post(reverse("accounts:signup"), {**data, "time_zone": "Asia/Ho_Chi_Minh"}).status_code == 302
    assert Tenant.objects.get(name="Saigon Mail").time_zone == "Asia/Ho_Chi_Minh"
    # A form without the field (no select posted) leaves the organisation in UTC.
    other = {"email": "x@utc.test", "organisation": "Plain", "password": "a long passphrase 42"}
    assert Client().post(reverse("accounts:signup"), other).status_code == 302
    assert Tenant.objects.get(name="Plain").time_zone == "UTC"


def test_the_signup_page_asks_the_browser_for_its_zone(client):
    page = client.get(reverse("accounts:signup")).text
    assert 'name="time_zone"' in page and "data-browser-zone" in page and 'value="Europe/Moscow"' in page


def test_owners_and_admins_change_the_zone_and_members_only_see_it(alice, carol, bob, tenant_a):
    url = reverse("accounts:organisation")
    assert carol.client.post(url, {"time_zone": "Europe/Moscow"}).status_code == 302
    tenant_a.refresh_from_db()
    assert tenant_a.time_zone == "Europe/Moscow"
    refused = alice.client.post(url, {"time_zone": "Moscow"})
    assert refused.status_code == 400 and "is not one of the available choices" in refused.text
    assert bob.client.post(url, {"time_zone": "UTC"}).status_code == 403
    tenant_a.refresh_from_db()
    assert tenant_a.time_zone == "Europe/Moscow"
    assert "Europe/Moscow (MSK)" in bob.client.get(url).text


def test_a_stored_name_the_machine_no_longer_knows_falls_back_to_utc(alice, tenant_a):
    Tenant.objects.filter(pk=tenant_a.pk).update(time_zone="Europe/Atlantis")
    assert alice.client.get(reverse("mailings:list")).status_code == 200


def test_each_tenant_reads_its_times_in_its_own_zone(alice, charlie, tenant_a, tenant_b):
    Tenant.objects.filter(pk=tenant_a.pk).update(time_zone="Europe/Moscow")
    now = timezone.now()
    resume = (now + timedelta(hours=1)).replace(second=0, microsecond=0)
    for tenant in (tenant_a, tenant_b):
        Mailing.objects.create(
            tenant=tenant, name="Sale", template=make_template(tenant), status=Mailing.Status.WAITING, resume_at=resume
        )
    moscow, utc = resume.astimezone(MOSCOW), resume.astimezone(UTC)
    assert f"resumes {day_word(moscow, now)} at {moscow:%H:%M} MSK" in alice.client.get(reverse("mailings:list")).text
    assert f"resumes {day_word(utc, now)} at {utc:%H:%M} UTC" in charlie.client.get(reverse("mailings:list")).text
    # The zone is the request's only: nothing is left active after it.
    assert timezone.get_current_timezone_name() == settings.TIME_ZONE


def day_word(local: datetime, now: datetime) -> str:
    return "today" if local.date() == now.astimezone(local.tzinfo).date() else "tomorrow"


def test_the_dashboard_names_its_rolling_windows_and_draws_local_hours(alice, tenant_a):
    Tenant.objects.filter(pk=tenant_a.pk).update(time_zone="Asia/Ho_Chi_Minh")
    make_server(tenant_a, max_per_hour=10, max_per_day=100)
    data = alice.client.get(reverse("dashboard:data")).json()
    hour, day, _quota = data["servers"][0]["windows"]
    assert (hour["label"], day["label"]) == ("Last 60 minutes", "Last 24 hours")
    assert data["updated"].endswith(" UTC+7")
    now_local = timezone.now().astimezone(SAIGON)
    assert data["hours"][-1] == now_local.strftime("%H:00")
    page = alice.client.get(reverse("home")).text
    assert "Times in Asia/Ho Chi Minh" in page and "rolling" in page


# Scheduling across a DST change


def last_sunday(year: int, month: int) -> date:
    last = date(year, month, 31)
    return last - timedelta(days=(last.weekday() + 1) % 7)


def schedule(person, tenant, when_text: str):
    data = {
        "name": "Spring sale", "template": make_template(tenant).pk, "lists": [make_list(tenant, when_text).pk],
        "servers": [make_server(tenant).pk], "scheduled_at": when_text,
    }  # fmt: skip
    return person.client.post(reverse("mailings:new"), data)


def test_a_schedule_after_the_clocks_go_forward_is_read_in_summer_time(alice, tenant_a):
    Tenant.objects.filter(pk=tenant_a.pk).update(time_zone="Europe/Berlin")
    change = last_sunday(timezone.now().year + 1, 3)  # Berlin: 02:00 CET becomes 03:00 CEST
    before, after = change - timedelta(days=1), change + timedelta(days=1)
    assert schedule(alice, tenant_a, f"{before}T10:00").status_code == 302
    assert schedule(alice, tenant_a, f"{after}T10:00").status_code == 302
    instants = list(Mailing.objects.order_by("pk").values_list("scheduled_at", flat=True))
    assert [at.astimezone(UTC).hour for at in instants] == [9, 8]  # UTC+1 the day before, UTC+2 after
    mailing = Mailing.objects.order_by("pk").last()
    page = alice.client.get(reverse("mailings:detail", args=[mailing.public_id])).text
    assert f"Schedule for {after.day} Mar {after.year} at 10:00 CEST" in page
    form = alice.client.get(reverse("mailings:edit", args=[mailing.public_id])).text
    # The help names both halves of the year: a start typed in winter for
    # the summer is read in summer time ("CET" alone misled).
    assert f'value="{after}T10:00"' in form and "Europe/Berlin (CET/CEST)" in form


def test_a_time_the_clocks_skip_is_refused_with_a_clear_error(alice, tenant_a):
    Tenant.objects.filter(pk=tenant_a.pk).update(time_zone="Europe/Berlin")
    change = last_sunday(timezone.now().year + 1, 3)
    response = schedule(alice, tenant_a, f"{change}T02:30")
    assert response.status_code == 400 and not Mailing.objects.exists()
    assert f"There is no 02:30 on {change.day} Mar" in response.text and "for example 03:30" in response.text


def test_a_time_the_clocks_show_twice_is_the_first_of_the_two():
    change = last_sunday(2027, 10)  # Berlin: 03:00 CEST becomes 02:00 CET
    at = local_to_aware(datetime(2027, 10, change.day, 2, 30), BERLIN)
    assert at.astimezone(UTC) == datetime(2027, 10, change.day, 0, 30, tzinfo=UTC)
    with pytest.raises(ValidationError):
        local_to_aware(datetime(2027, 3, last_sunday(2027, 3).day, 2, 30), BERLIN)
    assert local_to_aware(datetime(2027, 7, 1, 12, 0), MOSCOW).astimezone(UTC).hour == 9


def test_a_moment_at_the_end_of_time_still_reads():
    with timezone.override(SAIGON):  # east of UTC: the local time would overflow
        assert when(datetime.max.replace(tzinfo=UTC), now=NOW) == "31 Dec 9999 at 23:59"


@pytest.mark.parametrize(
    ("zone", "typed"),
    [
        ("America/New_York", "9999-12-31T23:59"),  # 04:59 on 1 January 10000 in UTC
        ("Asia/Tokyo", "0001-01-01T00:00"),  # 31 December of year 0 in UTC
        ("Pacific/Pago_Pago", "0001-01-01T10:00"),  # its old local mean time was UTC+12:37
        ("UTC", "9999-12-31T23:59"),  # an instant that Tokyo could not show on the edit page
    ],
)
def test_a_time_at_the_end_of_the_calendar_is_refused_next_to_the_field(alice, tenant_a, zone, typed):
    Tenant.objects.filter(pk=tenant_a.pk).update(time_zone=zone)
    response = schedule(alice, tenant_a, typed)
    assert response.status_code == 400 and not Mailing.objects.exists()
    assert response.context["form"].errors == {"scheduled_at": ["Enter a valid date/time."]}
    assert 'id="id_scheduled_at_error"' in response.text
    assert f'value="{typed}"' in response.text  # what was typed comes back to be corrected
