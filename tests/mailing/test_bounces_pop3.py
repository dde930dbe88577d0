"""The bounce reader over POP3 against a real Dovecot: messages are
remembered by UIDL, read without being marked read, and deleted only when
the tenant turned that on."""

import pytest

from mailing.bounces import readers
from mailing.bounces import services as bounce_services
from mailing.models import BounceReport, Letter, ReadMessage
from servers.models import BounceMailbox, Security

from .bounce_helpers import append, folder_messages, make_mailbox, render, sent_letters

pytestmark = pytest.mark.django_db
POP3 = BounceMailbox.Protocol.POP3


class Killed(Exception):
    pass


def pop3_mailbox(tenant, dovecot, **fields):
    return make_mailbox(tenant, dovecot, protocol=POP3, port=dovecot.pop3_port, **fields)


def fill(dovecot, tenant):
    letters = sent_letters(tenant, ["a@example.org", "b@example.org", "c@example.org"])
    append(dovecot, render("postfix_user_unknown.eml", letters[0]))
    append(dovecot, render("human_reply.eml", letters[1]))
    append(dovecot, render("exim_user_unknown.eml", letters[2]))
    return letters


def test_it_reads_reports_keeps_everything_and_counts_once(tenant_a, dovecot_mailbox):
    letters = fill(dovecot_mailbox, tenant_a)
    mailbox = pop3_mailbox(tenant_a, dovecot_mailbox)

    first = readers.read_mailbox(mailbox_id=mailbox.pk)
    second = readers.read_mailbox(mailbox_id=mailbox.pk)

    assert (first.status, first.reports, first.left_alone) == ("done", 2, 1), first.error
    assert (second.reports, second.left_alone) == (0, 0)
    statuses = [Letter.objects.get(pk=x.pk).status for x in letters]
    assert statuses == [Letter.Status.BOUNCED, Letter.Status.SENT, Letter.Status.BOUNCED]
    # Nothing deleted, nothing marked read (TOP, not RETR).
    messages = folder_messages(dovecot_mailbox, "INBOX")
    assert len(messages) == 3 and all("\\Seen" not in flags for _, flags in messages)
    assert ReadMessage.objects.filter(mailbox=mailbox).count() == 3


def test_reports_are_deleted_only_when_the_tenant_asks(tenant_a, dovecot_mailbox):
    fill(dovecot_mailbox, tenant_a)
    mailbox = pop3_mailbox(tenant_a, dovecot_mailbox, delete_after_processing=True)

    assert readers.read_mailbox(mailbox_id=mailbox.pk).reports == 2

    assert folder_messages(dovecot_mailbox, "INBOX") == [("Re: Hello there", "")]
    readers.read_mailbox(mailbox_id=mailbox.pk)  # forgets what left the server
    assert list(ReadMessage.objects.values_list("is_report", flat=True)) == [False]


def test_a_reader_killed_in_the_middle_deletes_nothing_and_counts_nothing_twice(tenant_a, dovecot_mailbox, monkeypatch):
    fill(dovecot_mailbox, tenant_a)
    mailbox = pop3_mailbox(tenant_a, dovecot_mailbox, delete_after_processing=True)
    real_record = bounce_services.report_record

    def record_then_die(**kwargs):
        real_record(**kwargs)
        raise Killed

    monkeypatch.setattr(bounce_services, "report_record", record_then_die)
    assert readers.read_mailbox(mailbox_id=mailbox.pk).status == "failed"
    assert len(folder_messages(dovecot_mailbox, "INBOX")) == 3  # no QUIT, no deletion
    monkeypatch.setattr(bounce_services, "report_record", real_record)

    assert readers.read_mailbox(mailbox_id=mailbox.pk).reports == 1
    assert BounceReport.objects.count() == 2
    assert folder_messages(dovecot_mailbox, "INBOX") == [("Re: Hello there", "")]


@pytest.mark.parametrize("security", [Security.SSL, Security.STARTTLS])
def test_it_reads_over_verified_tls(tenant_a, dovecot_mailbox, settings, security):
    settings.SERVERS_EXTRA_CA_FILE = str(dovecot_mailbox.ca_file)
    fill(dovecot_mailbox, tenant_a)
    port = dovecot_mailbox.pop3s_port if security == Security.SSL else dovecot_mailbox.pop3_port
    mailbox = pop3_mailbox(tenant_a, dovecot_mailbox, host="localhost", security=security)
    BounceMailbox.objects.filter(pk=mailbox.pk).update(port=port)

    result = readers.read_mailbox(mailbox_id=mailbox.pk)

    assert (result.status, result.reports) == ("done", 2), result.error


def test_a_certificate_for_another_name_is_refused(tenant_a, dovecot_mailbox, settings):
    settings.SERVERS_EXTRA_CA_FILE = str(dovecot_mailbox.ca_file)
    mailbox = pop3_mailbox(tenant_a, dovecot_mailbox, security=Security.SSL)
    # 127.1 is 127.0.0.1, but not a name the certificate was issued for.
    BounceMailbox.objects.filter(pk=mailbox.pk).update(host="127.1", port=dovecot_mailbox.pop3s_port)

    assert readers.read_mailbox(mailbox_id=mailbox.pk).status == "failed"
    mailbox.refresh_from_db()
    assert "certificate" in mailbox.last_error and mailbox.health == "failing"


def test_a_wrong_password_sets_the_error_and_hint(tenant_a, dovecot_mailbox):
    mailbox = pop3_mailbox(tenant_a, dovecot_mailbox, password="wrong")

    assert readers.read_mailbox(mailbox_id=mailbox.pk).status == "failed"

    mailbox.refresh_from_db()
    assert mailbox.last_error and mailbox.health_hint and mailbox.reader_lock_until is None
