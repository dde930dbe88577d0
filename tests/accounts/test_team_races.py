"""The last owner under concurrency: two owners of the same organisation
leave, or demote each other, at the same moment, through the team views on
threads of their own (PostgreSQL: one connection each). Exactly one of
them succeeds; the organisation always keeps an owner.

To make the race certain rather than lucky, each request pauses after its
check and before its write until the other one gets there too (at most a
second): when the check locks nothing, both pass it."""

import contextlib
import threading
from collections.abc import Callable

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from accounts.models import Membership, Role
from tests.conftest import make_person

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _postgresql() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the race needs PostgreSQL (SQLite serialises every writer)")


@pytest.fixture
def dave(tenant_a):
    """A second owner of tenant A."""
    return make_person("dave@acme.test", tenant_a, Role.OWNER)


def pause_before_writes(monkeypatch) -> None:
    """Both requests wait for each other between the check and the write;
    one that waits in vain (the other is held by a lock) goes on after a
    second."""
    meet = threading.Barrier(2)

    def meeting(real: Callable) -> Callable:
        def wrapper(self, *args: object, **kwargs: object) -> object:
            with contextlib.suppress(threading.BrokenBarrierError):
                meet.wait(timeout=1)
            return real(self, *args, **kwargs)

        return wrapper

    monkeypatch.setattr(Membership, "delete", meeting(Membership.delete))
    monkeypatch.setattr(Membership, "full_clean", meeting(Membership.full_clean))


def at_once(*requests: Callable[[], object]) -> None:
    start = threading.Barrier(len(requests))
    errors: list[BaseException] = []

    def run(request: Callable[[], object]) -> None:
        try:
            start.wait(timeout=10)
            request()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()  # the thread's own connection

    threads = [threading.Thread(target=run, args=(r,)) for r in requests]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors


def leave(client: Client) -> Callable[[], object]:
    return lambda: client.post(reverse("accounts:team_leave"))


def demote(client: Client, person) -> Callable[[], object]:
    url = reverse("accounts:member_role", args=[Membership.objects.get(user=person.user).public_id])
    return lambda: client.post(url, {"role": Role.ADMIN})


def owners(tenant) -> list[str]:
    return list(Membership.objects.filter(tenant=tenant, role=Role.OWNER).values_list("user__email", flat=True))


def test_two_owners_leaving_at_once_leave_one_owner(alice, dave, tenant_a, monkeypatch):
    pause_before_writes(monkeypatch)
    at_once(leave(alice.client), leave(dave.client))
    assert len(owners(tenant_a)) == 1
    assert Membership.objects.filter(tenant=tenant_a).count() == 1  # exactly one left


def test_two_owners_demoting_each_other_at_once_leave_one_owner(alice, dave, tenant_a, monkeypatch):
    pause_before_writes(monkeypatch)
    at_once(demote(alice.client, dave), demote(dave.client, alice))
    assert len(owners(tenant_a)) == 1
    assert Membership.objects.filter(tenant=tenant_a, role=Role.ADMIN).count() == 1


def test_one_owner_leaving_while_the_other_steps_down_leaves_one_owner(alice, dave, tenant_a, monkeypatch):
    pause_before_writes(monkeypatch)
    at_once(leave(alice.client), demote(dave.client, dave))
    assert len(owners(tenant_a)) == 1
    changed = Membership.objects.filter(tenant=tenant_a).count() == 1, owners(tenant_a) == ["alice@acme.test"]
    assert sum(changed) == 1  # alice left, or dave stepped down: not both
