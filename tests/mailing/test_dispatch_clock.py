"""A batch lasts minutes where its server is slow (up to BATCH_SECONDS):
what it decides late in it, a server's rest or a letter's next attempt,
counts from the moment of the reply, not from the batch's start. Counted
from the start, a rate limit said after a minute of slow letters was over
before it began: the next chain met the same server at once, and a letter
deferred "for a minute" was due again as soon as it was deferred."""

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from mailing import dispatch
from mailing.dispatch.results import retry_delays
from mailing.models import Letter
from servers.models import SmtpServer
from tests.reliability.faults import MATRIX, FaultHandler, fault_server
from tests.servers.factories import make_server

from .test_dispatch_real_world import start

pytestmark = pytest.mark.django_db
L = Letter.Status
SLOW = 0.6  # seconds a letter takes the server to take, for the first letters
# The batch's clock starts with the `now` it is given, a few milliseconds
# before its first letter; counted from the batch's start, the waits below
# end about a second before the reply.
LAG = timedelta(seconds=0.3)


@dataclass
class SlowThenRefusing(FaultHandler):
    """Takes its first letters slowly (as a far or loaded server does), and
    notes when it said each fault."""

    slow: int = 3
    said_at: list[datetime] = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope) -> str:
        if len(self.accepted) < self.slow:
            await asyncio.sleep(SLOW)
        return await super().handle_DATA(server, session, envelope)

    def _play(self, fault, where: str) -> None:
        self.said_at.append(timezone.now())
        super()._play(fault, where)


def emails(count: int) -> list[str]:
    return [f"r{n}@example.org" for n in range(count)]


def test_a_rest_said_late_in_a_batch_counts_from_the_reply(tenant_a, settings):
    settings.DISPATCH_RETRY_BASE = 1
    handler = SlowThenRefusing(pipelining=True, mail_faults={4: MATRIX["421 at MAIL"]})
    with fault_server(handler) as controller:
        server = make_server(tenant_a, port=controller.port)
        mailing = start(tenant_a, [server], emails(4))
        dispatch.run_mailing(mailing_id=mailing.pk, now=timezone.now())
    assert handler.played == [("421 at MAIL", "#4")]
    server = SmtpServer.objects.get(pk=server.pk)
    assert server.backoff_until is not None
    assert server.backoff_until >= handler.said_at[0] + timedelta(seconds=1) - LAG


def test_a_letter_deferred_late_in_a_batch_waits_from_the_reply(tenant_a, settings):
    settings.DISPATCH_RETRY_BASE = 1
    handler = SlowThenRefusing(pipelining=True)
    handler.plan.add("r3@example.org", MATRIX["450 at RCPT"])
    with fault_server(handler) as controller:
        server = make_server(tenant_a, port=controller.port)
        mailing = start(tenant_a, [server], emails(4))
        dispatch.run_mailing(mailing_id=mailing.pk, now=timezone.now())
    letter = Letter.objects.get(mailing=mailing, email="r3@example.org")
    assert letter.status == L.DEFERRED
    assert letter.next_attempt_at >= handler.said_at[0] + retry_delays(1) - LAG
