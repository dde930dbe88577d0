"""The dashboard's version stamp: a poll when nothing changed gets 304 from
one query; any change the JSON shows, made as the dispatcher and the bounce
reader make it, or the minute moving on, gives 200 with the new figures."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.db.models import F
from django.urls import reverse
from django.utils import timezone

from accounts.models import Tenant
from mailing import limits, mailings
from mailing.dashboard.selectors import usage_slots, window_usage
from mailing.models import ContactImport, Letter, Mailing
from servers.models import Health, PlatformQuota
from tests.servers.factories import make_server

from .builders import make_list, make_template
from .dashboard_builders import bucket, running_mailing


@pytest.fixture(autouse=True)
def _postgresql() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the stamp reads PostgreSQL's row versions (SQLite gets no ETag)")


DATA = "dashboard:data"
L = Letter.Status
# The versions of the session's rows and the stamp, in one query: the first
# poll went through the whole request stack and left a pass
# (mailing.dashboard.poll).
QUERIES_304 = 1


def poll(client, etag: str | None = None):
    return client.get(reverse(DATA), **({"HTTP_IF_NONE_MATCH": etag} if etag else {}))


def sent(data: dict) -> str:
    (mailing,) = data["mailings"]
    return {c["key"]: c["count"] for c in mailing["counts"]}["sent"]


@pytest.fixture
def still_minute(monkeypatch):
    """A clock that stays in one minute: the minute is in the stamp, so a
    test that expects 304 must not cross a minute boundary."""
    at = timezone.now().replace(second=30)
    monkeypatch.setattr(timezone, "now", lambda: at)


@pytest.fixture
def sending(tenant_a):
    server = make_server(tenant_a, name="Yandex", max_per_hour=100)
    mailing = running_mailing(tenant_a, [server], queued=5)
    return server, mailing


def test_a_poll_when_nothing_changed_gets_304_from_one_query(alice, still_minute, sending, django_assert_num_queries):
    first = poll(alice.client)
    assert first.status_code == 200 and first["ETag"]
    with django_assert_num_queries(QUERIES_304):
        again = poll(alice.client, first["ETag"])
    assert again.status_code == 304 and again.content == b""
    assert again["ETag"] == first["ETag"] and "no-store" in again["Cache-Control"]


def test_letters_sent_between_two_polls_give_200_with_the_new_figures(alice, tenant_a, sending):
    """The dispatcher's own writes: room reserved, letters claimed, then
    each result recorded; every step between two polls is seen."""
    server, mailing = sending
    etag = poll(alice.client)["ETag"]
    now = timezone.now()
    limits.reserve(server=server, tenant=tenant_a, wanted=2, now=now)
    etag = _changed(alice.client, etag)
    letters = claim(mailing, server, 2, now=now)
    etag = _changed(alice.client, etag)
    record_sent(letters[0], at=timezone.now())
    etag = _changed(alice.client, etag, lambda data: sent(data) == "1")
    fail(letters[1], "550 no such user")
    _changed(alice.client, etag, lambda data: data["mailings"][0]["counts"][2]["count"] == "1")


def test_a_result_whose_claim_the_last_poll_missed_still_changes_the_stamp(alice, tenant_a, sending):
    """Reserved and claimed before the poll is answered is the common
    case; here the claim and the result both fall between two polls."""
    server, mailing = sending
    now = timezone.now()
    limits.reserve(server=server, tenant=tenant_a, wanted=1, now=now)
    etag = poll(alice.client)["ETag"]
    (letter,) = claim(mailing, server, 1, now=now)
    record_sent(letter, at=timezone.now())
    _changed(alice.client, etag, lambda data: sent(data) == "1")


def test_a_bounce_a_server_edit_and_a_new_mailing_each_change_the_stamp(alice, tenant_a, sending):
    server, mailing = sending
    letter = mailing.letters.first()
    Letter.objects.filter(pk=letter.pk).update(status=L.SENT, sent_at=timezone.now() - timedelta(hours=2))
    etag = poll(alice.client)["ETag"]
    Letter.objects.filter(pk=letter.pk).update(status=L.BOUNCED)  # what the bounce reader writes
    etag = _changed(alice.client, etag, lambda data: data["mailings"][0]["counts"][1]["count"] == "1")
    server.health, server.health_error = Health.FAILING, "535 authentication failed"
    server.save(update_fields=["health", "health_error"])
    etag = _changed(alice.client, etag, lambda data: data["servers"][0]["state"] == "failing")
    running_mailing(tenant_a, [server], queued=1, name="Autumn sale")
    etag = _changed(alice.client, etag, lambda data: len(data["mailings"]) == 2)
    # An import under way (the checklist follows contacts and imports).
    ContactImport.objects.create(tenant=tenant_a, file_name="people.csv", file_path="people.csv")
    _changed(alice.client, etag)


def test_the_letters_still_in_flight_of_a_paused_mailing_are_followed(alice, sending):
    """Pausing stops a batch within a tick: its last results still move
    the server's in-flight count."""
    server, mailing = sending
    (letter,) = claim(mailing, server, 1, now=timezone.now())
    Mailing.objects.filter(pk=mailing.pk).update(status=Mailing.Status.PAUSED)
    first = poll(alice.client)
    assert "1 being sent now" in first.json()["servers"][0]["rate_text"]
    record_sent(letter, at=timezone.now())
    _changed(alice.client, first["ETag"], lambda data: "being sent" not in data["servers"][0]["rate_text"])


def test_the_minute_moving_on_changes_the_stamp(alice, tenant_a, sending, monkeypatch):
    """The windows roll with time alone: the same rows a minute later are a
    new stamp (and a rest that ends within the minute, at once)."""
    server, _ = sending
    at = datetime(2026, 3, 10, 14, 30, 5, tzinfo=UTC)
    monkeypatch.setattr(timezone, "now", lambda: at)
    etag = poll(alice.client)["ETag"]
    at = at.replace(second=55)
    assert poll(alice.client, etag).status_code == 304
    at = at + timedelta(seconds=10)  # 14:31:05
    etag = _changed(alice.client, etag)
    server.backoff_until = at + timedelta(seconds=20)
    server.save(update_fields=["backoff_until"])
    etag = _changed(alice.client, etag, lambda data: data["servers"][0]["state"] == "resting")
    at = at + timedelta(seconds=30)  # 14:31:35: the rest is over, the same minute
    _changed(alice.client, etag, lambda data: data["servers"][0]["state"] != "resting")


def test_another_tenants_letters_on_their_own_servers_leave_the_stamp_alone(alice, tenant_b, still_minute, sending):
    other = make_server(tenant_b, name="Theirs")
    theirs = running_mailing(tenant_b, [other], queued=2)
    etag = poll(alice.client)["ETag"]
    limits.reserve(server=other, tenant=tenant_b, wanted=1)
    claim(theirs, other, 1, now=timezone.now())
    assert poll(alice.client, etag).status_code == 304


# The rows the dispatcher writes (mailing.dispatch), written here directly:
# a claim, then each letter's result, each in its own transaction.


def claim(mailing, server, count: int, *, now) -> list[Letter]:
    ids = list(mailing.letters.filter(status=L.QUEUED).order_by("pk").values_list("pk", flat=True)[:count])
    token = uuid.uuid4()
    Letter.objects.filter(pk__in=ids).update(
        status=L.SENDING, claim_token=token, lease_until=now + timedelta(minutes=10), server=server
    )
    return list(Letter.objects.filter(pk__in=ids).order_by("pk"))


def record_sent(letter: Letter, *, at) -> None:
    Letter.objects.filter(pk=letter.pk, claim_token=letter.claim_token).update(
        status=L.SENT, sent_at=at, attempts=F("attempts") + 1, last_reply="250 ok", claim_token=None, lease_until=None
    )


def fail(letter: Letter, reply: str) -> None:
    Letter.objects.filter(pk=letter.pk, claim_token=letter.claim_token).update(
        status=L.FAILED, attempts=F("attempts") + 1, last_reply=reply, claim_token=None, lease_until=None
    )


def _changed(client, etag: str, check=lambda data: True) -> str:
    response = poll(client, etag)
    assert response.status_code == 200, "the stamp did not change"
    assert response["ETag"] != etag and check(response.json())
    return response["ETag"]


# The dashboard's windows, read from its slots, are limits.window_usage's


@pytest.mark.parametrize("rolled_up", [False, True], ids=["minutes", "rolled up into quarters"])
def test_the_dashboards_windows_and_resume_times_are_those_of_the_limits(
    rolled_up, alice, tenant_a, tenant_b, settings
):
    """Every window spent once (per minute, hour, day, own and shared
    quota), buckets of several tenants and minutes, some out of the
    windows: the same Usage, resume times included, as the dispatcher's,
    before and after the minutes past the hour window are rolled up."""
    settings.DEPLOYMENT_MODE = "saas"
    Tenant.objects.filter(pk__in=[tenant_a.pk, tenant_b.pk]).update(created_by=alice.user)
    tenant_a.refresh_from_db()
    now = datetime(2026, 3, 10, 14, 30, 20, tzinfo=UTC)
    servers = [
        make_server(tenant_a, name="minute", max_per_minute=1),
        make_server(tenant_a, name="hour", max_per_hour=7),
        make_server(tenant_a, name="day", max_per_hour=100, max_per_day=15),
        make_server(tenant_a, name="zero", max_per_day=0),
        make_server(tenant_a, name="free"),
        make_server(None, name="own quota", tenant_daily_quota=9),
        make_server(None, name="shared quota", tenant_daily_quota=30, max_per_hour=1000),
    ]
    PlatformQuota.objects.create(server=servers[6], tenant=tenant_b, daily_quota=15)
    ago = [0, 3, 30, 59, 61, 200, 900, 1439, 1441, 1500, 1437]  # 1439 and 1437: one quarter
    for server in servers:
        for i, back in enumerate(ago):
            bucket(server, tenant_a, now - timedelta(minutes=back), 1 + i % 3)
            if server.is_platform:
                bucket(server, tenant_b, now - timedelta(minutes=back), 2)
    if rolled_up:
        assert limits.roll_up(now=now)
    minute = limits.trunc_minute(now)
    slots = usage_slots([s.pk for s in servers], tenant_a, minute)
    mine = window_usage(servers, tenant_a, slots, minute)
    theirs = limits.window_usage(servers, tenant_a, now)
    assert mine == theirs
    assert sum(usage.is_spent for usage in mine.values()) == 6 and mine[servers[3].pk].resume_at == limits.NEVER


def test_the_checklist_in_the_json_ticks_as_the_data_appears(alice, charlie, tenant_a, still_minute):
    """Its mailing steps come with the stamp, its server step with the servers."""
    first = poll(alice.client)
    assert [item["done"] for item in first.json()["checklist"]["items"]] == [False] * 4
    server = make_server(tenant_a)
    etag = _changed(alice.client, first["ETag"], lambda data: data["checklist"]["done"] == 1)
    template = make_template(tenant_a)
    contact_list = make_list(tenant_a, "L", ["a@x.test"])
    etag = _changed(alice.client, etag, lambda data: data["checklist"]["done"] == 3)
    mailing = Mailing(tenant=tenant_a, name="m", template=template)
    mailings.mailing_save(mailing=mailing, lists=[contact_list], servers=[server])
    mailings.mailing_start(mailing=mailing)
    _changed(alice.client, etag, lambda data: data["checklist"]["all_done"])
    assert poll(charlie.client).json()["checklist"]["done"] == 0
