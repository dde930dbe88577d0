"""The dashboard through HTTP: the JSON and the texts it carries, the page
and the home that embeds it, tenant scope, and a query count that does not
grow with the number of servers and mailings."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone, translation

from mailing.models import Mailing
from mailing.views.dashboard import payload
from servers.models import Health
from tests.conftest import make_person
from tests.servers.factories import make_server

from .builders import make_list
from .dashboard_builders import bucket, minutes, running_mailing

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 3, 10, 14, 30, 20, tzinfo=UTC)
M = NOW.replace(second=0)
DATA = "dashboard:data"


def test_the_json_tells_the_limit_and_when_sending_resumes(tenant_a):
    server = make_server(tenant_a, name="Yandex", max_per_hour=10, max_per_day=300)
    bucket(server, tenant_a, M - minutes(20), 10)
    with timezone.override("UTC"):
        data = payload(tenant_a, NOW)
    (row,) = data["servers"]
    assert (row["name"], row["state"], row["state_label"]) == ("Yandex", "limit", "Limit reached")
    assert row["notice"] == "Hourly limit reached — resumes today at 15:11 UTC"
    assert row["resume_at"] == "2026-03-10T15:11:00+00:00"
    hour, day, quota = row["windows"]
    assert (hour["text"], hour["fill"], hour["level"]) == ("10 sent · 0 left of 10", 100.0, "full")
    assert (day["text"], day["fill"], day["level"]) == ("10 sent · 290 left of 300", 3.3, "ok")
    assert not quota["shown"]
    assert row["chart"]["counts"][-1] == 10 and row["chart"]["heights"][-1] == 46
    assert row["chart"]["shown"][-1] == "10"


def test_the_charts_numbers_are_written_in_the_language(tenant_a):
    server = make_server(tenant_a, name="Yandex")
    bucket(server, tenant_a, M - timedelta(minutes=5), 12345)
    with translation.override("vi"):
        (row,) = payload(tenant_a, NOW)["servers"]
    assert row["chart"]["shown"][-1] == "12.345"


def test_the_json_says_why_a_server_fails_and_how_to_fix_it(tenant_a):
    error, hint = "535 5.7.8 bad credentials", "Use an app password."
    make_server(tenant_a, health=Health.FAILING, health_error=error, health_hint=hint)
    (row,) = payload(tenant_a, NOW)["servers"]
    assert (row["state"], row["notice"], row["hint"]) == ("failing", f"Failing — {error}", hint)


@pytest.mark.parametrize(
    ("spec", "waiting", "finish"),
    [
        ({"sending": 2}, "", "At current limits: finishes in a moment"),
        (
            {"queued": 5, "status": Mailing.Status.WAITING, "resume_at": M + minutes(31)},
            "Waiting for limits until today at 15:01 UTC",
            "At current limits: finishes today at 15:01",
        ),
        ({"queued": 150}, "", "At current limits: finishes today at 16:02"),
        ({"queued": 1000}, "", "At current limits: finishes tomorrow at 14:01"),
        ({"queued": 5000}, "", "At current limits: finishes around 15 Mar"),
    ],
)
def test_the_json_says_when_each_mailing_finishes(tenant_a, spec, waiting, finish):
    server = make_server(tenant_a, max_per_hour=100, max_per_day=1000)
    bucket(server, tenant_a, M - minutes(30), 100)
    running_mailing(tenant_a, [server], started_at=NOW - minutes(60), **spec)
    with timezone.override("UTC"):
        (row,) = payload(tenant_a, NOW)["mailings"]
    assert (row["waiting_text"], row["finish_text"]) == (waiting, finish)


def test_a_server_the_mailing_goes_on_without_gives_its_finish_no_room(tenant_a):
    # A server passed over (the mailing's own international address, which
    # it cannot carry) sends none of the mailing's letters: the estimate
    # counted its room, and a mailing left to a server at its limit
    # "finished in a moment" through the one it no longer uses.
    passed = make_server(tenant_a, name="Plain")
    server = make_server(tenant_a, name="Unicode", max_per_hour=100, max_per_day=1000)
    bucket(server, tenant_a, M - minutes(30), 100)
    mailing = running_mailing(tenant_a, [passed, server], started_at=NOW - minutes(60), queued=150)
    mailing.server_links.filter(server=passed).update(passed_over="Goes on without the server Plain")
    with timezone.override("UTC"):
        (row,) = payload(tenant_a, NOW)["mailings"]
    assert row["finish_text"] == "At current limits: finishes today at 16:02"


def test_the_json_draws_the_progress_of_each_mailing(alice, tenant_a):
    server = make_server(tenant_a)
    mailing = running_mailing(tenant_a, [server], queued=2, sent_at=[timezone.now()] * 5, failed=2, bounced=1)
    (row,) = alice.client.get(reverse(DATA)).json()["mailings"]
    assert row["id"] == str(mailing.public_id) and row["url"] == f"/mailings/{mailing.public_id}/"
    assert {c["key"]: c["count"] for c in row["counts"]} == {"sent": "5", "bounced": "1", "failed": "2", "queued": "2"}
    assert [(b["status"], b["x"], b["width"]) for b in row["bars"]] == [
        ("sent", 0.0, 50.0), ("bounced", 50.0, 10.0), ("failed", 60.0, 20.0), ("queued", 80.0, 20.0)
    ]  # fmt: skip
    # No limit and two letters left: it finishes in a moment, no hourly pace to tell.
    assert row["rate_text"] == "5 sent in the last 10 min"


def test_the_hourly_pace_is_the_finish_estimates_not_the_last_bursts(tenant_a):
    """30 letters in the last 10 minutes on a 30-an-hour server is not
    "about 180 an hour": the rest goes out at about 30 an hour."""
    server = make_server(tenant_a, max_per_hour=30)
    bucket(server, tenant_a, M - minutes(5), 30)
    running_mailing(tenant_a, [server], queued=60, sent_at=[NOW - minutes(5)] * 30, started_at=NOW - minutes(6))
    with timezone.override("UTC"):
        (row,) = payload(tenant_a, NOW)["mailings"]
    assert row["finish_text"] == "At current limits: finishes today at 16:27"
    assert row["rate_text"] == "30 sent in the last 10 min (about 31 an hour)"


# Tenant scope


def test_another_tenants_servers_and_mailings_never_appear(alice, charlie, tenant_a, tenant_b, settings):
    settings.DEPLOYMENT_MODE = "saas"
    platform = make_server(None, name="Platform", max_per_hour=1000, tenant_daily_quota=500)
    acme = make_server(tenant_a, name="Acme mailbox", max_per_hour=50)
    globex = make_server(tenant_b, name="Globex mailbox", max_per_hour=50)
    now = timezone.now()
    bucket(acme, tenant_a, now, 7)
    bucket(platform, tenant_a, now, 30)
    bucket(platform, tenant_b, now, 5)
    acme_mailing = running_mailing(tenant_a, [acme, platform], queued=3, name="Acme spring sale")
    globex_mailing = running_mailing(tenant_b, [globex, platform], queued=3, name="Globex news")

    theirs = charlie.client.get(reverse(DATA))
    assert theirs.status_code == 200
    for secret in ("Acme", str(acme.public_id), str(acme_mailing.public_id)):
        assert secret not in theirs.content.decode()
    data = theirs.json()
    assert [s["name"] for s in data["servers"]] == ["Globex mailbox", "Platform"]
    assert [m["name"] for m in data["mailings"]] == ["Globex news"]
    # The shared server shows charlie's letters only, and his own quota.
    shared = data["servers"][1]
    assert [w["sent"] for w in shared["windows"]] == [5, 5, 5] and shared["chart"]["counts"][-1] == 5
    assert shared["windows"][2]["left"] == 495

    mine = alice.client.get(reverse(DATA)).content.decode()
    assert "Globex" not in mine and str(globex_mailing.public_id) not in mine


def test_the_dashboard_needs_a_signed_in_member_of_a_tenant(client, bob, db):
    assert client.get(reverse(DATA)).status_code == 302  # to the login
    loner = make_person("loner@nowhere.test", None)
    assert loner.client.get(reverse(DATA))["Location"] == reverse("accounts:tenant_new")
    assert bob.client.get(reverse(DATA)).status_code == 200  # any member may look
    assert "no-store" in bob.client.get(reverse(DATA))["Cache-Control"]


# Fixed number of queries


# The JSON itself: the servers, the usage slots, the platform quotas, the
# spent servers' resume times, the letters in flight, the holds, the
# running mailings and their letter counts, rates and servers (2). The
# getting-started steps come with the servers and the stamp.
JSON_QUERIES = 8
# A session's first poll: the versions of its rows (mailing.dashboard.poll),
# then the whole request stack (session, user, OTP device, membership), the
# stamp and the JSON. Every later one: the versions and the stamp in one
# query, then the JSON.
FIRST_POLL = 1 + 4 + 1 + JSON_QUERIES
NEXT_POLLS = 1 + JSON_QUERIES
if connection.vendor != "postgresql":
    # SQLite (development): no stamp and no row versions, so every poll
    # takes the whole way, and the JSON's reads are the ORM's where
    # PostgreSQL has one statement (the usage windows summed again, the
    # mailings' progress, rates and servers apart, the getting-started
    # steps): as many queries for 1 server as for 50 all the same.
    FIRST_POLL = NEXT_POLLS = 4 + 12


@pytest.mark.parametrize("count", [1, 50])
def test_the_json_runs_the_same_queries_for_1_and_for_50_servers(
    alice, tenant_a, settings, django_assert_num_queries, count
):
    settings.DEPLOYMENT_MODE = "saas"
    platform = make_server(None, name="Platform", tenant_daily_quota=100)
    now = timezone.now()
    servers = [make_server(tenant_a, name=f"S{i}", max_per_hour=10, priority=i) for i in range(count)]
    for server in servers:
        bucket(server, tenant_a, now - minutes(3), 10)  # every one spent: the most work
    for i in range(count):
        running_mailing(tenant_a, [*servers, platform], queued=2, sent_at=[now], name=f"m{i}")
    with django_assert_num_queries(FIRST_POLL):
        data = alice.client.get(reverse(DATA)).json()
    with django_assert_num_queries(NEXT_POLLS):
        again = alice.client.get(reverse(DATA)).json()
    # The same dashboard (the estimates move with the clock).
    assert again["servers"] == data["servers"] and again["checklist"] == data["checklist"]
    assert [m["counts"] for m in again["mailings"]] == [m["counts"] for m in data["mailings"]]
    assert len(data["servers"]) == count + 1 and len(data["mailings"]) == count
    assert all(s["state"] == "limit" for s in data["servers"][:-1])


# The pages


def test_the_home_page_shows_the_checklist_above_the_dashboard_until_it_is_done(alice, tenant_a):
    home = alice.client.get(reverse("home")).content.decode()
    assert "Getting started" in home and 'data-key="server"' in home
    assert "data-dashboard-json=" in home and "No sending server yet" in home
    server = make_server(tenant_a, name="Yandex")
    running_mailing(tenant_a, [server], queued=1, name="Spring sale")  # a template and a started mailing
    make_list(tenant_a, "L", ["a@x.test"])
    home = alice.client.get(reverse("home")).content.decode()
    assert "Getting started" not in home
    assert "Yandex" in home and "Spring sale" in home and "js/dashboard.js" in home


def test_the_dashboard_page_draws_what_the_json_says(alice, tenant_a):
    server = make_server(tenant_a, name="Yandex", max_per_hour=10)
    bucket(server, tenant_a, timezone.now(), 10)
    page = alice.client.get(reverse("dashboard:page"))
    assert page.status_code == 200
    (row,) = alice.client.get(reverse(DATA)).json()["servers"]
    html = page.content.decode()
    assert row["notice"] in html and row["windows"][0]["text"] in html
    assert "style=" not in html  # the CSP allows no style attributes


def test_a_limit_of_0_is_named_alone_when_another_window_is_merely_spent(tenant_a):
    # The hourly limit is spent and would come back; the daily limit of 0
    # never does: the notice says which one is 0, not both.
    server = make_server(tenant_a, name="Yandex", max_per_hour=10, max_per_day=0)
    bucket(server, tenant_a, M - minutes(20), 10)
    with timezone.override("UTC"):
        (row,) = payload(tenant_a, NOW)["servers"]
    assert row["notice"] == "Daily limit: 0 — nothing goes out until it is raised."
