"""A bounce mailbox whose server talks slowly on purpose (a tarpit) cannot
hold the reader: each phase of a read has BOUNCE_READER_TIMEOUT seconds in
all, the run fails with the error on the mailbox, and a later run tries
again."""

import time

import pytest

from mailing.bounces import readers
from servers.models import BounceMailbox, Health, Security
from tests.smtp_servers import imap_dribbling_at, pop3_dribbling_at, tarpit

pytestmark = pytest.mark.django_db

TIMEOUT = 1.0
MARGIN = 1.5


@pytest.fixture(autouse=True)
def short_phases(settings):
    settings.BOUNCE_READER_TIMEOUT = TIMEOUT


def tarpit_mailbox(tenant, port: int, **fields: object) -> BounceMailbox:
    mailbox = BounceMailbox(
        tenant=tenant, host="127.0.0.1", port=port, security=Security.NONE, login="box", email="box@acme.test", **fields
    )
    mailbox.set_password("secret")
    mailbox.save()
    return mailbox


def read_in_time(mailbox: BounceMailbox) -> readers.ReadResult:
    started = time.monotonic()
    result = readers.read_mailbox(mailbox_id=mailbox.pk)
    assert time.monotonic() - started < TIMEOUT + MARGIN
    return result


@pytest.mark.parametrize("verb", [b"CAPABILITY", b"LOGIN", b"SELECT", b"UID"])
def test_an_imap_server_dribbling_an_endless_untagged_response_fails_the_run_in_time(tenant_a, verb):
    with tarpit(imap_dribbling_at(verb)) as port:
        mailbox = tarpit_mailbox(tenant_a, port)
        result = read_in_time(mailbox)
    assert result.status == "failed"
    mailbox.refresh_from_db()
    assert mailbox.health == Health.FAILING
    assert "kept sending" in mailbox.last_error and mailbox.last_error == result.error
    assert "never ends" in mailbox.health_hint
    assert mailbox.reader_lock_until is None  # a later run tries again, after the back-off
    assert mailbox.failures == 1 and mailbox.next_check_at is not None


def test_a_pop3_server_dribbling_an_endless_listing_fails_the_run_in_time(tenant_a):
    with tarpit(pop3_dribbling_at(b"LIST")) as port:
        mailbox = tarpit_mailbox(tenant_a, port, protocol=BounceMailbox.Protocol.POP3)
        result = read_in_time(mailbox)
    assert result.status == "failed"
    mailbox.refresh_from_db()
    assert "kept sending" in mailbox.last_error and mailbox.reader_lock_until is None
