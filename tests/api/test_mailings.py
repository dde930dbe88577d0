"""Mailings through the API, by the services the pages use: created from
a template and lists, started (the letters reach a real SMTP server),
paused, resumed, cancelled, followed; every refusal the pages make is
made here too; another tenant's mailing, template or list is not found."""

import pytest

from mailing.models import Letter, Mailing
from tests.mailing.builders import make_list, make_template, run_until_settled, servers_in_order
from tests.servers.factories import make_server
from tests.smtp_servers import smtp_server

from .conftest import make_api, problem

pytestmark = pytest.mark.django_db
URL = "/api/v1/mailings/"


def create(api, template, lists, **extra) -> dict:
    body = {"name": "Spring sale", "template": str(template.public_id), "lists": [str(x.public_id) for x in lists]}
    response = api.post(URL, {**body, **extra})
    assert response.status_code == 201, response.content
    return response.json()


def test_a_mailing_started_through_the_api_reaches_the_smtp_server(api, tenant_a, django_capture_on_commit_callbacks):
    recipients = [f"r{i}@example.com" for i in range(5)]
    customers = make_list(tenant_a, "Customers", recipients)
    template = make_template(tenant_a)
    with smtp_server() as (controller, handler):
        server = make_server(tenant_a, port=controller.port)
        created = create(api, template, [customers])
        assert created["status"] == "draft" and created["servers"] == [str(server.public_id)]
        with django_capture_on_commit_callbacks(execute=True):
            started = api.post(f"{URL}{created['id']}/start/", HTTP_IDEMPOTENCY_KEY="deal-42")
        assert started.status_code == 202, started.content
        mailing = Mailing.objects.get(public_id=created["id"])
        run_until_settled(mailing)
        assert sorted(r.rcpt_tos[0] for r in handler.received) == recipients
    progress = api.get(f"{URL}{created['id']}/").json()
    assert progress["status"] == "completed" and progress["progress"]["sent"] == 5
    assert progress["progress"]["total"] == 5 and progress["letter_count"] == 5
    # The start asked again with the same key is the first answer, not a second start.
    again = api.post(f"{URL}{created['id']}/start/", HTTP_IDEMPOTENCY_KEY="deal-42")
    assert again.status_code == 202 and again["Idempotent-Replayed"] == "true"
    assert Letter.objects.filter(mailing=mailing).count() == 5


def test_pause_resume_cancel_follow_the_state_machine(api, tenant_a):
    make_server(tenant_a)
    created = create(api, make_template(tenant_a), [make_list(tenant_a, "L", ["a@example.com"])])
    action = f"{URL}{created['id']}/"
    body = problem(api.post(action + "pause/"), 409)
    assert body["type"] == "urn:postroute:problem:conflict" and "cannot pause" in body["detail"]
    Mailing.objects.filter(public_id=created["id"]).update(status=Mailing.Status.ACTIVE)
    assert api.post(action + "pause/").json()["status"] == "paused"
    assert api.post(action + "resume/").json()["status"] == "active"
    assert api.post(action + "cancel/").json()["status"] == "cancelled"
    problem(api.post(action + "explode/"), 404)


def test_a_waiting_mailing_says_what_it_waits_for(api, tenant_a):
    from datetime import timedelta

    from django.utils import timezone

    make_server(tenant_a)
    created = create(api, make_template(tenant_a), [make_list(tenant_a, "L", ["a@example.com"])])
    assert created["wait_reason"] is None
    Mailing.objects.filter(public_id=created["id"]).update(
        status=Mailing.Status.WAITING,
        resume_at=timezone.now() + timedelta(minutes=5),
        wait_reason=Mailing.WaitReason.REST,
    )
    assert api.get(f"{URL}{created['id']}/").json()["wait_reason"] == "rest"


def test_a_start_with_nobody_to_send_to_is_refused(api, tenant_a):
    make_server(tenant_a)
    created = create(api, make_template(tenant_a), [make_list(tenant_a, "Empty")])
    body = problem(api.post(f"{URL}{created['id']}/start/"), 409)
    assert "Nobody to send to" in body["detail"]
    assert Mailing.objects.get(public_id=created["id"]).status == "draft"


def test_a_schedule_with_nobody_to_send_to_is_refused_as_a_start_is(api, tenant_a):
    make_server(tenant_a)
    created = create(api, make_template(tenant_a), [make_list(tenant_a, "Empty")], scheduled_at="2030-01-01T10:00Z")
    start = problem(api.post(f"{URL}{created['id']}/start/"), 409)
    schedule = problem(api.post(f"{URL}{created['id']}/schedule/"), 409)
    assert schedule["detail"] == start["detail"] and "Nobody to send to" in schedule["detail"]
    assert Mailing.objects.get(public_id=created["id"]).status == "draft"


def test_without_a_server_the_services_refusal_names_the_field(api, tenant_a):
    body = {
        "name": "x",
        "template": str(make_template(tenant_a).public_id),
        "lists": [str(make_list(tenant_a).public_id)],
    }
    assert problem(api.post(URL, body), 422)["errors"] == {"servers": ["Choose at least one server."]}


def test_another_tenants_template_list_server_and_mailing_are_not_found(api, api_b, tenant_a, tenant_b):
    mine = make_server(tenant_a)
    theirs_server = make_server(tenant_b, name="B")
    template, customers = make_template(tenant_a), make_list(tenant_a)
    theirs_template, theirs_list = make_template(tenant_b), make_list(tenant_b, "B")
    base = {"name": "x", "template": str(template.public_id), "lists": [str(customers.public_id)]}
    assert "template" in problem(api.post(URL, {**base, "template": str(theirs_template.public_id)}), 422)["errors"]
    assert "lists" in problem(api.post(URL, {**base, "lists": [str(theirs_list.public_id)]}), 422)["errors"]
    assert "servers" in problem(api.post(URL, {**base, "servers": [str(theirs_server.public_id)]}), 422)["errors"]
    created = create(api, template, [customers], servers=[str(mine.public_id)])
    for path in ("", "start/", "cancel/"):
        method = api_b.get if not path else api_b.post
        problem(method(f"{URL}{created['id']}/{path}"), 404)
    assert Mailing.objects.get(public_id=created["id"]).status == "draft"
    assert api_b.get(URL).json()["results"] == []


def test_starting_needs_the_mailings_scope(api, tenant_a):
    make_server(tenant_a)
    created = create(api, make_template(tenant_a), [make_list(tenant_a, "L", ["a@example.com"])])
    reader = make_api(tenant_a, ["read"], name="Reader")
    assert problem(reader.post(f"{URL}{created['id']}/start/"), 403)["type"].endswith(":scope")
    assert reader.get(f"{URL}{created['id']}/").json()["status"] == "draft"


def _berlin(tenant) -> None:
    tenant.time_zone = "Europe/Berlin"
    tenant.save(update_fields=["time_zone"])


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("2027-03-28T03:30", "2027-03-28T01:30:00Z"),  # without an offset: Berlin's summer time that day
        ("2027-10-31T02:30", "2027-10-31T00:30:00Z"),  # shown twice that night: the first, still summer time
        ("2027-01-15T10:00:00", "2027-01-15T09:00:00Z"),  # winter time
        ("2027-03-28T02:30Z", "2027-03-28T02:30:00Z"),  # an offset of its own is taken as given
        ("2027-01-15T10:00+05:45", "2027-01-15T04:15:00Z"),
    ],
)
def test_a_mailing_is_scheduled_through_the_api_at_a_time_of_the_organisations_zone(api, tenant_a, typed, stored):
    _berlin(tenant_a)
    make_server(tenant_a)
    created = create(api, make_template(tenant_a), [make_list(tenant_a, "L", ["a@example.com"])], scheduled_at=typed)
    assert created["status"] == "draft" and created["scheduled_at"] == stored
    scheduled = api.post(f"{URL}{created['id']}/schedule/")
    assert scheduled.status_code == 200, scheduled.content
    assert scheduled.json()["status"] == "scheduled" and scheduled.json()["scheduled_at"] == stored
    assert api.post(f"{URL}{created['id']}/unschedule/").json()["status"] == "draft"


def test_the_schedule_action_takes_its_own_time_and_refuses_none(api, tenant_a):
    make_server(tenant_a)
    created = create(api, make_template(tenant_a), [make_list(tenant_a, "L", ["a@example.com"])])
    body = problem(api.post(f"{URL}{created['id']}/schedule/"), 422)
    assert list(body["errors"]) == ["scheduled_at"]
    past = problem(api.post(f"{URL}{created['id']}/schedule/", {"scheduled_at": "2020-01-01T10:00Z"}), 422)
    assert past["errors"]["scheduled_at"] == ["Choose a time in the future, or start now."]
    moved = api.post(f"{URL}{created['id']}/schedule/", {"scheduled_at": "2027-05-01T09:00"})
    assert moved.json()["status"] == "scheduled" and moved.json()["scheduled_at"] == "2027-05-01T09:00:00Z"


def test_a_time_the_clocks_skip_is_refused_next_to_the_field_in_the_callers_language(api, tenant_a):
    _berlin(tenant_a)
    template, customers = make_template(tenant_a), make_list(tenant_a, "L", ["a@example.com"])
    body = {"name": "m", "template": str(template.public_id), "lists": [str(customers.public_id)]}
    refused = problem(api.post(URL, {**body, "scheduled_at": "2027-03-28T02:30"}), 422)
    assert refused["errors"]["scheduled_at"] == [
        "There is no 02:30 on 28 Mar in Europe/Berlin: the clocks go forward then. "
        "Choose another time, for example 03:30."
    ]
    russian = problem(api.post(URL, {**body, "scheduled_at": "2027-03-28T02:30"}, HTTP_ACCEPT_LANGUAGE="ru"), 422)
    assert russian["errors"]["scheduled_at"][0].startswith("28 марта в поясе Europe/Berlin нет времени 02:30")
    assert not Mailing.objects.exists()


@pytest.mark.parametrize("typed", ["0001-01-01T00:00", "9999-12-31T23:59", "2027-02-30T10:00", "tomorrow", 5])
def test_a_time_that_is_no_instant_is_refused_not_a_server_error(api, tenant_a, typed):
    tenant_a.time_zone = "Asia/Kathmandu" if typed != "9999-12-31T23:59" else "America/Adak"
    tenant_a.save(update_fields=["time_zone"])
    template, customers = make_template(tenant_a), make_list(tenant_a, "L", ["a@example.com"])
    body = {"name": "m", "template": str(template.public_id), "lists": [str(customers.public_id)]}
    refused = problem(api.post(URL, {**body, "scheduled_at": typed}), 422)
    assert list(refused["errors"]) == ["scheduled_at"]
    # The formats it takes, written out: a time at the calendar's end showed "{format}".
    (message,) = refused["errors"]["scheduled_at"]
    assert "{" not in message and "YYYY-MM-DDThh:mm" in message


def test_a_mailing_says_which_servers_it_goes_on_without_and_why(api, tenant_a):
    # Its own Reply-To needs SMTPUTF8, which the first server lacks: the
    # page says so beside the server, and the API says it too.
    from mailing import mailings as services
    from mailing.models import MailingServer

    plain, utf8 = {"enable_SMTPUTF8": False}, {"enable_SMTPUTF8": True}
    with servers_in_order(tenant_a, plain, utf8) as [(first, _), (second, _)]:
        template = make_template(tenant_a, reply_to="josé@acme.test")
        created = create(api, template, [make_list(tenant_a, "L", ["a@example.com"])])
        assert created["passed_over"] == []
        mailing = Mailing.objects.get(public_id=created["id"])
        services.mailing_start(mailing=mailing)
        assert run_until_settled(mailing) == "done"
    reason = MailingServer.objects.get(mailing=mailing, server=first).passed_over
    assert "josé@acme.test" in reason
    body = api.get(f"{URL}{created['id']}/").json()
    assert body["passed_over"] == [{"server": str(first.public_id), "reason": reason}]
    assert body["servers"] == [str(first.public_id), str(second.public_id)]
