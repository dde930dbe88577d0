"""Twenty tenants' mailings started at once and sent by four real worker
processes: no server takes a single letter over its hourly or daily limit
(the sinks and the limit accounting agree), every server receives only its
own tenant's letters, no letter goes out twice, and what was not sent waits
in the queue of a mailing that waits for its limits (a mailing with nothing
left is done).

Two races between the chains of one mailing, which the load meets now and
then, are also played here one step at a time: a chain that finds no room
because another has just reserved it decides the mailing waits; that must
neither leave a finished mailing waiting nor stop the other chain's batch."""

import logging
import random
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db.models import Sum
from django.utils import timezone

from accounts.models import Tenant
from mailing import dispatch, limits
from mailing.models import DispatchChain, Letter, Mailing, UsageBucket
from mailing.sink import SinkHandler
from servers.models import SmtpServer
from tests.servers.factories import make_server
from tests.services import require_postgresql
from tests.smtp_servers import smtp_server

from .workers import message_id, message_ids, redis_broker, start_mailing, start_workers, stop, tick, wait_for

pytestmark = pytest.mark.django_db(transaction=True)
L = Letter.Status
M = Mailing.Status
TENANTS = 20
WORKERS = 4


@pytest.fixture
def broker() -> str:
    require_postgresql()
    return redis_broker(12)


def chain_b_runs_after_a_reserves(monkeypatch: pytest.MonkeyPatch, mailing: Mailing, now: datetime) -> list[str]:
    """Chain B runs run_mailing right after chain A's reservation, before A
    claims: what B returns is collected."""
    reserve, b_results = limits.reserve, []

    def reserve_then_chain_b(**kwargs: Any) -> limits.Reservation:
        reservation = reserve(**kwargs)
        if not b_results:
            b_results.append("running")  # B's own reservation comes back here
            b_results[0] = dispatch.run_mailing(mailing_id=mailing.pk, now=now)
        return reservation

    monkeypatch.setattr(limits, "reserve", reserve_then_chain_b)
    return b_results


def test_the_chain_that_sends_the_last_letters_finishes_the_mailing(tenant_a, monkeypatch):
    """B finds the room taken and letters pending, and the mailing waits; A
    then sends those last letters. Nothing is left: the mailing is done, not
    waiting an hour (or a day) with nothing to send."""
    now = timezone.now()
    with smtp_server() as (controller, handler):
        # One connection: A reserves the room for all 10 at once.
        server = make_server(tenant_a, port=controller.port, max_per_hour=10, max_connections=1)
        mailing = start_mailing(tenant_a, [server], 3)
        b_results = chain_b_runs_after_a_reserves(monkeypatch, mailing, now)
        a_results = [dispatch.run_mailing(mailing_id=mailing.pk, now=now) for _ in range(2)]
    assert b_results == ["waiting"]
    assert len(handler.received) == 3
    mailing.refresh_from_db()
    # The batch that sends the last letters finishes the mailing itself.
    assert (a_results, mailing.status) == (["done", "idle"], M.COMPLETED)


def test_a_batch_goes_on_when_another_chain_decides_the_mailing_waits(tenant_a, settings, monkeypatch):
    """A reserves the hour's 6 letters of room; B finds none while 10
    letters are pending, and the mailing waits. A's batch, which checks the
    mailing before every letter here, still sends its 6: their room is
    reserved, and waiting is not pausing."""
    settings.DISPATCH_TICK = 0
    now = timezone.now()
    with smtp_server() as (controller, handler):
        server = make_server(tenant_a, port=controller.port, max_per_hour=6, max_connections=1)  # A takes all 6
        mailing = start_mailing(tenant_a, [server], 10)
        b_results = chain_b_runs_after_a_reserves(monkeypatch, mailing, now)
        a_result = dispatch.run_mailing(mailing_id=mailing.pk, now=now)
    assert b_results == ["waiting"]
    assert len(handler.received) == 6
    assert a_result == "more"
    statuses = Counter(Letter.objects.filter(mailing=mailing).values_list("status", flat=True))
    assert statuses == Counter({L.SENT: 6, L.QUEUED: 4})
    assert limits.next_room_at(server, tenant_a, now) is not None  # the hour is spent, as it should be


@dataclass
class Route:
    server: SmtpServer
    sink: SinkHandler

    @property
    def limit(self) -> int:
        return min(n for n in (self.server.max_per_hour, self.server.max_per_day) if n is not None)


@dataclass
class Tenancy:
    tenant: Tenant
    routes: list[Route]
    mailing: Mailing
    letters: int

    def expected(self) -> list[int]:
        """The first server until its limit is spent, then the next."""
        left, counts = self.letters, []
        for route in self.routes:
            counts.append(min(route.limit, left))
            left -= counts[-1]
        return counts


def build(stack: ExitStack, rng: random.Random) -> list[Tenancy]:
    tenancies = []
    for t in range(TENANTS):
        tenant = Tenant.objects.create(name=f"Tenant {t}", slug=f"t{t:02d}")
        routes = []
        for position in range(rng.choice((1, 2))):
            controller, sink = stack.enter_context(smtp_server())
            hour = rng.randint(7, 15)
            day = rng.choice((None, None, rng.randint(5, 15)))  # sometimes the tighter one
            server = make_server(
                tenant, name=f"S{position}", port=controller.port, max_per_hour=hour, max_per_day=day, priority=position
            )
            routes.append(Route(server, sink))
        letters = rng.choice((12, 20, 30))
        mailing = start_mailing(tenant, [r.server for r in routes], letters)
        tenancies.append(Tenancy(tenant, routes, mailing, letters))
    return tenancies


@pytest.mark.slow
def test_twenty_tenants_at_once_keep_their_limits_and_their_letters(broker, tmp_path, caplog):
    caplog.set_level(logging.ERROR, logger="mail.log")  # aiosmtpd's deprecation notice, once a connection
    rng = random.Random(20)
    with ExitStack() as stack:
        tenancies = build(stack, rng)
        mailings = Mailing.objects.filter(pk__in=[t.mailing.pk for t in tenancies])
        # Every mailing started at once: the holds go, and one tick of the
        # beat gives each mailing its DISPATCH_CHAINS chains.
        DispatchChain.objects.update(until=None)
        log = stack.enter_context((tmp_path / "workers.log").open("w"))
        workers = start_workers(WORKERS, broker, output=log)
        try:
            tick(broker)
            wait_for(
                lambda: not mailings.exclude(status__in=(M.WAITING, M.COMPLETED)).exists(),
                90,
                every=0.5,
                what="every mailing waiting or done",
            )
        finally:
            stop(workers)

    routes = [r for t in tenancies for r in t.routes]
    counts = {r.server.pk: len(r.sink.received) for r in routes}
    overshoot = sum(max(0, counts[r.server.pk] - r.limit) for r in routes)
    accounted = dict(UsageBucket.objects.values_list("server").annotate(n=Sum("count")).values_list("server", "n"))
    letters = {message_id(p): (t, s) for p, t, s in Letter.objects.values_list("public_id", "tenant", "server")}
    cross_tenant = sum(letters[mid] != (r.server.tenant_id, r.server.pk) for r in routes for mid in message_ids(r.sink))
    received = Counter(message_ids(*(r.sink for r in routes)))
    twice = sum(n > 1 for n in received.values())
    sent = Letter.objects.filter(status=L.SENT)

    assert overshoot == 0, {r.server.name: (counts[r.server.pk], r.limit) for r in routes}
    assert {pk: accounted.get(pk, 0) for pk in counts} == counts
    assert cross_tenant == 0
    assert twice == 0
    assert set(received) == {message_id(p) for p in sent.values_list("public_id", flat=True)}
    now = timezone.now()
    for t in tenancies:
        assert [counts[r.server.pk] for r in t.routes] == t.expected(), t.tenant.slug
        mailing = Mailing.objects.get(pk=t.mailing.pk)
        unsent = t.letters - sum(t.expected())
        by_status = Counter(Letter.objects.filter(mailing=mailing).values_list("status", flat=True))
        assert by_status == Counter({L.SENT: sum(t.expected()), L.QUEUED: unsent}), t.tenant.slug
        if unsent:
            assert mailing.status == M.WAITING
            assert mailing.resume_at > now + timedelta(minutes=55)  # the hour (or the day) must pass
        else:
            assert mailing.status == M.COMPLETED
    waiting = mailings.filter(status=M.WAITING).count()
    print(
        f"load: {TENANTS} tenants, {WORKERS} workers, {sent.count()} letters sent, overshoot {overshoot},"
        f" cross-tenant {cross_tenant}, twice {twice} ({len(routes)} servers, {waiting} mailings waiting,"
        f" {TENANTS - waiting} done)"
    )
