"""A bounce mailbox that keeps failing backs off (issue 21): a wrong password
against a real Dovecot waits one interval, then twice as long after each
failure up to a cap; the card says when it tries again; a fix, a passing
connection test or a good reading ends it."""

from datetime import datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from mailing.bounces import imap, readers
from mailing.tasks import read_bounce_mailboxes
from servers import services
from servers.models import BounceMailbox, Health

from .bounce_helpers import append, make_mailbox, render, sent_letters

pytestmark = pytest.mark.django_db

INTERVAL = 300
REAL_NOW = timezone.now


@pytest.fixture(autouse=True)
def intervals(settings):
    settings.BOUNCE_CHECK_INTERVAL = INTERVAL
    settings.BOUNCE_BACKOFF_MAX = 1000


def later(monkeypatch, seconds: float) -> None:
    """From now on, the clock reads `seconds` later than it really is."""
    monkeypatch.setattr(timezone, "now", lambda: REAL_NOW() + timedelta(seconds=seconds))


def fail(mailbox: BounceMailbox) -> tuple[datetime, datetime]:
    """One failed reading; the time before and after it."""
    before = timezone.now()
    assert readers.read_mailbox(mailbox_id=mailbox.pk).status == "failed"
    after = timezone.now()
    mailbox.refresh_from_db()
    return before, after


def fix_password_behind_the_forms_back(mailbox: BounceMailbox, password: str) -> None:
    mailbox.set_password(password)
    BounceMailbox.objects.filter(pk=mailbox.pk).update(password_encrypted=mailbox.password_encrypted)


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_a_wrong_password_waits_an_interval_then_twice_as_long_up_to_the_cap(tenant_a, dovecot_mailbox, protocol):
    port = dovecot_mailbox.pop3_port if protocol == "pop3" else dovecot_mailbox.imap_port
    mailbox = make_mailbox(tenant_a, dovecot_mailbox, password="wrong", protocol=protocol, port=port)
    for failures, delay in [(1, 300), (2, 600), (3, 1000), (4, 1000)]:
        before, after = fail(mailbox)
        assert mailbox.failures == failures and mailbox.health == Health.FAILING
        assert before + timedelta(seconds=delay) <= mailbox.next_check_at <= after + timedelta(seconds=delay)


def test_the_beat_skips_a_backing_off_mailbox_until_its_time(tenant_a, dovecot_mailbox, monkeypatch):
    [letter] = sent_letters(tenant_a, ["a@example.org"])
    append(dovecot_mailbox, render("postfix_user_unknown.eml", letter))
    mailbox = make_mailbox(tenant_a, dovecot_mailbox, password="wrong")
    later(monkeypatch, 40)  # a reading that takes 40 s to fail
    fail(mailbox)
    later(monkeypatch, 0)
    assert readers.mailboxes_to_read() == []
    later(monkeypatch, INTERVAL)  # the next beat tries again, however long the reading took
    assert readers.mailboxes_to_read() == [mailbox.pk]

    fail(mailbox)  # now the next try is two intervals away
    fix_password_behind_the_forms_back(mailbox, dovecot_mailbox.password)
    later(monkeypatch, 2 * INTERVAL)  # the next beat
    read_bounce_mailboxes.delay()
    mailbox.refresh_from_db()
    assert mailbox.failures == 2 and mailbox.last_checked_at is None  # not even tried

    later(monkeypatch, 3 * INTERVAL)  # the beat after: its time has come
    assert readers.mailboxes_to_read() == [mailbox.pk]
    read_bounce_mailboxes.delay()
    mailbox.refresh_from_db()
    assert (mailbox.failures, mailbox.next_check_at, mailbox.reports_found) == (0, None, 1)


def backoff_note(client) -> str:
    page = client.get(reverse("servers:list")).content.decode()
    start = page.index('<p class="mailbox-backoff">')
    return " ".join(page[start : page.index("</p>", start)].split()[2:])


def test_the_card_says_how_often_it_failed_and_when_it_tries_again(alice, bob, tenant_a, dovecot_mailbox):
    mailbox = make_mailbox(tenant_a, dovecot_mailbox, password="wrong")
    assert "mailbox-backoff" not in alice.client.get(reverse("servers:list")).content.decode()
    fail(mailbox)
    assert backoff_note(bob.client).startswith(f"Reading failed once; next try {soon(mailbox.next_check_at)}.")
    fail(mailbox)
    fail(mailbox)
    assert backoff_note(alice.client).startswith(
        f"Reading failed 3 times in a row; next try {soon(mailbox.next_check_at)}."
    )

    later = timezone.localtime() + timedelta(days=3)
    BounceMailbox.objects.filter(pk=mailbox.pk).update(next_check_at=later)
    year = f" {later.year}" if later.year != timezone.localtime().year else ""
    assert f"next try {later.day} {later:%b}{year} at {later:%H:%M}." in backoff_note(alice.client)


def soon(moment) -> str:
    """ "today at 10:01" or, just before midnight, "tomorrow at 00:01"."""
    local = timezone.localtime(moment)
    word = "today" if local.date() == timezone.localtime().date() else "tomorrow"
    return f"{word} at {local:%H:%M}"


def form_data(dovecot, **changes: str) -> dict[str, str | int]:
    data = {"email": dovecot.user, "host": "127.0.0.1", "port": dovecot.imap_port, "security": "none",
            "login": dovecot.user, "password": "", "folder": "INBOX", "enabled": "on"}  # fmt: skip
    return {**data, **changes}


def test_fixing_the_password_on_the_form_reads_it_at_the_next_beat(alice, tenant_a, dovecot_mailbox):
    append(dovecot_mailbox, render("postfix_user_unknown.eml", sent_letters(tenant_a, ["a@example.org"])[0]))
    mailbox = make_mailbox(tenant_a, dovecot_mailbox, password="wrong")
    fail(mailbox)
    fail(mailbox)

    # Saving what was there already is no fix: the back-off stays.
    assert alice.client.post(reverse("servers:mailbox"), form_data(dovecot_mailbox)).status_code == 302
    mailbox.refresh_from_db()
    assert mailbox.failures == 2 and readers.mailboxes_to_read() == []

    fixed = form_data(dovecot_mailbox, password=dovecot_mailbox.password)
    assert alice.client.post(reverse("servers:mailbox"), fixed).status_code == 302
    mailbox.refresh_from_db()
    assert (mailbox.failures, mailbox.next_check_at) == (0, None)
    assert readers.mailboxes_to_read() == [mailbox.pk]
    read_bounce_mailboxes.delay()
    mailbox.refresh_from_db()
    assert (mailbox.health, mailbox.reports_found) == (Health.OK, 1)


def test_a_passing_connection_test_ends_the_back_off(tenant_a, dovecot_mailbox, django_capture_on_commit_callbacks):
    mailbox = make_mailbox(tenant_a, dovecot_mailbox, password="wrong")
    fail(mailbox)
    with django_capture_on_commit_callbacks(execute=True):
        services.connection_test_start(tenant=tenant_a, mailbox=mailbox)  # still the wrong password
    mailbox.refresh_from_db()
    assert mailbox.failures == 1 and mailbox.next_check_at is not None

    fix_password_behind_the_forms_back(mailbox, dovecot_mailbox.password)
    with django_capture_on_commit_callbacks(execute=True):
        services.connection_test_start(tenant=tenant_a, mailbox=mailbox)
    mailbox.refresh_from_db()
    assert (mailbox.health, mailbox.failures, mailbox.next_check_at) == (Health.OK, 0, None)
    assert readers.mailboxes_to_read() == [mailbox.pk]


def test_a_successful_reading_ends_the_back_off(tenant_a, dovecot_mailbox):
    mailbox = make_mailbox(tenant_a, dovecot_mailbox, password="wrong")
    fail(mailbox)
    fail(mailbox)
    fix_password_behind_the_forms_back(mailbox, dovecot_mailbox.password)
    assert readers.read_mailbox(mailbox_id=mailbox.pk).status == "done"
    mailbox.refresh_from_db()
    assert (mailbox.failures, mailbox.next_check_at) == (0, None)


def test_a_fix_saved_while_a_reader_was_failing_is_tried_at_the_next_beat(tenant_a, dovecot_mailbox, monkeypatch):
    mailbox = make_mailbox(tenant_a, dovecot_mailbox, password="wrong")
    real_connect = imap.ImapReader._connect

    def tenant_saves_meanwhile(reader):
        box = BounceMailbox.objects.get(pk=reader.mailbox.pk)
        services.mailbox_save(mailbox=box, password=dovecot_mailbox.password)
        return real_connect(reader)  # with the password it had loaded

    monkeypatch.setattr(imap.ImapReader, "_connect", tenant_saves_meanwhile)
    fail(mailbox)
    assert (mailbox.failures, mailbox.next_check_at) == (0, None)
    assert readers.mailboxes_to_read() == [mailbox.pk]
