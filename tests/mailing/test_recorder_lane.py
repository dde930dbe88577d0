"""Letters sent are committed over the lanes (mailing.dispatch.lane): the
conversations drive the process's lane sessions themselves, no thread is
woken for a letter, and the bound and the grouping hold as through the
writer thread."""

import time

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from mailing.dispatch import lane as lanes
from mailing.dispatch import recorder as recorders
from mailing.dispatch.recorder import Recorder
from mailing.dispatch.results import Sent, fail
from mailing.models import Letter
from tests.services import require_postgresql

from .test_recorder import claimed_letters

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def threaded(settings):
    require_postgresql()
    settings.DISPATCH_RECORD_THREAD = settings.DISPATCH_DURABLE_RESULTS = True


def counting(monkeypatch, module, name: str) -> list[int]:
    """The size of every group `module.name` is given (observed, not
    replaced)."""
    seen: list[int] = []
    original = getattr(module, name)

    def counted(group):
        seen.append(len(group))
        return original(group)

    monkeypatch.setattr(module, name, counted)
    return seen


@pytest.fixture
def writer_groups(monkeypatch) -> list[int]:
    """Every group the writer thread commits."""
    return counting(monkeypatch, recorders, "_commit")


@pytest.fixture
def lane_groups(monkeypatch) -> list[int]:
    """Every group the lane sends in one statement."""
    return counting(monkeypatch, lanes, "_values")


def status(letter: Letter) -> str:
    # This test's session, not the lane's: it sees only what is committed.
    return Letter.objects.get(pk=letter.pk).status


def terminate(pid: int) -> None:
    with psycopg.connect(**connection.get_connection_params(), autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])


def test_a_letter_sent_is_committed_before_the_next_one_and_the_writer_never_wakes(
    threaded, tenant_a, writer_groups, lane_groups
):
    *letters, failed = claimed_letters(tenant_a, 4)
    recorder = Recorder(threaded=True)
    for letter in letters:
        recorder.record(Sent(letter, at=timezone.now(), reply="250 2.0.0 Ok: queued"))
        recorder.wait_for_previous()  # before the next letter's final dot
        assert status(letter) == "sent"
    assert writer_groups == [] and lane_groups == [1, 1, 1]
    recorder.record(lambda: fail(failed, "550 5.7.1 refused"))  # anything else is the writer's
    recorder.wait_for_previous()
    assert writer_groups == [1] and status(failed) == "failed"
    lane = recorder.lane
    recorder.close()
    assert lane.conn is None  # the process's last conversation ended: its session went


def test_what_is_recorded_while_a_commit_is_in_flight_goes_in_the_next_statement_together(
    threaded, settings, tenant_a, lane_groups
):
    """Two conversations on one lane; the first letter's UPDATE waits for a
    row lock, so the next four wait, and go in one statement over arrays,
    with the servers' replies as they were (quotes, braces, backslashes,
    Cyrillic)."""
    settings.DISPATCH_LANES = 1
    first, *others = claimed_letters(tenant_a, 5)
    replies = ['250 ok, {"quoted"}, \\ back', "250 2.0.0 принято", "250 Ok: queued as A1", "250 NULL"]
    one, two = Recorder(threaded=True), Recorder(threaded=True)
    at = timezone.now()
    with psycopg.connect(**connection.get_connection_params()) as holder:
        holder.execute("SELECT 1 FROM mailing_letter WHERE id = %s FOR UPDATE", [first.pk])
        one.record(Sent(first, at=at))
        for index, (letter, reply) in enumerate(zip(others, replies, strict=True)):
            (one, two)[index % 2].record(Sent(letter, at=at, reply=reply))
        assert not one.idle() and not two.idle()  # the flight cannot land while the row is held
        assert one.lane is two.lane
        assert len(one.lane.flight) == 1 and len(one.lane.waiting) == 4
        holder.rollback()
    one.wait_for_previous()
    two.wait_for_previous()
    assert lane_groups == [1, 4]
    rows = {row.pk: row for row in Letter.objects.all()}
    assert [(rows[x.pk].status, rows[x.pk].last_reply) for x in others] == [("sent", reply) for reply in replies]
    assert rows[first.pk].status == "sent"
    one.close()
    two.close()


def test_a_lane_whose_session_died_hands_its_letters_to_the_writer_and_starts_a_new_one(
    threaded, tenant_a, writer_groups
):
    first, second, third = claimed_letters(tenant_a, 3)
    recorder = Recorder(threaded=True)
    recorder.record(Sent(first, at=timezone.now()))
    recorder.wait_for_previous()
    dead = recorder.lane.conn.info.backend_pid
    terminate(dead)
    recorder.record(Sent(second, at=timezone.now()))
    recorder.wait_for_previous()  # no error: the writer recorded it
    assert writer_groups == [1] and status(second) == "sent"
    recorder.record(Sent(third, at=timezone.now()))
    recorder.wait_for_previous()
    assert recorder.lane.conn.info.backend_pid != dead and writer_groups == [1]
    recorder.close()
    assert {status(x) for x in (first, second, third)} == {"sent"}


def test_two_conversations_commit_side_by_side_over_two_lanes(threaded, settings, tenant_a, writer_groups):
    """With two lanes (the default) each conversation has its own session:
    one whose commit is held (here by a row lock; in a worker, by the disk)
    does not hold the other's, which commits and goes on meanwhile. Both
    sessions close when the last conversation ends."""
    settings.DISPATCH_LANES = 2
    held, *free = claimed_letters(tenant_a, 3)
    one, two = Recorder(threaded=True), Recorder(threaded=True)
    assert one.lane is not two.lane
    with psycopg.connect(**connection.get_connection_params()) as holder:
        holder.execute("SELECT 1 FROM mailing_letter WHERE id = %s FOR UPDATE", [held.pk])
        one.record(Sent(held, at=timezone.now()))
        for letter in free:
            two.record(Sent(letter, at=timezone.now()))
            deadline = time.monotonic() + 10
            while not two.idle():  # with one lane: behind the held row for good
                assert time.monotonic() < deadline, "the other conversation's commit waited for the held one"
                time.sleep(0.01)
            assert status(letter) == "sent"
        assert not one.idle() and status(held) == "sending"
        holder.rollback()
    one.wait_for_previous()
    assert status(held) == "sent" and writer_groups == []
    used = (one.lane, two.lane)
    one.close()
    assert two.lane.conn is not None  # still used
    two.close()
    assert [lane.conn for lane in used] == [None, None]


def test_a_conversation_takes_the_lane_fewest_use(threaded, settings):
    settings.DISPATCH_LANES = 2
    first, second, third = (Recorder(threaded=True) for _ in range(3))
    assert first.lane is not second.lane and third.lane in (first.lane, second.lane)
    first.close()
    fourth = Recorder(threaded=True)
    assert fourth.lane is first.lane  # the one left with no conversation
    for recorder in (second, third, fourth):
        recorder.close()
    assert {lane.users for lane in lanes.lanes.all} == {0}
