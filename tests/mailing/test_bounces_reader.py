"""The bounce reader against a real Dovecot over IMAP: reading twice counts
once, a reader killed in the middle loses and double-counts nothing, human
mail stays unseen, one reader at a time, TLS, failures and tenancy."""

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts import services as account_services
from mailing import mailings as services
from mailing.bounces import imap, readers, reading
from mailing.bounces import services as bounce_services
from mailing.models import BounceReport, Letter, Mailing, Suppression
from mailing.tasks import read_bounce_mailboxes
from servers.models import BounceMailbox, Health, Security
from tests.helpers import free_port

from .bounce_helpers import append, folder_messages, make_mailbox, render, sent_letters

pytestmark = pytest.mark.django_db


class Killed(Exception):
    """Stands for a worker that dies in the middle of a run."""


def fill(dovecot, letters, name="postfix_user_unknown.eml"):
    for letter in letters:
        append(dovecot, render(name, letter))


def test_reading_twice_counts_once(tenant_a, dovecot_mailbox):
    letters = sent_letters(tenant_a, ["a@example.org", "b@example.org"])
    fill(dovecot_mailbox, letters)
    append(dovecot_mailbox, render("human_reply.eml", letters[0]))
    mailbox = make_mailbox(tenant_a, dovecot_mailbox)

    first = readers.read_mailbox(mailbox_id=mailbox.pk)
    second = readers.read_mailbox(mailbox_id=mailbox.pk)

    assert (first.reports, first.left_alone) == (2, 1)
    assert (second.reports, second.left_alone) == (0, 0)
    assert BounceReport.objects.filter(tenant=tenant_a).count() == 2
    mailbox.refresh_from_db()
    assert mailbox.reports_found == 2 and mailbox.last_uid == 3


def test_a_reader_killed_in_the_middle_loses_nothing_and_counts_nothing_twice(tenant_a, dovecot_mailbox, monkeypatch):
    letters = sent_letters(tenant_a, [f"r{i}@example.org" for i in range(5)])
    fill(dovecot_mailbox, letters)
    mailbox = make_mailbox(tenant_a, dovecot_mailbox)
    real_record, calls = bounce_services.report_record, []

    def record_then_die(**kwargs):
        calls.append(1)
        report = real_record(**kwargs)
        if len(calls) == 3:  # committed, but not yet moved away
            raise Killed
        return report

    monkeypatch.setattr(bounce_services, "report_record", record_then_die)
    assert readers.read_mailbox(mailbox_id=mailbox.pk).status == "failed"
    assert BounceReport.objects.filter(tenant=tenant_a).count() == 3
    assert len(folder_messages(dovecot_mailbox, "INBOX")) == 3  # the third is still there
    monkeypatch.setattr(bounce_services, "report_record", real_record)

    result = readers.read_mailbox(mailbox_id=mailbox.pk)

    assert result.status == "done" and result.reports == 2
    assert BounceReport.objects.filter(tenant=tenant_a).count() == 5
    assert Letter.objects.filter(mailing=letters[0].mailing, status=Letter.Status.BOUNCED).count() == 5
    assert folder_messages(dovecot_mailbox, "INBOX") == []
    assert len(folder_messages(dovecot_mailbox, "Postroute.Processed")) == 5


def test_a_human_reply_is_still_unseen_and_a_read_one_still_read(tenant_a, dovecot_mailbox):
    [letter] = sent_letters(tenant_a, ["jane@example.org"])
    append(dovecot_mailbox, render("human_reply.eml", letter))
    append(dovecot_mailbox, render("out_of_office.eml", letter), flags="(\\Seen)")
    mailbox = make_mailbox(tenant_a, dovecot_mailbox)

    assert readers.read_mailbox(mailbox_id=mailbox.pk).status == "done"

    inbox = dict(folder_messages(dovecot_mailbox, "INBOX"))
    assert inbox == {"Re: Hello there": "", "Out of office: Hello there": "\\Seen"}
    assert BounceReport.objects.get(tenant=tenant_a).kind == BounceReport.Kind.AUTO_REPLY


def test_without_move_it_copies_and_expunges_only_the_report(tenant_a, dovecot_mailbox, monkeypatch):
    letters = sent_letters(tenant_a, ["a@example.org", "b@example.org"])
    fill(dovecot_mailbox, letters[:1])
    append(dovecot_mailbox, render("human_reply.eml", letters[1]), flags="(\\Deleted)")  # a person's choice
    mailbox = make_mailbox(tenant_a, dovecot_mailbox)
    real_connect = imap.ImapReader._connect

    def without_move(self):
        client = real_connect(self)
        self.capabilities.discard("MOVE")
        return client

    monkeypatch.setattr(imap.ImapReader, "_connect", without_move)
    assert readers.read_mailbox(mailbox_id=mailbox.pk).reports == 1

    assert folder_messages(dovecot_mailbox, "INBOX") == [("Re: Hello there", "\\Deleted")]
    assert len(folder_messages(dovecot_mailbox, "Postroute.Processed")) == 1


def test_where_no_folder_can_be_made_the_report_is_flagged_and_not_read_again(tenant_a, dovecot_mailbox, monkeypatch):
    letters = sent_letters(tenant_a, ["a@example.org"])
    fill(dovecot_mailbox, letters)
    mailbox = make_mailbox(tenant_a, dovecot_mailbox)
    monkeypatch.setattr(imap.ImapReader, "_ensure_processed_folder", lambda self: "")

    assert readers.read_mailbox(mailbox_id=mailbox.pk).reports == 1
    [(_subject, flags)] = folder_messages(dovecot_mailbox, "INBOX")
    assert flags == imap.PROCESSED_KEYWORD
    # A new UIDVALIDITY (the folder was rebuilt) reads from the start: the keyword still skips it.
    BounceMailbox.objects.filter(pk=mailbox.pk).update(uidvalidity=1, last_uid=0)
    assert readers.read_mailbox(mailbox_id=mailbox.pk).left_alone == 0
    assert BounceReport.objects.count() == 1


def test_only_one_reader_at_a_time_and_a_dead_readers_lease_runs_out(tenant_a, dovecot_mailbox):
    fill(dovecot_mailbox, sent_letters(tenant_a, ["a@example.org"]))
    mailbox = make_mailbox(tenant_a, dovecot_mailbox)
    lease = reading.Lease.claim(mailbox.pk)  # a reader that is still running, or died
    assert lease is not None

    assert readers.read_mailbox(mailbox_id=mailbox.pk).status == "busy"
    assert readers.mailboxes_to_read() == []

    BounceMailbox.objects.filter(pk=mailbox.pk).update(reader_lock_until=timezone.now() - timedelta(seconds=1))
    assert readers.read_mailbox(mailbox_id=mailbox.pk).reports == 1
    with pytest.raises(reading.LeaseLost):  # the dead one may not write any more
        lease.update(last_uid=0)
    mailbox.refresh_from_db()
    assert mailbox.reader_lock_until is None and mailbox.last_uid == 1


def test_the_beat_task_reads_every_enabled_mailbox(tenant_a, tenant_b, dovecot_mailbox):
    fill(dovecot_mailbox, sent_letters(tenant_a, ["a@example.org"]))
    make_mailbox(tenant_a, dovecot_mailbox)
    make_mailbox(tenant_b, dovecot_mailbox, enabled=False)

    read_bounce_mailboxes.delay()  # eager in tests

    assert BounceReport.objects.filter(tenant=tenant_a).count() == 1
    assert BounceReport.objects.filter(tenant=tenant_b).count() == 0


def test_a_suspended_tenants_mailbox_is_not_read_until_it_is_reactivated(tenant_a, tenant_b, dovecot_mailbox):
    fill(dovecot_mailbox, sent_letters(tenant_b, ["a@example.org"]))
    theirs = make_mailbox(tenant_b, dovecot_mailbox)
    ours = make_mailbox(tenant_a, dovecot_mailbox, port=free_port())  # read, but nothing answers there
    account_services.tenant_suspend(tenant=tenant_b, reason="unpaid")

    assert readers.mailboxes_to_read() == [ours.pk]
    read_bounce_mailboxes.delay()  # the beat task, eager in tests
    assert readers.read_mailbox(mailbox_id=theirs.pk).status == "disabled"  # queued before the suspension

    theirs.refresh_from_db()
    assert theirs.health_checked_at is None and not BounceReport.objects.exists()
    assert len(folder_messages(dovecot_mailbox, "INBOX")) == 1
    ours.refresh_from_db()
    assert ours.health_checked_at is not None  # the beat did run (and failed to connect)

    account_services.tenant_reactivate(tenant=tenant_b)
    read_bounce_mailboxes.delay()
    assert BounceReport.objects.filter(tenant=tenant_b).count() == 1


@pytest.mark.parametrize("security", [Security.SSL, Security.STARTTLS])
def test_it_reads_over_verified_tls(tenant_a, dovecot_mailbox, settings, security):
    settings.SERVERS_EXTRA_CA_FILE = str(dovecot_mailbox.ca_file)
    fill(dovecot_mailbox, sent_letters(tenant_a, ["a@example.org"]))
    port = dovecot_mailbox.imaps_port if security == Security.SSL else dovecot_mailbox.imap_port
    mailbox = make_mailbox(tenant_a, dovecot_mailbox, host="localhost", port=port, security=security)

    result = readers.read_mailbox(mailbox_id=mailbox.pk)

    assert (result.status, result.reports) == ("done", 1), result.error


def test_a_mailbox_with_a_cyrillic_login_and_password_is_read(tenant_a, dovecot_mailbox):
    # imaplib sends LOGIN in ASCII: the run failed before a word was sent.
    from tests.dovecot import UTF8_PASSWORD, UTF8_USER

    mailbox = make_mailbox(tenant_a, dovecot_mailbox, login=UTF8_USER, email=UTF8_USER, password=UTF8_PASSWORD)
    assert readers.read_mailbox(mailbox_id=mailbox.pk).status != "failed"
    mailbox.refresh_from_db()
    assert (mailbox.health, mailbox.last_error) == (Health.OK, "")


def test_a_wrong_password_sets_the_error_and_hint_and_the_next_run_tries_again(tenant_a, dovecot_mailbox):
    fill(dovecot_mailbox, sent_letters(tenant_a, ["a@example.org"]))
    mailbox = make_mailbox(tenant_a, dovecot_mailbox, password="wrong")

    assert readers.read_mailbox(mailbox_id=mailbox.pk).status == "failed"
    mailbox.refresh_from_db()
    assert mailbox.health == Health.FAILING and mailbox.last_error and mailbox.health_hint
    assert "password" in mailbox.last_error and mailbox.reader_lock_until is None

    mailbox.set_password(dovecot_mailbox.password)
    mailbox.save(update_fields=["password_encrypted"])
    assert readers.read_mailbox(mailbox_id=mailbox.pk).reports == 1
    mailbox.refresh_from_db()
    assert (mailbox.health, mailbox.last_error, mailbox.health_hint) == (Health.OK, "", "")


def test_a_server_that_is_down_is_explained(tenant_a, dovecot_mailbox):
    from tests.dovecot import free_ports

    mailbox = make_mailbox(tenant_a, dovecot_mailbox, port=free_ports(1)[0])
    assert readers.read_mailbox(mailbox_id=mailbox.pk).status == "failed"
    mailbox.refresh_from_db()
    assert "Nothing accepts connections" in mailbox.last_error


def test_a_missing_folder_is_an_error_not_a_crash(tenant_a, dovecot_mailbox):
    mailbox = make_mailbox(tenant_a, dovecot_mailbox, folder="Bounces")
    assert readers.read_mailbox(mailbox_id=mailbox.pk).status == "failed"
    mailbox.refresh_from_db()
    assert "Bounces" in mailbox.last_error


def test_a_report_in_one_tenants_mailbox_never_touches_another_tenants_letter(tenant_a, tenant_b, dovecot_mailbox):
    [foreign] = sent_letters(tenant_b, ["jane@example.org"])
    append(dovecot_mailbox, render("postfix_user_unknown.eml", foreign))  # B's ids, in A's mailbox
    mailbox = make_mailbox(tenant_a, dovecot_mailbox)

    assert readers.read_mailbox(mailbox_id=mailbox.pk).reports == 1

    foreign.refresh_from_db()
    assert foreign.status == Letter.Status.SENT
    assert not Suppression.objects.exists()
    report = BounceReport.objects.get()
    assert (report.tenant, report.letter) == (tenant_a, None)


def test_a_report_without_the_original_is_unconfirmed_and_changes_nothing(tenant_a, dovecot_mailbox):
    sent_letters(tenant_a, ["jane@example.org"], sent_at=timezone.now() - timedelta(days=2), name="old")
    [recent] = sent_letters(tenant_a, ["jane@example.org"], name="new")
    raw = render("qmail_user_unknown.eml", recent).split(b"--- Below this line")[0]
    append(dovecot_mailbox, raw)
    mailbox = make_mailbox(tenant_a, dovecot_mailbox)

    readers.read_mailbox(mailbox_id=mailbox.pk)

    report = BounceReport.objects.get()
    assert (report.letter, report.matched_by, report.is_unconfirmed) == (recent, BounceReport.MatchedBy.RECIPIENT, True)
    recent.refresh_from_db()
    assert recent.status == Letter.Status.SENT and not Suppression.objects.exists()


def test_a_strangers_minimal_dsn_naming_a_recipient_mailed_yesterday_suppresses_nothing(tenant_a, dovecot_mailbox):
    [letter] = sent_letters(tenant_a, ["jane@example.org"], sent_at=timezone.now() - timedelta(days=1))
    stranger = (
        "From: MAILER-DAEMON@evil.example\r\nTo: box@acme.test\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        "Message-ID: <forged-1@evil.example>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; evil.example\r\n\r\n"
        "Final-Recipient: rfc822; jane@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n--b--\r\n"
    )
    # A token of its own making does not pass for ours either.
    forged_token = "box+" + "a" * 34 + "@acme.test"
    append(dovecot_mailbox, stranger.encode())
    append(dovecot_mailbox, stranger.replace("To: box@acme.test", f"To: {forged_token}").replace("-1@", "-2@").encode())
    mailbox = make_mailbox(tenant_a, dovecot_mailbox)

    assert readers.read_mailbox(mailbox_id=mailbox.pk).reports == 2

    assert {(r.kind, r.matched_by) for r in BounceReport.objects.all()} == {("hard", BounceReport.MatchedBy.RECIPIENT)}
    letter.refresh_from_db()
    assert letter.status == Letter.Status.SENT
    assert not Suppression.objects.filter(tenant=tenant_a).exists()


def test_three_soft_bounces_within_the_window_suppress_the_address(tenant_a, dovecot_mailbox, settings):
    settings.BOUNCE_SOFT_LIMIT = 3
    letters = [sent_letters(tenant_a, ["jane@example.org"], name=f"m{i}")[0] for i in range(3)]
    mailbox = make_mailbox(tenant_a, dovecot_mailbox)
    for i, letter in enumerate(letters):
        append(dovecot_mailbox, render("greylisting_delayed.eml", letter))
        append(dovecot_mailbox, render("greylisting_delayed.eml", letter))  # "still trying" again: one letter
        readers.read_mailbox(mailbox_id=mailbox.pk)
        suppressed = Suppression.objects.filter(tenant=tenant_a, email="jane@example.org").first()
        assert (suppressed is not None) == (i == 2)
    assert suppressed.reason == Suppression.Reason.SOFT_BOUNCES
    assert all(x.status == Letter.Status.SENT for x in Letter.objects.filter(email="jane@example.org"))


def test_soft_bounces_older_than_the_window_do_not_count(tenant_a, dovecot_mailbox, settings):
    settings.BOUNCE_SOFT_WINDOW_DAYS = 30
    long_ago = timezone.now() - timedelta(days=40)
    mailbox = make_mailbox(tenant_a, dovecot_mailbox)
    for i in range(3):
        [letter] = sent_letters(tenant_a, ["jane@example.org"], name=f"m{i}", sent_at=long_ago if i < 2 else None)
        append(dovecot_mailbox, render("greylisting_delayed.eml", letter, date=long_ago if i < 2 else None))
    readers.read_mailbox(mailbox_id=mailbox.pk)
    assert BounceReport.objects.filter(kind=BounceReport.Kind.SOFT).count() == 3
    assert not Suppression.objects.exists()


def test_a_hard_bounced_address_is_skipped_by_the_next_mailing(tenant_a, dovecot_mailbox):
    letters = sent_letters(tenant_a, ["bad@example.org", "good@example.org"])
    append(dovecot_mailbox, render("gmail_account_does_not_exist.eml", letters[0]))
    readers.read_mailbox(mailbox_id=make_mailbox(tenant_a, dovecot_mailbox).pk)

    mailing = Mailing.objects.create(tenant=tenant_a, name="next", template=letters[0].mailing.template)
    lists, servers = list(letters[0].mailing.lists.all()), list(tenant_a.smtp_servers.all())
    services.mailing_save(mailing=mailing, lists=lists, servers=servers)
    assert services.mailing_start(mailing=mailing) == 1
    assert list(mailing.letters.values_list("email", flat=True)) == ["good@example.org"]


def test_a_report_holding_nul_bytes_is_kept_and_the_reading_goes_on(tenant_a, dovecot_mailbox):
    """Anyone can mail the bounce address: a report whose subject (an
    encoded word) and diagnostic hold a NUL, which no PostgreSQL text can
    keep, is recorded with U+FFFD in its place, and the reports after it
    are read too (a report that cannot be saved would stop the mailbox at
    it for good)."""
    first, second = sent_letters(tenant_a, ["a@example.org", "b@example.org"])
    hostile = render("postfix_user_unknown.eml", first)
    hostile = hostile.replace(b"\nSubject: ", b"\nSubject: =?utf-8?b?AA==?= ", 1)
    hostile = hostile.replace(b"Diagnostic-Code: smtp; ", b"Diagnostic-Code: smtp; \x00", 1)
    assert hostile.count(b"AA==") == 1 and hostile.count(b"\x00") == 1
    append(dovecot_mailbox, hostile)
    append(dovecot_mailbox, render("postfix_user_unknown.eml", second))
    mailbox = make_mailbox(tenant_a, dovecot_mailbox)

    assert readers.read_mailbox(mailbox_id=mailbox.pk).reports == 2
    report = BounceReport.objects.get(letter=first)
    assert report.subject.startswith("\ufffd") and "\x00" not in report.diagnostic + report.headers_excerpt
    assert "\ufffd" in report.diagnostic
    assert set(Letter.objects.filter(pk__in=[first.pk, second.pk]).values_list("status", flat=True)) == {"bounced"}


def test_a_report_nested_past_the_parsers_depth_is_kept_and_the_reading_goes_on(tenant_a, dovecot_mailbox):
    """Anyone can mail the bounce address: a message of a thousand nested
    multiparts (56 kB) makes the email package itself raise RecursionError.
    Before the fix that came out of the parser, every reading failed at it,
    and the reports after it were never read."""
    [letter] = sent_letters(tenant_a, ["b@example.org"])
    nested = "".join(f"--n{i}\r\nContent-Type: multipart/mixed; boundary=n{i + 1}\r\n\r\n" for i in range(1000))
    hostile = (
        "From: MAILER-DAEMON@mx.example.org (Mail Delivery System)\r\nTo: box@acme.test\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <nested@mx.example.org>\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=n0\r\n\r\n{nested}"
    )
    append(dovecot_mailbox, hostile.encode())
    append(dovecot_mailbox, render("postfix_user_unknown.eml", letter))
    mailbox = make_mailbox(tenant_a, dovecot_mailbox)

    result = readers.read_mailbox(mailbox_id=mailbox.pk)

    assert (result.status, result.reports) == ("done", 2), result.error
    kept = BounceReport.objects.get(message_id="<nested@mx.example.org>")
    assert (kept.kind, kept.letter) == (BounceReport.Kind.UNKNOWN, None)
    letter.refresh_from_db()
    assert letter.status == Letter.Status.BOUNCED


def test_a_cyrillic_folder_is_read(tenant_a, dovecot_mailbox):
    """A tenant whose mail program files reports into "Входящие/Отчёты":
    the name goes in modified UTF-7, which Dovecot (as every server) takes.
    Before the fix: "Unexpected error: 'ascii' codec can't encode
    characters" on every reading, nothing read."""
    [letter] = sent_letters(tenant_a, ["jane@example.org"])
    client = dovecot_mailbox.imap_client()
    try:
        assert client.create('"&BBIERQQ+BDQETwRJBDgENQ-"')[0] == "OK"  # "Входящие"
    finally:
        client.logout()
    append(dovecot_mailbox, render("postfix_user_unknown.eml", letter), folder="&BBIERQQ+BDQETwRJBDgENQ-")
    mailbox = make_mailbox(tenant_a, dovecot_mailbox, folder="Входящие")

    result = readers.read_mailbox(mailbox_id=mailbox.pk)

    assert (result.status, result.reports, result.error) == ("done", 1, "")
    letter.refresh_from_db()
    assert letter.status == Letter.Status.BOUNCED
    assert folder_messages(dovecot_mailbox, "&BBIERQQ+BDQETwRJBDgENQ-") == []


def test_a_mailbox_two_tenants_read_leaves_each_the_others_reports(tenant_a, tenant_b, dovecot_mailbox):
    """Two organisations of one company with one bounce mailbox: A's reader
    moved B's report to Postroute/Processed with its own (every report
    goes there), so B's reader, reading INBOX, never saw it and B's letter
    stayed sent, its unknown address mailed on."""
    [ours] = sent_letters(tenant_a, ["a@example.org"])
    [theirs] = sent_letters(tenant_b, ["b@example.org"], name="b")
    append(dovecot_mailbox, render("postfix_user_unknown.eml", ours))
    append(dovecot_mailbox, render("exim_user_unknown.eml", theirs))
    mine, other = make_mailbox(tenant_a, dovecot_mailbox), make_mailbox(tenant_b, dovecot_mailbox)

    readers.read_mailbox(mailbox_id=mine.pk)

    assert [subject for subject, _flags in folder_messages(dovecot_mailbox, "INBOX")] == [
        "Mail delivery failed: returning message to sender"
    ]
    assert readers.read_mailbox(mailbox_id=other.pk).reports == 1
    theirs.refresh_from_db()
    assert theirs.status == Letter.Status.BOUNCED
    assert Suppression.objects.filter(tenant=tenant_b, email="b@example.org").exists()
    assert not Suppression.objects.filter(tenant=tenant_a, email="b@example.org").exists()
