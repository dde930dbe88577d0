"""The Postfix fixture itself: a private instance on loopback whose
submission port wants STARTTLS and a SASL login checked by Dovecot, that
delivers its own domains over LMTP into Dovecot's Maildirs, lets nothing
leave the machine, and whose switches do what they say: unknown recipients
refused at RCPT or bounced with a real DSN, and a rate limit per minute."""

import smtplib
import ssl
from email.message import EmailMessage

import pytest

from tests.postfix import NOTHING_LEAVES, PostfixInstance, PostfixServer, _alive, _children, recipients

pytestmark = pytest.mark.services


def letter(to: str, subject: str = "hello", sender: str = "bounces@postroute.test") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["X-Postroute-Letter"] = subject.replace(" ", "-")
    msg.set_content(f"{subject}\n")
    return msg


def submission(mta: PostfixServer, *, login: bool = True) -> smtplib.SMTP:
    """Connected by name, so the certificate's "localhost" is what gets verified."""
    client = smtplib.SMTP("localhost", mta.submission_port, timeout=10)
    client.starttls(context=ssl.create_default_context(cafile=str(mta.ca_file)))
    client.ehlo()
    if login:
        client.login(mta.login, mta.password)
    return client


def plain(mta: PostfixServer) -> smtplib.SMTP:
    return smtplib.SMTP(mta.host, mta.smtp_port, timeout=10)


def test_submission_wants_starttls_before_anything(postfix_mta):
    client = smtplib.SMTP(postfix_mta.host, postfix_mta.submission_port, timeout=10)
    client.ehlo()
    assert client.has_extn("starttls") and client.has_extn("pipelining")
    assert not client.has_extn("auth")  # no password over plain text
    assert client.mail(postfix_mta.login)[0] == 530  # 5.7.0 Must issue a STARTTLS command first
    client.close()


def test_submission_checks_the_login_with_dovecot(postfix_mta):
    client = submission(postfix_mta, login=False)
    assert client.sock.getpeercert()["subjectAltName"] == (("DNS", "localhost"), ("IP Address", "127.0.0.1"))
    assert set(client.esmtp_features["auth"].split()) == {"PLAIN", "LOGIN"}
    with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
        client.login(postfix_mta.login, "not-the-password")
    assert refused.value.smtp_code == 535
    client.login(postfix_mta.login, postfix_mta.password)
    client.quit()


def test_submission_refuses_a_client_that_did_not_log_in(postfix_mta):
    client = submission(postfix_mta, login=False)
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        client.send_message(letter("r000@mta.example.net"))
    [(code, reply)] = refused.value.recipients.values()
    assert code == 554 and b"Access denied" in reply
    client.quit()


def test_a_letter_lands_once_in_each_recipients_maildir(postfix_mta):
    to = recipients(3)
    client = submission(postfix_mta)
    for address in to:
        client.send_message(letter(address, subject=f"for {address}"))
    client.quit()
    postfix_mta.settle()

    for address in to:
        [delivered] = postfix_mta.messages(address)
        assert delivered["X-Postroute-Letter"] == f"for-{address}"
        assert delivered["Delivered-To"] == address
        assert "with ESMTPSA" in delivered.get_all("Received")[-1]  # TLS and a login
    assert postfix_mta.messages(postfix_mta.login) == []  # no DSN


def test_each_test_starts_with_an_empty_queue_and_empty_mailboxes(postfix_mta):
    assert postfix_mta.queue() == []
    assert postfix_mta.maildir_files("r000@mta.example.net") == []
    assert postfix_mta.maildir_files(postfix_mta.login) == []
    assert postfix_mta.switches == {
        "reject_unlisted": True,
        "message_rate_limit": 0,
        "rate_time_unit": 60,
        "message_size_limit": 10240000,
    }


def test_nothing_leaves_the_machine(postfix_mta):
    # The plain port relays for nobody.
    client = plain(postfix_mta)
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        client.send_message(letter("someone@example.com"))
    [(code, reply)] = refused.value.recipients.values()
    assert code == 554 and b"Relay access denied" in reply
    client.quit()
    # A logged-in client may relay, but the only way out is the error
    # transport, which Postfix refuses at RCPT...
    client = submission(postfix_mta)
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        client.send_message(letter("someone@example.com"))
    [(code, reply)] = refused.value.recipients.values()
    assert code == 550 and NOTHING_LEAVES.removeprefix("error:").encode() in reply
    client.quit()
    # ... and there is no SMTP client to send with at all.
    services = postfix_mta.command("postconf", "-M").splitlines()
    assert not [line for line in services if line.split()[:1] in (["smtp"], ["relay"])]
    assert postfix_mta.command("postconf", "-h", "inet_interfaces").strip() == "127.0.0.1"


def test_switched_mail_for_elsewhere_comes_back_to_the_sender(postfix_mta):
    postfix_mta.configure(reject_unlisted=False)
    client = submission(postfix_mta)
    assert client.send_message(letter("someone@example.com", subject="outbound")) == {}
    client.quit()
    postfix_mta.settle()
    [dsn] = postfix_mta.messages(postfix_mta.login)
    assert dsn["From"] == "Mail Delivery System <MAILER-DAEMON@mx.postroute.test>"
    assert "someone@example.com" in dsn.as_string()
    assert NOTHING_LEAVES.removeprefix("error:") in dsn.as_string()


def test_by_default_an_unknown_recipient_is_refused_at_rcpt(postfix_mta):
    client = plain(postfix_mta)
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        client.send_message(letter("nobody@mta.example.net"))
    [(code, reply)] = refused.value.recipients.values()
    assert code == 550
    assert reply == b"5.1.1 <nobody@mta.example.net>: Recipient address rejected: User unknown in virtual mailbox table"
    client.quit()


def test_switched_an_unknown_recipient_is_accepted_and_bounced_with_a_real_dsn(postfix_mta):
    postfix_mta.configure(reject_unlisted=False)
    client = plain(postfix_mta)
    assert client.send_message(letter("nobody@mta.example.net", subject="lost letter")) == {}
    client.quit()
    postfix_mta.settle()

    [dsn] = postfix_mta.messages(postfix_mta.login)
    assert dsn["Return-Path"] == "<>"
    assert dsn.get_content_type() == "multipart/report"
    report = next(p for p in dsn.walk() if p.get_content_type() == "message/delivery-status")
    fields = {k: str(v) for block in report.get_payload() for k, v in block.items()}
    assert fields["Final-Recipient"] == "rfc822; nobody@mta.example.net"
    assert (fields["Action"], fields["Status"]) == ("failed", "5.1.1")
    assert "550 5.1.1 <nobody@mta.example.net> User doesn't exist" in fields["Diagnostic-Code"]
    [original] = next(p for p in dsn.walk() if p.get_content_type() == "message/rfc822").get_payload()
    assert original["X-Postroute-Letter"] == "lost-letter"


def test_switched_postfix_refuses_more_than_n_letters_a_minute(postfix_mta):
    postfix_mta.configure(message_rate_limit=3)
    client = plain(postfix_mta)
    for address in recipients(3):
        assert client.send_message(letter(address)) == {}
    with pytest.raises(smtplib.SMTPSenderRefused) as refused:
        client.send_message(letter("r003@mta.example.net"))
    assert (refused.value.smtp_code, refused.value.smtp_error) == (450, b"4.7.1 Error: too much mail from 127.0.0.1")
    client.quit()
    # On another connection too: the limit is per client over a minute...
    client = plain(postfix_mta)
    with pytest.raises(smtplib.SMTPSenderRefused):
        client.send_message(letter("r003@mta.example.net"))
    client.quit()
    # ... and per port: Postfix counts each service apart.
    client = submission(postfix_mta)
    assert client.send_message(letter("r003@mta.example.net")) == {}
    client.quit()
    # Setting the switch again starts counting from zero.
    postfix_mta.configure(message_rate_limit=3)
    client = plain(postfix_mta)
    assert client.send_message(letter("r004@mta.example.net")) == {}
    client.quit()


def test_the_switches_go_back_to_the_defaults_for_the_next_test(postfix_mta):
    postfix_mta.configure(reject_unlisted=False, message_rate_limit=1, message_size_limit=5000)
    assert postfix_mta.command("postconf", "-h", "smtpd_client_message_rate_limit").strip() == "1"
    assert postfix_mta.command("postconf", "-h", "message_size_limit").strip() == "5000"


def test_after_a_switched_test_the_defaults_are_back(postfix_mta):
    assert postfix_mta.command("postconf", "-h", "smtpd_reject_unlisted_recipient").strip() == "yes"
    assert postfix_mta.command("postconf", "-h", "smtpd_client_message_rate_limit").strip() == "0"
    assert postfix_mta.command("postconf", "-h", "message_size_limit").strip() == "10240000"
    test_by_default_an_unknown_recipient_is_refused_at_rcpt(postfix_mta)


@pytest.mark.parametrize("stop", ["postfix stop", "stop fails: killed by its pid"])
def test_an_instance_leaves_no_process_and_no_directory(postfix, monkeypatch, stop):
    instance = PostfixInstance(postfix.dovecot)
    server = instance.start()
    master = server.master_pid()
    processes = [master, *_children(master)]
    assert len(processes) > 1 and server.root.is_dir()
    if stop != "postfix stop":
        real = server.command

        def failing(*args: str) -> str:
            if args == ("postfix", "stop"):
                raise RuntimeError("postfix stop failed")
            return real(*args)

        monkeypatch.setattr(server, "command", failing)
    instance.stop()
    assert not [pid for pid in processes if _alive(pid)]
    assert not server.root.exists()
