"""The product against a real MTA: the real dispatch sends a mailing through
Postfix's submission port (STARTTLS verified against the test CA, SASL
checked by Dovecot, PIPELINING), Postfix delivers into Dovecot's Maildirs,
and the real bounce reader reads Postfix's own DSNs back over IMAP and POP3.
PostgreSQL only: the dispatch's claims and limits are PostgreSQL's."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from mailing import dispatch
from mailing.bounces import parser, readers, tokens
from mailing.dispatch.replies import TOO_BIG_NOTE
from mailing.models import BounceReport, Contact, Letter, Mailing, Suppression
from servers.models import BounceMailbox, Health
from servers.probes import smtp_probe
from tests.mailing.bounce_helpers import make_mailbox
from tests.postfix import recipients

from .helpers import assert_delivered_once, letters_by_email, run_until_settled, start_mailing, submission_server

pytestmark = [pytest.mark.django_db, pytest.mark.services]
L = Letter.Status
UNKNOWN = ["nobody@mta.example.net", "gone@mta.example.net"]


@pytest.mark.django_db(transaction=True)
def test_a_mailing_is_delivered_exactly_once_through_submission(tenant_a, mta, settings):
    # As production runs it: started in a committed transaction, the mailing
    # goes out through the task chain (Celery runs it eagerly here), results
    # are recorded by the writer thread on its own connection, and four
    # letters share each connection.
    settings.DISPATCH_RECORD_THREAD = True
    settings.DISPATCH_BATCH = 4
    settings.DISPATCH_CHAINS = 1  # run eagerly, one chain: full batches, not shares for a second chain
    log_start = len(mta.log())
    server = submission_server(tenant_a, mta)
    mailing = start_mailing(tenant_a, server, recipients(10))

    assert dispatch.run_mailing(mailing_id=mailing.pk, now=timezone.now()) == "idle"  # nothing left to send
    mta.settle()

    letters = list(Letter.objects.filter(mailing=mailing))
    assert {letter.status for letter in letters} == {L.SENT} and len(letters) == 10
    assert_delivered_once(mta, letters)
    assert mta.messages(mta.login) == []  # no DSN
    mailing.refresh_from_db()
    assert mailing.status == Mailing.Status.COMPLETED
    server.refresh_from_db()
    assert server.health != Health.FAILING
    # One connection per batch: STARTTLS, one login, MAIL RCPT DATA per letter, QUIT.
    sessions = [line.split("]: ", 1)[1] for line in mta.log()[log_start:].splitlines() if " auth=" in line]
    assert sessions == [
        *["disconnect from localhost[127.0.0.1] ehlo=2 starttls=1 auth=1 mail=4 rcpt=4 data=4 quit=1 commands=17"] * 2,
        "disconnect from localhost[127.0.0.1] ehlo=2 starttls=1 auth=1 mail=2 rcpt=2 data=2 quit=1 commands=11",
    ]


def test_the_connection_test_passes_against_the_real_submission(tenant_a, mta):
    server = submission_server(tenant_a, mta)
    result = smtp_probe(server)
    assert result.ok, result.diagnosis
    assert [s.name for s in result.steps] == [
        "Check the settings", "Connect", "EHLO", "STARTTLS", "Log in (AUTH)", "Sender accepted (MAIL FROM)",
        "NOOP and QUIT",
    ]  # fmt: skip
    assert all(step.ok for step in result.steps)

    result = smtp_probe(server, send_to="r000@mta.example.net")
    assert result.ok, result.diagnosis
    mta.settle()
    [letter] = mta.messages("r000@mta.example.net")
    assert letter["From"].addresses[0].addr_spec == mta.login


def test_the_connection_test_explains_a_wrong_password(tenant_a, mta):
    result = smtp_probe(submission_server(tenant_a, mta, password="not-the-password"))
    assert result.diagnosis.category == "auth" and result.diagnosis.disables_server
    assert "535" in result.diagnosis.message
    assert result.steps[-1].name == "Log in (AUTH)" and not result.steps[-1].ok


def test_an_unknown_recipient_refused_at_rcpt_fails_its_letter_and_the_others_arrive_once(tenant_a, mta):
    server = submission_server(tenant_a, mta)
    good = recipients(4)
    mailing = start_mailing(tenant_a, server, [*good[:2], UNKNOWN[0], *good[2:]])

    assert run_until_settled(mailing) == "done"
    mta.settle()

    letters = letters_by_email(mailing)
    refused = letters.pop(UNKNOWN[0])
    assert refused.status == L.FAILED
    assert refused.last_reply == (
        "550 5.1.1 <nobody@mta.example.net>: Recipient address rejected: User unknown in virtual mailbox table"
    )
    assert {letter.status for letter in letters.values()} == {L.SENT}
    assert_delivered_once(mta, list(letters.values()))
    assert mta.maildir_files(UNKNOWN[0]) == [] and mta.messages(mta.login) == []
    server.refresh_from_db()
    assert server.health != Health.FAILING  # one bad address says nothing about the server


@pytest.mark.parametrize("protocol", [BounceMailbox.Protocol.IMAP, BounceMailbox.Protocol.POP3])
def test_postfix_dsns_are_read_back_and_tied_to_their_letters(tenant_a, mta, protocol):
    mta.configure(reject_unlisted=False)  # accepted at RCPT, bounced afterwards
    server = submission_server(tenant_a, mta)
    good = recipients(3)
    mailing = start_mailing(tenant_a, server, [*good, *UNKNOWN])

    assert run_until_settled(mailing) == "done"
    assert {letter.status for letter in letters_by_email(mailing).values()} == {L.SENT}
    mta.settle()
    dsns = mta.messages(mta.login)
    assert len(dsns) == 2  # Postfix's own, one per unknown recipient
    assert {dsn["From"] for dsn in dsns} == {"Mail Delivery System <MAILER-DAEMON@mx.postroute.test>"}

    port = mta.dovecot.imap_port if protocol == BounceMailbox.Protocol.IMAP else mta.dovecot.pop3_port
    mailbox = make_mailbox(tenant_a, mta.dovecot, protocol=protocol, port=port)
    result = readers.read_mailbox(mailbox_id=mailbox.pk)
    again = readers.read_mailbox(mailbox_id=mailbox.pk)

    assert (result.status, result.reports, result.left_alone) == ("done", 2, 0), result.error
    assert (again.status, again.reports) == ("done", 0)
    letters = letters_by_email(mailing)
    for address in UNKNOWN:
        letter = letters.pop(address)
        assert letter.status == L.BOUNCED
        [report] = BounceReport.objects.filter(letter=letter)
        assert (report.kind, report.status, report.matched_by) == ("hard", "5.1.1", "header")
        assert report.recipient == address
        assert Suppression.objects.filter(
            tenant=tenant_a, email=address, reason=Suppression.Reason.HARD_BOUNCE
        ).exists()
    assert {letter.status for letter in letters.values()} == {L.SENT}
    assert_delivered_once(mta, list(letters.values()))
    assert not Suppression.objects.filter(tenant=tenant_a, email__in=good).exists()


def test_with_sender_substitution_postfix_returns_its_dsns_to_the_tagged_bounce_address(tenant_a, mta):
    """The letters go out with the bounce mailbox as envelope sender, tagged
    per letter; Postfix's DSNs reach that address (plus-addressing), and
    each names its letter by the tag as well as by the returned original."""
    mta.configure(reject_unlisted=False)
    mailbox = make_mailbox(tenant_a, mta.dovecot)  # the bounce mailbox: mta.login
    server = submission_server(tenant_a, mta, allow_sender_substitution=True)
    mailing = start_mailing(tenant_a, server, [*recipients(2), UNKNOWN[0]])

    assert run_until_settled(mailing) == "done"
    mta.settle()
    letter = letters_by_email(mailing)[UNKNOWN[0]]
    tagged = tokens.address(mta.login, letter.public_id)
    [dsn] = mta.messages(mta.login)
    assert dsn["To"] == tagged
    assert parser.parse(dsn.as_bytes()).envelope_tokens == [tokens.make(letter.public_id)]

    result = readers.read_mailbox(mailbox_id=mailbox.pk)

    assert (result.status, result.reports) == ("done", 1), result.error
    letter.refresh_from_db()
    assert letter.status == L.BOUNCED
    assert BounceReport.objects.get(letter=letter).kind == "hard"


def test_ten_refused_recipients_in_a_row_do_not_hold_up_the_others(tenant_a, mta, caplog):
    # Postfix counts errors per connection until a letter is accepted:
    # from smtpd_soft_error_limit (10) on every reply waits a second, at
    # smtpd_hard_error_limit (20) it says "421 4.7.0 Error: too many errors".
    server = submission_server(tenant_a, mta)
    gone = [f"gone{i:02d}@mta.example.net" for i in range(10)]  # first by pk and by address
    mailing = start_mailing(tenant_a, server, [*gone, *recipients(3)])

    result = run_until_settled(mailing)

    letters = letters_by_email(mailing)
    assert {letters.pop(address).status for address in gone} == {L.FAILED}
    server.refresh_from_db()
    assert (result, server.backoff_until) == ("done", None), [r.getMessage() for r in caplog.records]
    assert {letter.status for letter in letters.values()} == {L.SENT}


def test_postfixs_rate_limit_makes_the_server_wait_for_its_window_not_crawl(tenant_a, mta):
    """Postfix's smtpd_client_message_rate_limit (5 letters per 5-second
    window here, a minute in real life) answers 450 4.7.1 "too much mail" at
    MAIL FROM: the server waits for the window (the dispatcher waits a
    minute; the test moves its clock by that) and the next window takes the
    next five, without the rests growing, until every letter is delivered
    once."""
    mta.configure(message_rate_limit=5, rate_time_unit=5)
    server = submission_server(tenant_a, mta)
    mailing = start_mailing(tenant_a, server, recipients(12, start=600))  # mailboxes no other test uses
    now, waits = timezone.now(), []
    for _ in range(10):
        result = None
        for _ in range(20):
            result = dispatch.run_mailing(mailing_id=mailing.pk, now=now)
            if result != "more":
                break
        if result == "done":
            break
        assert result == "waiting", result
        server.refresh_from_db()
        assert (server.rest_reason, server.health) == ("rate_limit", Health.UNKNOWN)
        assert "too much mail" in server.rest_reply
        waits.append(server.backoff_until - now)
        now = server.backoff_until
        time.sleep(5.2)  # Postfix's own window, in real time
    assert result == "done"
    # 5 + 5 + 2: never longer, never "trouble" (from the reply: the batch's
    # clock moved on by its milliseconds)
    assert len(waits) == 2 and all(timedelta(minutes=1) <= wait <= timedelta(minutes=1, seconds=5) for wait in waits)
    letters = letters_by_email(mailing)
    assert {le.status for le in letters.values()} == {L.SENT}
    assert {le.attempts for le in letters.values()} == {1}  # the refusals were the server's, uncounted
    mta.settle()
    assert_delivered_once(mta, list(letters.values()))
    server.refresh_from_db()
    assert (server.connection_failures, server.rest_reason, server.backoff_until) == (0, "", None)


def test_a_letter_above_postfixs_message_size_limit_fails_unsent_and_the_others_arrive_once(tenant_a, mta):
    """Postfix announces its message_size_limit in its EHLO ("SIZE 6000"
    here): the letter above it is never sent and fails at once with both
    sizes; the others, each told its SIZE in MAIL FROM (which Postfix
    checks), are delivered once over the same connection; the server does
    not rest."""
    mta.configure(message_size_limit=6000)
    server = submission_server(tenant_a, mta)
    emails = recipients(3, start=620)  # mailboxes no other test uses
    Contact.objects.create(tenant=tenant_a, email=emails[1], first_name="x" * 100)
    body = "Hi {{ first_name }}! " * 100 + "{{ unsubscribe_url }}"  # 2 KB, or 12 KB with the long name
    mailing = start_mailing(tenant_a, server, emails, text_body=body, html_body="<p>{{ first_name }}</p>")
    assert run_until_settled(mailing) == "done"
    letters = letters_by_email(mailing)
    big = letters.pop(emails[1])
    assert big.status == L.FAILED
    assert big.last_reply.startswith(TOO_BIG_NOTE) and big.last_reply.endswith(
        " the server's maximum is 6000 (its SIZE)."
    )
    assert {le.status for le in letters.values()} == {L.SENT}
    server.refresh_from_db()
    assert (server.backoff_until, server.health) == (None, Health.UNKNOWN)
    mta.settle()
    assert_delivered_once(mta, list(letters.values()))
    assert mta.messages(emails[1]) == []
    assert "message size" not in mta.log()  # Postfix refused nothing for its size
