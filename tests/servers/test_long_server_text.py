"""What a hostile or broken server says is kept at a length a page can
show: IMAP and POP3 clients read a line of up to a megabyte (a message's
line may be that long), and SMTP a reply of 64 KB, so a refusal that long
was stored whole as the mailbox's or the server's error, and put on the
Servers page on every visit."""

import pytest

from mailing.bounces import readers
from servers.models import BounceMailbox, Health, Security
from tests.smtp_servers import tarpit

pytestmark = pytest.mark.django_db

LONG = b"A" * 500_000


def pop3_refusing_with(text: bytes):
    def script(peer) -> None:
        peer.say(b"+OK ready\r\n")
        while line := peer.line():
            if line.upper().startswith(b"PASS"):
                peer.say(b"-ERR " + text + b"\r\n")
                return
            peer.say(b"+OK\r\n")

    return script


def imap_refusing_with(text: bytes):
    def script(peer) -> None:
        peer.say(b"* OK [CAPABILITY IMAP4rev1] ready\r\n")
        while line := peer.line():
            tag, _, rest = line.partition(b" ")
            if rest.upper().startswith(b"LOGIN"):
                peer.say(tag + b" NO " + text + b"\r\n")
                return
            peer.say(b"* CAPABILITY IMAP4rev1\r\n" + tag + b" OK done\r\n")

    return script


@pytest.mark.parametrize(
    ("protocol", "script"),
    [(BounceMailbox.Protocol.POP3, pop3_refusing_with), (BounceMailbox.Protocol.IMAP, imap_refusing_with)],
    ids=["POP3", "IMAP"],
)
def test_a_refusal_of_half_a_megabyte_is_kept_short(tenant_a, protocol, script):
    with tarpit(script(b"[AUTH] Invalid credentials " + LONG)) as port:
        mailbox = BounceMailbox(
            tenant=tenant_a, host="127.0.0.1", port=port, protocol=protocol, security=Security.NONE, login="box"
        )
        mailbox.set_password("secret")
        mailbox.save()
        result = readers.read_mailbox(mailbox_id=mailbox.pk)
    mailbox.refresh_from_db()
    assert result.status == "failed" and mailbox.health == Health.FAILING
    # Still says what the server said, its start, and that it was cut.
    assert "Invalid credentials" in mailbox.last_error and "…" in mailbox.last_error
    for stored in (mailbox.last_error, mailbox.health_error, str(mailbox.health_words)):
        assert len(stored) < 3_000
