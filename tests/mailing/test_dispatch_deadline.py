"""The dispatcher gives each letter's exchange DISPATCH_SMTP_TIMEOUT in all
(client.deadline_in), so a server that never finishes its reply holds a
batch no longer than that, however it dribbles."""

import time

import pytest

from mailing import dispatch
from mailing.models import Letter
from tests.servers.factories import make_server
from tests.smtp_servers import endless_banner, endless_reply_to_data, tarpit

from .test_dispatch import start_mailing

pytestmark = pytest.mark.django_db
L = Letter.Status
TIMEOUT = 1.0
MARGIN = 1.5


@pytest.fixture(autouse=True)
def short_timeout(settings):
    settings.DISPATCH_SMTP_TIMEOUT = TIMEOUT


def send_one_batch(tenant, script) -> tuple[list[Letter], float]:
    with tarpit(script) as port:
        server = make_server(tenant, port=port, login="")
        mailing = start_mailing(tenant, [server], 3)
        started = time.monotonic()
        dispatch.run_mailing(mailing_id=mailing.pk)
        elapsed = time.monotonic() - started
    return list(Letter.objects.filter(mailing=mailing).order_by("pk")), elapsed


def test_a_reply_to_a_letter_that_never_ends_stops_at_the_letters_deadline(tenant_a):
    letters, elapsed = send_one_batch(tenant_a, endless_reply_to_data)
    assert elapsed < TIMEOUT + MARGIN
    first, *rest = letters
    # It may or may not have been taken: retried later, never lost.
    assert first.status == L.DEFERRED and "kept sending" in first.last_reply
    assert [letter.status for letter in rest] == [L.QUEUED, L.QUEUED]
    first.server.refresh_from_db()
    assert first.server.connection_failures == 1  # the server rests


def test_a_greeting_that_never_ends_stops_at_the_opening_deadline(tenant_a):
    letters, elapsed = send_one_batch(tenant_a, endless_banner)
    assert elapsed < TIMEOUT + MARGIN
    assert {letter.status for letter in letters} == {L.QUEUED}
