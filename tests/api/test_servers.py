"""Servers through the API: each window's limit, use and what is left,
when a spent server resumes, and its health, as the dashboard reckons
them; the platform's server is shown, another tenant's never."""

from datetime import timedelta

import pytest
from django.utils import timezone

from servers.models import Health
from tests.mailing.dashboard_builders import bucket
from tests.servers.factories import make_server

from .conftest import make_api, problem

pytestmark = pytest.mark.django_db
URL = "/api/v1/servers/"


def test_limits_what_is_left_and_when_it_resumes(api, tenant_a):
    server = make_server(tenant_a, name="Yandex", max_per_hour=10, max_per_day=100)
    now = timezone.now()
    bucket(server, tenant_a, now - timedelta(minutes=30), 10)  # the hour is spent
    bucket(server, tenant_a, now - timedelta(hours=5), 20)
    [row] = api.get(URL).json()
    assert row["id"] == str(server.public_id) and row["name"] == "Yandex" and not row["platform"]
    assert row["hour"] == {"limit": 10, "used": 10, "left": 0}
    assert row["day"] == {"limit": 100, "used": 30, "left": 70}
    assert row["left"] == 0 and row["state"] == "limit"
    resume = timezone.datetime.fromisoformat(row["resume_at"])
    assert timedelta(minutes=29) <= resume - now <= timedelta(minutes=31)
    assert api.get(f"{URL}{server.public_id}/").json() == row


def test_health_and_the_platform_server(api, tenant_a):
    make_server(tenant_a, name="Broken", health=Health.FAILING)
    make_server(None, name="Platform", max_per_day=1000)
    rows = {row["name"]: row for row in api.get(URL).json()}
    assert rows["Broken"]["health"] == "failing" and rows["Broken"]["state"] == "failing"
    assert rows["Platform"]["platform"] and rows["Platform"]["day"]["limit"] == 1000


def test_another_tenants_server_is_404_and_the_scope_is_needed(api, tenant_a, tenant_b):
    theirs = make_server(tenant_b, name="Theirs")
    problem(api.get(f"{URL}{theirs.public_id}/"), 404)
    assert api.get(URL).json() == []
    problem(make_api(tenant_a, ["read"], name="Reader").get(URL), 403)
