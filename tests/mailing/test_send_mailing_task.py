"""The chain task: batch after batch in one task for DISPATCH_SLICE
seconds, then its next task is queued behind the others (a real SMTP sink;
the queuing of the next task is recorded instead of run)."""

import pytest

from mailing import dispatch, tasks
from mailing.models import DispatchChain, Letter
from tests.servers.factories import make_server
from tests.smtp_servers import smtp_server

from .test_dispatch import start_mailing

pytestmark = pytest.mark.django_db


@pytest.fixture
def queued(monkeypatch):
    calls = []
    monkeypatch.setattr(tasks.send_mailing, "delay", lambda *args: calls.append(args))
    return calls


def test_a_chain_sends_batch_after_batch_within_its_slice(tenant_a, settings, queued):
    settings.DISPATCH_BATCH, settings.DISPATCH_SLICE = 2, 60
    with smtp_server() as (controller, handler):
        mailing = start_mailing(tenant_a, [make_server(tenant_a, port=controller.port)], 9)
        tasks.send_mailing(mailing.pk, 0)
    assert len(handler.received) == 9  # five batches in one task
    assert queued == []
    assert Letter.objects.filter(mailing=mailing, status=Letter.Status.SENT).count() == 9


def test_after_its_slice_a_chain_queues_its_next_task_and_keeps_its_slot(tenant_a, settings, queued):
    settings.DISPATCH_BATCH, settings.DISPATCH_SLICE = 2, 0
    with smtp_server() as (controller, handler):
        mailing = start_mailing(tenant_a, [make_server(tenant_a, port=controller.port)], 9)
        slot = dispatch.take_chain(mailing.pk)
        tasks.send_mailing(mailing.pk, slot)
    assert len(handler.received) == 2  # one batch, then the queue
    assert queued == [(mailing.pk, slot)]
    assert DispatchChain.objects.get(mailing=mailing, slot=slot).until is not None  # still this chain's


def test_a_crowded_chain_knocks_again_at_a_random_moment_not_in_step_with_another(monkeypatch):
    """Two chains refused at the greeting together each count the other's
    slot as a conversation going on (mailing.dispatch.batch): knocking again
    in step, neither would ever be alone and rest a server that refuses
    everyone."""
    later = []
    monkeypatch.setitem(tasks.send_mailing.app.conf, "task_always_eager", False)
    monkeypatch.setattr(tasks.dispatch, "run_mailing", lambda mailing_id: "crowded")
    monkeypatch.setattr(tasks.dispatch, "renew_chain", lambda *args, **kwargs: None)
    monkeypatch.setattr(tasks.send_mailing, "apply_async", lambda args, countdown: later.append(countdown))
    for _ in range(5):
        tasks.send_mailing(1, 0)
    assert all(10 <= countdown <= 20 for countdown in later), later
    assert len(set(later)) > 1, later  # before: 15 s every time
