"""One account, several organisations: on a platform server they share one
daily quota (the largest of theirs), reserved exactly under concurrency,
sent through by the dispatcher and shown truthfully on the dashboard."""

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from accounts import services as accounts
from accounts.models import Tenant
from mailing import limits
from mailing import mailings as services
from mailing.models import Letter, Mailing, UsageBucket
from mailing.views.dashboard import payload
from servers.models import PlatformQuota
from tests.conftest import make_person
from tests.servers.factories import make_server
from tests.services import require_postgresql
from tests.smtp_servers import smtp_server

from .builders import make_list, make_template
from .builders import run_until_settled as settle
from .dashboard_builders import running_mailing
from .test_dashboard_views import FIRST_POLL

pytestmark = pytest.mark.django_db
NOW = datetime(2025, 3, 10, 12, 30, 15, tzinfo=UTC)
T = NOW.replace(second=0)


@pytest.fixture
def saas(settings):
    settings.DEPLOYMENT_MODE = "saas"
    settings.MAX_ORGANISATIONS_PER_USER = 5


@pytest.fixture
def platform(saas):
    return make_server(None, name="Platform", tenant_daily_quota=50)


@pytest.fixture
def five(alice, tenant_a, saas) -> list[Tenant]:
    """Alice's own organisation and four more she creates."""
    Tenant.objects.filter(pk=tenant_a.pk).update(created_by=alice.user)
    tenant_a.refresh_from_db()
    return [tenant_a, *(accounts.tenant_create(name=f"Acme {i}", owner=alice.user) for i in range(4))]


def reserve(platform, tenant, wanted: int, now=NOW) -> int:
    return limits.reserve(server=platform, tenant=tenant, wanted=wanted, now=now).granted


def test_five_organisations_of_one_account_share_one_quota(platform, five, tenant_b):
    assert [reserve(platform, t, 50) for t in five] == [50, 0, 0, 0, 0]
    # Another account is not touched.
    assert reserve(platform, tenant_b, 50) == 50
    usage = limits.window_usage([platform], five[3], now=NOW)[platform.pk]
    assert (usage.tenant_day_used, usage.tenant_day_left) == (0, 50)
    assert (usage.group_day_used, usage.group_quota, usage.group_day_left, usage.group_size) == (50, 50, 0, 5)
    assert usage.is_spent and usage.resume_at == T + timedelta(minutes=1441)


def test_the_shared_quota_is_the_largest_and_each_keeps_its_own(platform, five):
    first, second, third = five[:3]
    PlatformQuota.objects.create(server=platform, tenant=first, daily_quota=80)
    PlatformQuota.objects.create(server=platform, tenant=third, daily_quota=5)  # held short by staff
    assert reserve(platform, third, 100) == 5
    assert reserve(platform, second, 100) == 50  # its own quota first
    assert reserve(platform, first, 100) == 25  # 80 shared, 55 already used


def test_no_quota_on_one_of_them_leaves_the_others_own_quotas(platform, five):
    PlatformQuota.objects.create(server=platform, tenant=five[0], daily_quota=10)
    platform.tenant_daily_quota = None
    platform.save(update_fields=["tenant_daily_quota"])
    assert reserve(platform, five[0], 100) == 10
    assert reserve(platform, five[1], 100) == 100


def test_an_organisation_made_by_staff_or_before_creators_were_kept_stands_alone(platform, tenant_a, tenant_b):
    assert tenant_a.created_by_id is None and tenant_b.created_by_id is None
    assert reserve(platform, tenant_a, 50) == 50 and reserve(platform, tenant_b, 50) == 50


@pytest.mark.django_db(transaction=True)
def test_racing_organisations_of_one_account_never_exceed_the_shared_quota(settings):
    require_postgresql()
    settings.DEPLOYMENT_MODE = "saas"
    settings.MAX_ORGANISATIONS_PER_USER = 5
    owner = make_person("racer@acme.test", None).user
    tenants = [accounts.tenant_create(name=f"R{i}", owner=owner) for i in range(4)]
    platform = make_server(None, name="Platform", tenant_daily_quota=60)
    start = threading.Barrier(8)
    granted: list[int] = []
    errors: list[BaseException] = []

    def worker(tenant: Tenant) -> None:
        try:
            start.wait()
            mine = 0
            while granted_now := limits.reserve(server=platform, tenant=tenant, wanted=3, now=NOW).granted:
                mine += granted_now
            granted.append(mine)
        except BaseException as error:
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(tenants[i % 4],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(granted) == 60
    assert sum(UsageBucket.objects.filter(server=platform).values_list("count", flat=True)) == 60


def start_mailing(tenant, server, count: int) -> Mailing:
    contacts = make_list(tenant, "L", [f"r{i:03d}@x.test" for i in range(count)])
    mailing = Mailing(tenant=tenant, name=f"m {tenant.name}", template=make_template(tenant))
    services.mailing_save(mailing=mailing, lists=[contacts], servers=[server])
    services.mailing_start(mailing=mailing)
    return mailing


def test_through_the_dispatcher_three_organisations_send_one_quota(five, settings):
    settings.DISPATCH_BATCH = 4
    now = timezone.now()
    with smtp_server() as (controller, handler):
        platform = make_server(None, name="Platform", port=controller.port, tenant_daily_quota=10)
        mailings = [start_mailing(t, platform, 8) for t in five[:3]]
        results = [settle(m, now) for m in mailings]
    assert len(handler.received) == 10
    assert results == ["done", "waiting", "waiting"]
    assert Letter.objects.filter(status=Letter.Status.SENT).count() == 10
    waiting = Mailing.objects.get(pk=mailings[2].pk)
    assert waiting.resume_at >= now + timedelta(hours=24)


# The dashboard


def test_the_dashboard_shows_the_shared_quota_and_what_all_of_them_sent(platform, five):
    UsageBucket.objects.create(server=platform, tenant=five[0], minute=T - timedelta(minutes=5), count=30)
    UsageBucket.objects.create(server=platform, tenant=five[1], minute=T - timedelta(minutes=5), count=20)
    with timezone.override("UTC"):
        data = payload(five[1], NOW)
    (row,) = data["servers"]
    quota = row["windows"][2]
    assert quota["shown"] and quota["label"] == "Daily quota shared by 5 organisations"
    assert quota["text"] == "50 by all of them (20 here) · 0 left of 50"
    assert (row["state"], row["notice"]) == ("limit", "Shared daily quota reached — resumes tomorrow at 12:26 UTC")


def test_alone_the_dashboard_shows_the_own_quota(platform, tenant_b):
    UsageBucket.objects.create(server=platform, tenant=tenant_b, minute=T, count=5)
    with timezone.override("UTC"):
        (row,) = payload(tenant_b, NOW)["servers"]
    assert row["windows"][2]["label"] == "Your daily quota" and row["windows"][2]["text"] == "5 sent · 45 left of 50"


def test_the_dashboard_runs_the_same_queries_in_a_group(alice, platform, five, django_assert_num_queries):
    UsageBucket.objects.create(server=platform, tenant=five[1], minute=limits.trunc_minute(timezone.now()), count=50)
    running_mailing(five[0], [platform], queued=2, sent_at=[timezone.now()])
    with django_assert_num_queries(FIRST_POLL):
        data = alice.client.get(reverse("dashboard:data")).json()
    assert data["servers"][0]["state"] == "limit"


def test_the_servers_page_says_the_quota_is_shared(alice, platform, five):
    page = alice.client.get(reverse("servers:list")).content.decode()
    assert "50 a day shared by the 5 organisations created by the same account" in page


def test_alone_a_spent_quota_is_named_once_and_not_as_shared(platform, tenant_b):
    # An organisation alone in its group: its own quota is the "shared" one
    # over the same letters; the notice names the quota it has, once.
    UsageBucket.objects.create(server=platform, tenant=tenant_b, minute=T - timedelta(minutes=5), count=50)
    with timezone.override("UTC"):
        (row,) = payload(tenant_b, NOW)["servers"]
    assert (row["state"], row["notice"]) == ("limit", "Daily quota reached — resumes tomorrow at 12:26 UTC")
