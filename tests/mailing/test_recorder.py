"""The writer thread records results on its own connection, committed
before it reports done; to disk unless DISPATCH_DURABLE_RESULTS is off."""

import threading

import psycopg
import pytest
from django.db import connection

from mailing.dispatch.recorder import Recorder, RecordingFailed
from tests.services import require_postgresql

pytestmark = pytest.mark.django_db(transaction=True)


def commit_mode(durable: bool, settings) -> tuple[str, int]:
    settings.DISPATCH_DURABLE_RESULTS = durable
    seen = []

    def write() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('synchronous_commit'), pg_backend_pid()")
            seen.append(cursor.fetchone())

    recorder = Recorder(threaded=True)
    recorder.record(write)
    recorder.wait_for_previous()
    assert len(seen) == 1  # done before wait_for_previous returned
    recorder.close()
    return seen[0]


@pytest.mark.parametrize(("durable", "mode"), [(False, "off"), (True, "on")])
def test_the_writer_skips_waiting_for_the_disk_only_when_asked(settings, durable, mode):
    require_postgresql()
    with connection.cursor() as cursor:  # the test's own session, open while the writer runs
        cursor.execute("SELECT pg_backend_pid()")
        own_session = cursor.fetchone()[0]
    got, writer_session = commit_mode(durable, settings)
    assert got == mode
    assert writer_session != own_session  # the writer has a session of its own
    with connection.cursor() as cursor:  # and the test's is untouched
        cursor.execute("SELECT current_setting('synchronous_commit'), pg_backend_pid()")
        assert cursor.fetchone() == ("on", own_session)


def test_many_conversations_share_one_writer_and_a_failing_write_stops_only_its_own(settings):
    """Two conversations' results land in one group (the writer is held on
    a first write meanwhile); one of them cannot be written: its
    conversation is told, the other's result is committed once; all three
    queue to the process's one writer."""
    require_postgresql()
    from accounts.models import Tenant

    settings.DISPATCH_RECORD_THREAD = True
    held = threading.Event()

    def hold() -> None:
        held.wait(10)

    def good() -> None:
        Tenant.objects.create(name="Written", slug="written")

    def bad() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM no_such_table")

    first, second, third = (Recorder(threaded=True) for _ in range(3))
    assert first._queue is second._queue is third._queue
    first.record(hold)
    second.record(good)
    third.record(bad)
    held.set()
    first.wait_for_previous()
    second.wait_for_previous()
    with pytest.raises(RecordingFailed):
        third.wait_for_previous()
    for recorder in (first, second, third):
        recorder.close()
    assert Tenant.objects.filter(slug="written").count() == 1


def test_a_write_of_several_statements_alone_is_all_or_nothing(settings):
    """A letter's write other than "sent" may be several statements (a
    refused address fails the letter, then suppresses it): alone in its
    group it still runs in one transaction, so one that breaks half-way
    leaves nothing half-written, and its conversation is told."""
    require_postgresql()
    from accounts.models import Tenant

    settings.DISPATCH_DURABLE_RESULTS = True

    def half() -> None:
        Tenant.objects.create(name="Half", slug="half")
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM no_such_table")

    recorder = Recorder(threaded=True)
    recorder.record(half)
    with pytest.raises(RecordingFailed):
        recorder.wait_for_previous()
    recorder.close()
    assert not Tenant.objects.filter(slug="half").exists()


def test_a_group_of_a_sent_letter_and_another_write_commits_both(settings, tenant_a):
    """The one-statement path is for a letter sent alone: grouped with
    any other write, both are committed."""
    require_postgresql()
    from django.utils import timezone

    from accounts.models import Tenant
    from mailing import dispatch
    from mailing import mailings as services
    from mailing.dispatch.results import Sent
    from mailing.models import Letter, Mailing
    from tests.servers.factories import make_server

    from .builders import make_list, make_template

    settings.DISPATCH_DURABLE_RESULTS = True
    server = make_server(tenant_a)
    mailing = Mailing(tenant=tenant_a, name="m", template=make_template(tenant_a))
    services.mailing_save(mailing=mailing, lists=[make_list(tenant_a, "L", ["a@x.test"])], servers=[server])
    services.mailing_start(mailing=mailing)
    (letter,) = dispatch.claim(mailing, server, 1, now=timezone.now())
    holding, held, other = threading.Event(), threading.Event(), []

    def hold() -> None:
        holding.set()
        held.wait(10)

    first, second = Recorder(threaded=True), Recorder(threaded=True)
    first.record(hold)
    assert holding.wait(10)  # the writer is busy: the next two writes make one group
    second.record(Sent(letter, at=timezone.now()))
    second.record(lambda: other.append(Tenant.objects.filter(pk=tenant_a.pk).update(name="Other write")))
    held.set()
    second.wait_for_previous()
    first.close()
    second.close()
    letter.refresh_from_db()
    tenant_a.refresh_from_db()
    assert (letter.status, tenant_a.name, other) == (Letter.Status.SENT, "Other write", [1])


def claimed_letters(tenant, count: int):
    from django.utils import timezone

    from mailing import dispatch
    from mailing import mailings as services
    from mailing.models import Mailing
    from tests.servers.factories import make_server

    from .builders import make_list, make_template

    server = make_server(tenant)
    mailing = Mailing(tenant=tenant, name="m", template=make_template(tenant))
    emails = [f"r{i}@x.test" for i in range(count)]
    services.mailing_save(mailing=mailing, lists=[make_list(tenant, "L", emails)], servers=[server])
    services.mailing_start(mailing=mailing)
    return dispatch.claim(mailing, server, count, now=timezone.now())


def prepared_here() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM pg_prepared_statements WHERE name LIKE 'postroute_%'")
        return [row[0] for row in cursor.fetchall()]


def test_a_letter_sent_alone_is_one_statement_through_libpq_prepared_once_a_session(tenant_a):
    """Committed by itself (no transaction is open), prepared on the
    session once, prepared again when the session forgot it, and sent
    unprepared when prepared statements are off (a pooler that cannot keep
    them); a letter whose claim changed is left alone."""
    require_postgresql()
    from django.utils import timezone

    from mailing.dispatch.results import Sent
    from mailing.models import Letter

    first, second, third, stale = claimed_letters(tenant_a, 4)
    at = timezone.now()
    connection.ensure_connection()
    connection.connection.prepare_threshold = 5  # as the dispatch worker's sessions (settings)
    try:
        Sent(first, at=at, reply="250 2.0.0 Ok: queued as ABC").alone()
        assert prepared_here() == ["postroute_record_sent"]
        with connection.cursor() as cursor:
            cursor.execute("DISCARD ALL")
        Sent(second, at=at, reply="250 ok").alone()
        assert prepared_here() == ["postroute_record_sent"]
        with connection.cursor() as cursor:
            cursor.execute("DEALLOCATE ALL")
        connection.connection.prepare_threshold = None
        Sent(third, at=at, reply="250 ok").alone()
        assert prepared_here() == []
        Letter.objects.filter(pk=stale.pk).update(claim_token=None)  # its lease ran out, it was taken again
        Sent(stale, at=at).alone()
    finally:
        connection.close()
    letters = {letter.pk: letter for letter in Letter.objects.all()}
    assert [letters[x.pk].status for x in (first, second, third, stale)] == ["sent", "sent", "sent", "sending"]
    done = letters[first.pk]
    assert (done.sent_at, done.last_reply, done.attempts, done.claim_token, done.lease_until) == (
        at,
        "250 2.0.0 Ok: queued as ABC",
        1,
        None,
        None,
    )


def test_a_letter_sent_alone_whose_session_is_gone_stops_its_conversation(settings, tenant_a):
    """The session killed under it: the error is Django's; through the
    writer, the letter keeps its claim (its lease gives it back) and its
    conversation is told before the server accepts its next letter. In a
    worker the letter goes over the lane first (mailing.dispatch.lane),
    whose failure hands it to the writer: both sessions are killed here."""
    require_postgresql()
    from django.db import DatabaseError
    from django.utils import timezone

    from mailing.dispatch.results import Sent
    from mailing.models import Letter

    primer, letter = claimed_letters(tenant_a, 2)
    with psycopg.connect(**connection.get_connection_params(), autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [session_pid()])
    with pytest.raises(DatabaseError):
        Sent(letter, at=timezone.now()).alone()
    connection.close()

    settings.DISPATCH_RECORD_THREAD = settings.DISPATCH_DURABLE_RESULTS = True
    recorder, writer = Recorder(threaded=True), []
    recorder.record(lambda: writer.append(session_pid()))
    recorder.wait_for_previous()
    recorder.record(Sent(primer, at=timezone.now()))  # the lane's session is made
    recorder.wait_for_previous()
    with psycopg.connect(**connection.get_connection_params(), autocommit=True) as other:
        for pid in (*writer, recorder.lane.conn.info.backend_pid):
            other.execute("SELECT pg_terminate_backend(%s)", [pid])
    recorder.record(Sent(letter, at=timezone.now()))
    with pytest.raises(RecordingFailed):
        recorder.wait_for_previous()
    recorder.close()
    assert Letter.objects.get(pk=letter.pk).status == "sending"


def session_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def test_a_letter_sent_alone_on_a_session_past_descriptor_1024(tenant_a):
    """A worker of many SMTP conversations holds many sockets: the session
    may sit past select()'s 1024, which poll() does not mind."""
    require_postgresql()
    import os
    import resource

    from django.utils import timezone

    from mailing.dispatch.results import Sent
    from mailing.models import Letter

    (letter,) = claimed_letters(tenant_a, 1)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"this machine allows {hard} open files")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    connection.close()  # its descriptor is taken by the spare ones: the next session's is above them
    spare = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        connection.ensure_connection()
        assert connection.connection.pgconn.socket >= 1024
        Sent(letter, at=timezone.now()).alone()
    finally:
        connection.close()
        for descriptor in spare:
            os.close(descriptor)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert Letter.objects.get(pk=letter.pk).status == "sent"


def test_a_group_of_letters_sent_is_one_statement_committed_by_itself(settings, tenant_a):
    """The writer's group of only letters sent: one statement over arrays,
    no BEGIN or COMMIT around it, each letter with its own time and reply;
    a letter whose claim changed meanwhile is left alone, the others are
    recorded."""
    require_postgresql()
    from datetime import timedelta

    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from mailing.dispatch import recorder
    from mailing.dispatch.results import Sent
    from mailing.models import Letter

    settings.DISPATCH_DURABLE_RESULTS = True
    letters = claimed_letters(tenant_a, 4)
    stale = letters[3]
    Letter.objects.filter(pk=stale.pk).update(claim_token=None)  # its lease ran out, it was taken again
    at = timezone.now()
    replies = ["250 2.0.0 Ok: queued as A1", '250 ok, {"quoted"}, \\ back', "250 принято", "250 stale"]
    owner = Recorder(threaded=False)
    group = [
        (owner, Sent(letter, at=at + timedelta(seconds=i), reply=reply))
        for i, (letter, reply) in enumerate(zip(letters, replies, strict=True))
    ]
    with CaptureQueriesContext(connection) as queries:
        recorder._commit(group)
    statements = [q["sql"] for q in queries.captured_queries]
    assert len(statements) == 1 and "unnest" in statements[0], statements
    assert not connection.in_atomic_block
    rows = {letter.pk: letter for letter in Letter.objects.all()}
    for i, letter in enumerate(letters[:3]):
        done = rows[letter.pk]
        assert (done.status, done.sent_at, done.last_reply, done.attempts, done.claim_token, done.lease_until) == (
            "sent",
            at + timedelta(seconds=i),
            replies[i],
            1,
            None,
            None,
        )
    assert rows[stale.pk].status == "sending"


def wal_syncs() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT wal_sync FROM pg_stat_wal")
        return cursor.fetchone()[0]


def end_session() -> None:
    """Close this thread's session and wait until its backend is gone: its
    statistics (pg_stat_wal) are written as it ends."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    connection.close()
    for _ in range(200):
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
            if not cursor.fetchone()[0]:
                return
        threading.Event().wait(0.05)
    raise AssertionError("the session did not end")


@pytest.mark.parametrize("durable", [True, False])
def test_letters_sent_by_themselves_wait_for_the_disk_unless_asked_not_to(settings, tenant_a, durable):
    """Letters sent, committed alone or as a group without a transaction:
    durable, each commit is flushed to disk (a WAL sync each); with
    DISPATCH_DURABLE_RESULTS=0 none waits for it (only PostgreSQL's WAL
    writer syncs, a few times a second), still one statement each, and the
    session's own setting is left as it was."""
    require_postgresql()
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from mailing.dispatch import recorder
    from mailing.dispatch.results import Sent
    from mailing.models import Letter

    settings.DISPATCH_DURABLE_RESULTS = durable
    letters = claimed_letters(tenant_a, 30)
    at = timezone.now()
    end_session()
    before = wal_syncs()
    owner = Recorder(threaded=False)
    for letter in letters[:20]:
        recorder._commit([(owner, Sent(letter, at=at))])  # alone: straight through libpq
    with CaptureQueriesContext(connection) as queries:
        recorder._commit([(owner, Sent(letter, at=at)) for letter in letters[20:]])  # a group: over arrays
    assert len(queries.captured_queries) == 1
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone()[0] == "on"
    end_session()
    syncs = wal_syncs() - before
    assert set(Letter.objects.values_list("status", flat=True)) == {"sent"}
    if durable:
        assert syncs >= 21, syncs
    else:
        assert syncs < 10, syncs
