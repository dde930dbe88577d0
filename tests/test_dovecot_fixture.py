"""The Dovecot fixture itself: a real IMAP/POP3 server on loopback that takes
logins over plain text, STARTTLS/STLS and implicit TLS (verified against the
fixture's own CA), refuses a wrong password, and serves what `deliver` drops
into the Maildir."""

import imaplib
import poplib
import ssl
from email.message import EmailMessage

import pytest

from tests.dovecot import DovecotServer

pytestmark = pytest.mark.services


def message(subject: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "MAILER-DAEMON@mx.example.test"
    msg["To"] = "bounces@postroute.test"
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{subject.replace(' ', '-')}@mx.example.test>"
    msg.set_content(f"{subject}\n")
    return msg.as_bytes()


def assert_logged_in(client: imaplib.IMAP4) -> None:
    status, _ = client.select("INBOX", readonly=True)
    assert status == "OK"
    client.logout()


def test_imap_plain_login(dovecot_mailbox: DovecotServer):
    client = imaplib.IMAP4(dovecot_mailbox.host, dovecot_mailbox.imap_port, timeout=10)
    assert b"STARTTLS" in client.capability()[1][0]
    status, _ = client.login(dovecot_mailbox.user, dovecot_mailbox.password)
    assert status == "OK"
    assert_logged_in(client)


def test_imap_starttls_login_verifies_the_certificate(dovecot_mailbox: DovecotServer):
    # Connect by name so the certificate's DNS name "localhost" is what gets checked.
    client = imaplib.IMAP4("localhost", dovecot_mailbox.imap_port, timeout=10)
    client.starttls(ssl_context=dovecot_mailbox.ssl_context())
    assert isinstance(client.sock, ssl.SSLSocket)
    assert client.sock.server_hostname == "localhost"
    client.login(dovecot_mailbox.user, dovecot_mailbox.password)
    assert_logged_in(client)


def test_imaps_login_verifies_the_certificate(dovecot_mailbox: DovecotServer):
    context = ssl.create_default_context(cafile=str(dovecot_mailbox.ca_file))
    client = imaplib.IMAP4_SSL("localhost", dovecot_mailbox.imaps_port, ssl_context=context, timeout=10)
    assert client.sock.getpeercert()["subjectAltName"] == (("DNS", "localhost"), ("IP Address", "127.0.0.1"))
    client.login(dovecot_mailbox.user, dovecot_mailbox.password)
    assert_logged_in(client)


def test_imaps_is_refused_without_the_fixture_ca(dovecot_mailbox: DovecotServer):
    context = ssl.create_default_context()  # system CAs only: the throwaway CA is unknown
    with pytest.raises(ssl.SSLCertVerificationError):
        imaplib.IMAP4_SSL("localhost", dovecot_mailbox.imaps_port, ssl_context=context, timeout=10)


def test_a_wrong_password_is_refused(dovecot_mailbox: DovecotServer):
    client = imaplib.IMAP4(dovecot_mailbox.host, dovecot_mailbox.imap_port, timeout=10)
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        client.login(dovecot_mailbox.user, "not-the-password")
    client.logout()


def test_delivered_messages_are_counted_and_unseen_is_found(dovecot_mailbox: DovecotServer):
    dovecot_mailbox.deliver(message("bounce one"))
    seen = dovecot_mailbox.deliver(message("bounce two"), seen=True)
    assert seen.parent.name == "cur"
    assert seen.name.endswith(":2,S")

    client = dovecot_mailbox.imap_client()
    status, data = client.select("INBOX")
    assert (status, data) == ("OK", [b"2"])
    status, data = client.search(None, "UNSEEN")
    assert status == "OK"
    assert len(data[0].split()) == 1
    _, data = client.fetch(data[0], "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert b"bounce one" in data[0][1]
    client.logout()


def test_delivery_to_another_folder(dovecot_mailbox: DovecotServer):
    dovecot_mailbox.deliver(message("processed"), folder="Processed")
    client = dovecot_mailbox.imap_client(ssl=True)
    assert client.select("Processed") == ("OK", [b"1"])
    assert client.select("INBOX") == ("OK", [b"0"])
    client.logout()


def test_each_test_starts_with_an_empty_mailbox(dovecot_mailbox: DovecotServer):
    client = dovecot_mailbox.imap_client()
    assert client.select("INBOX") == ("OK", [b"0"])
    _, folders = client.list()
    assert folders == [b'(\\HasNoChildren) "." INBOX']
    client.logout()


def pop3_sees_the_messages(client: poplib.POP3) -> None:
    count, _size = client.stat()
    assert count == 2
    _, listing, _ = client.uidl()
    uids = [line.split()[1] for line in listing]
    assert len(uids) == 2
    assert len(set(uids)) == 2
    subjects = {line for number in (1, 2) for line in client.retr(number)[1] if line.startswith(b"Subject:")}
    assert subjects == {b"Subject: pop one", b"Subject: pop two"}
    client.quit()


@pytest.mark.parametrize("transport", ["plain", "stls", "pop3s"])
def test_pop3_sees_the_messages_with_uidl(dovecot_mailbox: DovecotServer, transport: str):
    dovecot_mailbox.deliver(message("pop one"))
    dovecot_mailbox.deliver(message("pop two"), seen=True)
    client: poplib.POP3
    if transport == "pop3s":
        client = poplib.POP3_SSL(
            "localhost", dovecot_mailbox.pop3s_port, context=dovecot_mailbox.ssl_context(), timeout=10
        )
    else:
        client = poplib.POP3("localhost", dovecot_mailbox.pop3_port, timeout=10)
        if transport == "stls":
            assert "STLS" in client.capa()
            client.stls(context=dovecot_mailbox.ssl_context())
            assert isinstance(client.sock, ssl.SSLSocket)
    client.user(dovecot_mailbox.user)
    client.pass_(dovecot_mailbox.password)
    pop3_sees_the_messages(client)


def test_pop3_refuses_a_wrong_password(dovecot_mailbox: DovecotServer):
    client = poplib.POP3(dovecot_mailbox.host, dovecot_mailbox.pop3_port, timeout=10)
    client.user(dovecot_mailbox.user)
    with pytest.raises(poplib.error_proto, match="AUTH"):
        client.pass_("not-the-password")
    client.quit()
