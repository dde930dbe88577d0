"""The JSON the mailings list and a mailing's page poll: what they carry
(state, resume time, progress, letters, history, the actions allowed), the
pages drawn from the same dictionaries, tenant scope, and a query count that
does not grow with the number of mailings, letters and events."""

from datetime import timedelta

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from mailing import mailings as services
from mailing.models import Letter, Mailing, MailingEvent
from tests.servers.factories import make_server

from .dashboard_builders import running_mailing

pytestmark = pytest.mark.django_db
S = Mailing.Status


def live(person, mailing: Mailing, query: str = "") -> dict:
    response = person.client.get(reverse("mailings:live", args=[mailing.public_id]) + query)
    assert response.status_code == 200 and response["Cache-Control"].startswith("max-age=0")
    return response.json()


def test_a_waiting_mailing_tells_when_it_resumes(alice, tenant_a):
    server = make_server(tenant_a, name="Yandex", max_per_hour=5)
    resume = timezone.now() + timedelta(minutes=40)
    mailing = running_mailing(
        tenant_a, [server], queued=3, sent_at=[timezone.now()] * 5, status=S.WAITING, resume_at=resume
    )
    clock = timezone.localtime(resume).strftime("%H:%M")
    data = live(alice, mailing)["mailing"]
    assert data["status_label"] == "Waiting for limits"
    assert data["waiting_text"].startswith("Waiting for limits until") and f"at {clock}" in data["waiting_text"]
    assert data["actions"] == ["pause", "cancel"]
    assert {c["key"]: c["count"] for c in data["counts"]} == {"sent": "5", "bounced": "0", "failed": "0", "queued": "3"}
    page = alice.client.get(reverse("mailings:detail", args=[mailing.public_id])).content.decode()
    assert data["waiting_text"] in page and data["finish_text"] in page


def test_the_letters_and_the_history_follow_the_mailing(alice, tenant_a):
    server = make_server(tenant_a, name="Own")
    mailing = running_mailing(tenant_a, [server], queued=2, failed=1)
    Letter.objects.filter(mailing=mailing, status=Letter.Status.FAILED).update(last_reply="550 5.1.1 no such user")
    services.transition(mailing=mailing, action="pause", by=alice.user)
    data = live(alice, mailing)
    assert [(le["email"], le["status_label"]) for le in data["letters"]] == [
        ("r0@x.test", "Queued"), ("r1@x.test", "Queued"), ("r2@x.test", "Failed")
    ]  # fmt: skip
    assert data["letters"][2]["last_reply"] == "550 5.1.1 no such user"
    assert [le["email"] for le in live(alice, mailing, "?status=failed")["letters"]] == ["r2@x.test"]
    assert data["events"][-1]["text"].endswith(f"Sending → Paused by {alice.user.email}")
    assert data["mailing"]["actions"] == ["resume", "cancel"] and data["mailing"]["finish_text"] == ""


def test_another_tenants_mailing_is_a_404(charlie, tenant_a):
    mailing = running_mailing(tenant_a, [make_server(tenant_a)], queued=1)
    assert charlie.client.get(reverse("mailings:live", args=[mailing.public_id])).status_code == 404
    assert mailing.name not in charlie.client.get(reverse("mailings:list_live")).content.decode()


def test_the_list_groups_the_mailings_with_what_may_be_done(alice, tenant_a):
    server = make_server(tenant_a)
    waiting = running_mailing(
        tenant_a, [server], queued=2, status=S.WAITING, resume_at=timezone.now() + timedelta(minutes=5), name="W"
    )
    running_mailing(tenant_a, [server], sent_at=[timezone.now()], status=S.COMPLETED, name="Done")
    data = alice.client.get(reverse("mailings:list_live")).json()
    (row,) = data["running"]
    assert (row["name"], row["status_label"]) == ("W", "Waiting for limits")
    assert row["note"].startswith("resumes today at ") or row["note"].startswith("resumes tomorrow at ")
    assert set(row["actions"]) == {"pause", "cancel"}
    assert row["actions"]["pause"] == reverse("mailings:action", args=[waiting.public_id, "pause"])
    assert [m["name"] for m in data["finished"]] == ["Done"] and data["finished"][0]["actions"] == {}
    assert data["drafts"] == []
    assert data["counts"] == {"running": 1, "drafts": 0, "finished": 1}


# Fixed query counts: session, user, OTP device, membership; the list reads
# the mailings and their counts (2) and how many each group holds; a
# running mailing, its tenant, the dashboard's reads, its letters, its
# creator and its history.
LIST_QUERIES = 4 + 3
DETAIL_QUERIES = 4 + 10
if connection.vendor != "postgresql":
    # SQLite (development): the dashboard's reads are the ORM's where
    # PostgreSQL has one statement (tests/mailing/test_dashboard_views.py).
    DETAIL_QUERIES = 4 + 13


@pytest.mark.parametrize("count", [1, 20])
def test_the_list_runs_the_same_queries_for_1_and_for_20_mailings(alice, tenant_a, django_assert_num_queries, count):
    server = make_server(tenant_a)
    for i in range(count):
        running_mailing(tenant_a, [server], queued=2, sent_at=[timezone.now()], name=f"m{i}")
    with django_assert_num_queries(LIST_QUERIES):
        data = alice.client.get(reverse("mailings:list_live")).json()
    assert len(data["running"]) == count


@pytest.mark.parametrize("count", [1, 20])
def test_a_mailing_runs_the_same_queries_for_1_and_for_20_servers_letters_and_events(
    alice, tenant_a, django_assert_num_queries, count
):
    servers = [make_server(tenant_a, name=f"S{i}", max_per_hour=10, priority=i) for i in range(count)]
    mailing = running_mailing(tenant_a, servers, queued=count, sent_at=[timezone.now()] * count)
    for i in range(count):
        running_mailing(tenant_a, servers, queued=1, name=f"other {i}")
        MailingEvent.objects.create(mailing=mailing, from_status=S.ACTIVE, to_status=S.ACTIVE, by=alice.user)
    with django_assert_num_queries(DETAIL_QUERIES):
        data = live(alice, mailing)
    assert len(data["letters"]) == 2 * count and len(data["events"]) == count + 1
