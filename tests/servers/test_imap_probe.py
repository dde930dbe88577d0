"""The bounce mailbox's connection test against a real IMAP server (the
Dovecot the suite starts)."""

import pytest

from servers.models import BounceMailbox, Security
from servers.probes import imap_probe

pytestmark = pytest.mark.django_db


@pytest.fixture
def mailbox(tenant_a, dovecot_mailbox, settings):
    settings.SERVERS_EXTRA_CA_FILE = str(dovecot_mailbox.ca_file)
    box = BounceMailbox(
        tenant=tenant_a,
        host="localhost",
        port=dovecot_mailbox.imaps_port,
        security=Security.SSL,
        login=dovecot_mailbox.user,
    )
    box.set_password(dovecot_mailbox.password)
    box.save()
    return box


def test_imaps_logs_in_and_counts_the_folder(mailbox, dovecot_mailbox):
    dovecot_mailbox.deliver(b"Subject: one\r\n\r\nbody\r\n")
    dovecot_mailbox.deliver(b"Subject: two\r\n\r\nbody\r\n", seen=True)
    result = imap_probe(mailbox)
    assert result.ok, result.diagnosis
    names = [s.name for s in result.steps]
    assert names == ["Check the settings", "Connect with SSL/TLS", "Log in", "Open the folder INBOX", "Log out"]
    assert result.steps[3].detail == "2 message(s)"


def test_starttls_on_the_plain_port(mailbox, dovecot_mailbox):
    mailbox.port, mailbox.security = dovecot_mailbox.imap_port, Security.STARTTLS
    result = imap_probe(mailbox)
    assert result.ok, result.diagnosis
    assert "STARTTLS" in [s.name for s in result.steps]


def test_a_wrong_password_is_explained(mailbox):
    mailbox.set_password("not-the-password")
    result = imap_probe(mailbox)
    assert result.diagnosis.category == "auth"
    assert result.steps[-1].name == "Log in" and not result.steps[-1].ok


def test_a_missing_folder_is_reported(mailbox):
    mailbox.folder = "Bounces"
    result = imap_probe(mailbox)
    assert result.diagnosis is not None
    assert "Bounces" in result.diagnosis.message


def test_the_wrong_certificate_authority_is_refused(mailbox, settings):
    settings.SERVERS_EXTRA_CA_FILE = ""
    result = imap_probe(mailbox)
    assert result.diagnosis.category == "tls_certificate"


@pytest.mark.parametrize("security", [Security.SSL, Security.STARTTLS])
def test_a_pop3_mailbox_is_tested_over_pop3(mailbox, dovecot_mailbox, security):
    from servers.probes import mailbox_probe

    dovecot_mailbox.deliver(b"Subject: one\r\n\r\nbody\r\n")
    mailbox.protocol = BounceMailbox.Protocol.POP3
    mailbox.security = security
    mailbox.port = dovecot_mailbox.pop3s_port if security == Security.SSL else dovecot_mailbox.pop3_port
    result = mailbox_probe(mailbox)
    assert result.ok, result.diagnosis
    assert result.steps[-2].detail.startswith("1 message(s)")
    mailbox.set_password("wrong")
    assert mailbox_probe(mailbox).diagnosis.category == "auth"
