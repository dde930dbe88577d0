"""How many connection tests may start: CONNECTION_TESTS_PER_MINUTE per
organisation, and per user across all their organisations, so that three
organisations do not make thirty tests a minute."""

import threading

import pytest
from django.db import connection
from django.urls import reverse

from accounts import services as accounts
from accounts.middleware import SESSION_TENANT_KEY
from servers import services
from servers.models import ConnectionTest
from tests.conftest import make_person
from tests.services import require_postgresql

from .factories import make_server

pytestmark = pytest.mark.django_db


def start_in(person, tenant) -> int:
    session = person.client.session
    session[SESSION_TENANT_KEY] = str(tenant.public_id)
    session.save()
    server = make_server(tenant)
    return person.client.post(reverse("servers:test_start", args=[server.public_id]), follow=True)


def test_a_user_with_three_organisations_gets_the_limit_once(alice, tenant_a, settings):
    settings.CONNECTION_TESTS_PER_MINUTE = 2
    others = [accounts.tenant_create(name=f"Acme {i}", owner=alice.user) for i in range(2)]
    pages = [start_in(alice, tenant) for tenant in (tenant_a, *others)]
    assert [b"Too many connection tests" in p.content for p in pages] == [False, False, True]
    assert ConnectionTest.objects.count() == 2
    assert set(ConnectionTest.objects.values_list("started_by", flat=True)) == {alice.user.pk}


def test_another_user_of_the_same_organisation_is_counted_apart_up_to_its_limit(alice, carol, tenant_a, settings):
    settings.CONNECTION_TESTS_PER_MINUTE = 2
    assert b"Too many" not in start_in(alice, tenant_a).content
    assert b"Too many" not in start_in(carol, tenant_a).content
    assert b"Too many" in start_in(carol, tenant_a).content  # the organisation's own limit
    assert ConnectionTest.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_racing_requests_of_one_user_never_exceed_the_limit(settings):
    require_postgresql()
    settings.CONNECTION_TESTS_PER_MINUTE = 5
    settings.MAX_ORGANISATIONS_PER_USER = 5
    user = make_person("racer@acme.test", None).user
    tenants = [accounts.tenant_create(name=f"R{i}", owner=user) for i in range(4)]
    servers = [make_server(t) for t in tenants]
    start = threading.Barrier(12)
    refused: list[int] = []

    def worker(i: int) -> None:
        try:
            start.wait()
            services.connection_test_start(tenant=tenants[i % 4], server=servers[i % 4], by=user)
        except services.TooManyTests:
            refused.append(i)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert ConnectionTest.objects.filter(started_by=user).count() == 5 and len(refused) == 7
