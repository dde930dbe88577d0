"""The dispatcher's per-batch statements in plain SQL (one round trip each,
no ORM compiling): they must keep what the ORM queries and transactions
they replace guaranteed: no letter to two workers, queued before deferred,
instances as the ORM loads them, limits read from the server row once
locked, and the servers in the mailing's order without the held ones."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from mailing import dispatch, limits
from mailing import mailings as services
from mailing.dispatch import rests, run
from mailing.models import Letter, Mailing, UsageBucket
from servers.models import RestReason, SmtpServer, TenantRest
from tests.servers.factories import make_server
from tests.services import require_postgresql

from .builders import make_list, make_template

L = Letter.Status


def start_mailing(tenant, server, count: int) -> Mailing:
    contact_list = make_list(tenant, "L", [f"r{i:03d}@x.test" for i in range(count)])
    mailing = Mailing(tenant=tenant, name="m", template=make_template(tenant))
    services.mailing_save(mailing=mailing, lists=[contact_list], servers=[server])
    services.mailing_start(mailing=mailing)
    return mailing


def at_once(work, threads: int = 6) -> None:
    """`work` in that many threads started together, each on its own
    database session; what any of them raised fails the test."""
    start, errors = threading.Barrier(threads), []

    def run() -> None:
        try:
            start.wait()
            work()
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    running = [threading.Thread(target=run) for _ in range(threads)]
    for thread in running:
        thread.start()
    for thread in running:
        thread.join(60)
    assert errors == []


@pytest.mark.django_db(transaction=True)
def test_workers_claiming_at_once_never_get_the_same_letter(tenant_a):
    require_postgresql()  # PostgreSQL's own statements (SQLite in development takes the ORM's way)
    server = make_server(tenant_a)
    mailing = start_mailing(tenant_a, server, 120)
    claims = []

    def worker() -> None:
        while got := dispatch.claim(mailing, server, 7, now=timezone.now()):
            claims.append(got)

    at_once(worker)
    ids = [letter.pk for claim in claims for letter in claim]
    assert len(ids) == len(set(ids)) == 120
    assert all(len(claim) <= 7 for claim in claims)
    # Each claim is one token, and the database holds what each worker got.
    for claim in claims:
        tokens = {letter.claim_token for letter in claim}
        assert len(tokens) == 1
        in_db = Letter.objects.filter(claim_token=tokens.pop(), status=L.SENDING)
        assert sorted(in_db.values_list("pk", flat=True)) == [letter.pk for letter in claim]


@pytest.mark.django_db
def test_a_claim_takes_queued_letters_then_due_deferred_ones_loaded_as_the_orm_loads_them(tenant_a):
    require_postgresql()  # PostgreSQL's own statements (SQLite in development takes the ORM's way)
    server = make_server(tenant_a)
    mailing = start_mailing(tenant_a, server, 6)
    now = timezone.now()
    letters = list(Letter.objects.filter(mailing=mailing).order_by("pk"))
    # The two oldest were tried: one is due again, one is not yet.
    Letter.objects.filter(pk=letters[0].pk).update(status=L.DEFERRED, attempts=1, next_attempt_at=now)
    Letter.objects.filter(pk=letters[1].pk).update(status=L.DEFERRED, attempts=1, next_attempt_at=now + timedelta(1))
    Letter.objects.filter(pk=letters[2].pk).update(status=L.SENT)
    with CaptureQueriesContext(connection) as queries:
        claimed = dispatch.claim(mailing, server, 3, now=now)
    assert len(queries) == 1  # the queued ones were enough
    assert [letter.pk for letter in claimed] == [letters[3].pk, letters[4].pk, letters[5].pk]
    with CaptureQueriesContext(connection) as queries:
        (deferred,) = dispatch.claim(mailing, server, 3, now=now)
    assert len(queries) == 2  # no queued one left: the due deferred one
    assert deferred.pk == letters[0].pk
    for letter in [*claimed, deferred]:
        fresh = Letter.objects.get(pk=letter.pk)
        assert (fresh.status, fresh.server_id, fresh.lease_until) == (L.SENDING, server.pk, now + dispatch.LEASE)
        for field in Letter._meta.concrete_fields:
            assert getattr(letter, field.attname) == getattr(fresh, field.attname), field.name
        assert isinstance(letter.context, dict) and letter.context["first_name"] == fresh.context["first_name"]
    assert dispatch.claim(mailing, server, 3, now=now) == []


@pytest.mark.django_db
def test_a_limit_set_on_a_server_read_without_one_holds_from_the_next_reservation(tenant_a):
    server = make_server(tenant_a)
    mailing_now = timezone.now()
    first = limits.reserve(server=server, tenant=tenant_a, wanted=4, now=mailing_now)
    assert first.granted == 4
    SmtpServer.objects.filter(pk=server.pk).update(max_per_hour=10)
    # The worker still holds the server as it read it, without a limit.
    second = limits.reserve(server=server, tenant=tenant_a, wanted=50, now=mailing_now)
    assert second.granted == 6
    assert UsageBucket.objects.get(server=server).count == 10


@pytest.mark.django_db
def test_a_reservation_on_a_server_without_limits_is_one_statement_and_counts(tenant_a):
    require_postgresql()  # PostgreSQL's own statements (SQLite in development takes the ORM's way)
    server = make_server(tenant_a)
    now = timezone.now()
    with CaptureQueriesContext(connection) as queries:
        reservation = limits.reserve(server=server, tenant=tenant_a, wanted=9, now=now)
    assert reservation.granted == 9 and len(queries) == 1
    limits.reserve(server=server, tenant=tenant_a, wanted=3, now=now)
    assert UsageBucket.objects.get(server=server).count == 12
    limits.release(reservation=reservation, unused=2)
    assert UsageBucket.objects.get(server=server).count == 10


@pytest.mark.django_db
def test_another_tenants_server_is_refused_whatever_its_limits(tenant_a, tenant_b):
    server = make_server(tenant_b)
    with pytest.raises(ValueError, match="own server"):
        limits.reserve(server=server, tenant=tenant_a, wanted=1)


def same(loaded, fresh) -> None:
    assert type(loaded) is type(fresh)
    for field in type(fresh)._meta.concrete_fields:
        assert getattr(loaded, field.attname) == getattr(fresh, field.attname), field.name


@pytest.mark.django_db
def test_the_mailing_and_its_servers_are_loaded_as_the_orm_loads_them(tenant_a):
    platform = make_server(None, name="Platform", max_per_day=100)
    first, second = make_server(tenant_a, name="First"), make_server(tenant_a, name="Second", max_per_hour=5)
    mailing = start_mailing(tenant_a, second, 2)
    mailing.server_links.all().delete()
    for position, server in enumerate([first, platform, second]):
        mailing.server_links.create(server=server, position=position)
    loaded = run._mailing(mailing.pk)
    fresh = Mailing.objects.select_related("tenant").get(pk=mailing.pk)
    same(loaded, fresh)
    same(loaded.tenant, fresh.tenant)
    now = timezone.now()
    assert [s.name for s in rests.usable_servers(loaded, now)] == ["First", "Platform", "Second"]
    for server in rests.usable_servers(loaded, now):
        same(server, SmtpServer.objects.get(pk=server.pk))
    # Held back on the platform server (a rest not over, then a block), a
    # resting server: left out; a rest that is over no longer holds.
    rest = TenantRest.objects.create(
        server=platform, tenant=tenant_a, reason=RestReason.REFUSALS, until=now + timedelta(1)
    )
    SmtpServer.objects.filter(pk=second.pk).update(backoff_until=now + timedelta(1))
    assert [s.name for s in rests.usable_servers(loaded, now)] == ["First"]
    TenantRest.objects.filter(pk=rest.pk).update(until=now - timedelta(1))
    assert [s.name for s in rests.usable_servers(loaded, now)] == ["First", "Platform"]
    TenantRest.objects.filter(pk=rest.pk).update(blocked=True)
    assert [s.name for s in rests.usable_servers(loaded, now)] == ["First"]
    assert run._mailing(mailing.pk + 1000) is None


@pytest.mark.django_db(transaction=True)
def test_callers_taking_chain_slots_at_once_never_share_one_and_each_call_is_one_statement(tenant_a, settings):
    """Every start and every beat tick takes a running mailing's free chain
    slots in one statement (an upsert): two callers at once, as a tick and a
    start, must never both get a slot, and a slot frees only when its chain
    ends or its lease runs out."""
    settings.DISPATCH_CHAINS = 3
    mailing = Mailing(tenant=tenant_a, name="m", template=make_template(tenant_a))
    services.mailing_save(
        mailing=mailing, lists=[make_list(tenant_a, "L", ["r@x.test"])], servers=[make_server(tenant_a)]
    )
    taken = []
    at_once(lambda: taken.extend(dispatch.free_chain_slots(mailing.pk)))
    assert sorted(taken) == [0, 1, 2]
    now = timezone.now()
    with CaptureQueriesContext(connection) as queries:
        assert dispatch.free_chain_slots(mailing.pk, now=now) == []
    assert len(queries) == 1
    dispatch.renew_chain(mailing.pk, 1, more=False)  # that chain ended
    assert dispatch.free_chain_slots(mailing.pk, now=now) == [1]
    later = now + dispatch.CHAIN_LEASE + timedelta(seconds=1)  # the others' workers died
    dispatch.renew_chain(mailing.pk, 2, more=True, now=later)  # that one goes on
    assert dispatch.free_chain_slots(mailing.pk, now=later) == [0, 1]
    assert dispatch.free_chain_slots(mailing.pk, now=later + timedelta(seconds=1)) == []


@pytest.mark.django_db
def test_the_tenants_mailboxes_are_loaded_as_the_orms_only_loads_them(tenant_a, tenant_b):
    from mailing.dispatch import batch
    from servers.models import BounceMailbox

    server = make_server(tenant_a, sender_email="news@acme.test")
    BounceMailbox.objects.create(
        tenant=tenant_a, host="imap.acme.test", login="bounces@acme.test", plus_addressing=True
    )
    BounceMailbox.objects.create(tenant=tenant_a, server=server, host="imap.acme.test", login="news", email="")
    BounceMailbox.objects.create(tenant=tenant_b, host="imap.b.test", login="b@b.test")
    fields = ("server_id", "enabled", "email", "login", "plus_addressing")
    loaded = sorted(batch._mailboxes(tenant_a.pk), key=lambda m: m.pk)
    fresh = list(BounceMailbox.objects.filter(tenant_id=tenant_a.pk).only(*fields).order_by("pk"))
    assert len(loaded) == len(fresh) == 2
    for mine, theirs in zip(loaded, fresh, strict=True):
        assert mine.get_deferred_fields() == theirs.get_deferred_fields()
        for name in ("id", *fields):
            assert getattr(mine, name) == getattr(theirs, name), name
        assert mine.address == theirs.address


@pytest.mark.django_db
def test_a_chain_that_finds_the_last_letters_with_another_chain_leaves_the_end_to_it(tenant_a):
    """The end of a chain reads in one statement whether letters wait and
    whether some are being sent: while another chain sends the last ones,
    this one stops and the mailing stays sending; the chain that records
    them finishes it."""
    mailing = start_mailing(tenant_a, make_server(tenant_a), 2)
    now = timezone.now()
    Letter.objects.filter(mailing=mailing).update(status=L.SENDING, lease_until=now + dispatch.LEASE)
    assert dispatch.run_mailing(mailing_id=mailing.pk, now=now) == "idle"
    mailing.refresh_from_db()
    assert mailing.status == Mailing.Status.ACTIVE
    Letter.objects.filter(mailing=mailing).update(status=L.SENT, lease_until=None)
    assert dispatch.run_mailing(mailing_id=mailing.pk, now=now) == "done"
    mailing.refresh_from_db()
    assert mailing.status == Mailing.Status.COMPLETED
