"""Where a letter's reports and replies go: the envelope sender (MAIL FROM,
the Return-Path) is the tenant's bounce mailbox on a server that allows
sender substitution, tagged per letter with a token only Postroute can
make, and the server's own mailbox otherwise; Reply-To is the template's,
else the bounce mailbox. Then the whole way round with real parts: a letter
sent through aiosmtpd comes back as a bounce that quotes nothing of it,
delivered into Dovecot, and the reader ties it to its letter by the token
alone."""

import uuid
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from django.utils import timezone

from mailing import dispatch
from mailing import mailings as services
from mailing.bounces import readers, tokens
from mailing.models import BounceReport, Letter, Mailing, Suppression
from mailing.sink import SinkHandler
from servers.models import BounceMailbox
from servers.selectors import report_routes
from tests.servers.factories import make_server
from tests.smtp_servers import smtp_server

from .bounce_helpers import make_mailbox
from .builders import make_list, make_template

pytestmark = pytest.mark.django_db
BOUNCES = "bounces@acme.test"


def start(tenant, server, emails, **template) -> Mailing:
    mailing = Mailing(tenant=tenant, name="m", template=make_template(tenant, **template))
    services.mailing_save(mailing=mailing, lists=[make_list(tenant, "L", emails)], servers=[server])
    services.mailing_start(mailing=mailing)
    return mailing


def send(mailing: Mailing) -> None:
    for _ in range(20):
        if dispatch.run_mailing(mailing_id=mailing.pk, now=timezone.now()) != "more":
            return


def bounce_mailbox(tenant, **fields) -> BounceMailbox:
    values = {"host": "imap.acme.test", "login": BOUNCES, "email": BOUNCES, **fields}
    return BounceMailbox.objects.create(tenant=tenant, **values)


# ---------- the token ----------


def test_a_token_names_its_letter_and_nothing_else_passes_for_one(settings):
    public_id = uuid.uuid4()
    token = tokens.make(public_id)
    assert len(token) == 34 and token.isalnum() and token == token.lower()
    assert tokens.read(token) == public_id
    assert tokens.read(token.upper()) == public_id  # a mail system that upper-cases it
    assert tokens.read(token[:-1] + ("a" if token[-1] != "a" else "b")) is None  # the MAC
    assert tokens.read(tokens.make(uuid.uuid4())[:26] + token[26:]) is None  # another letter's id
    assert tokens.read("a" * 34) is None
    settings.SECRET_KEY = "another-installation-" * 3
    assert tokens.read(token) is None


def test_the_tagged_address_keeps_to_the_local_part_limit():
    public_id = uuid.uuid4()
    assert tokens.address(BOUNCES, public_id) == f"bounces+{tokens.make(public_id)}@acme.test"
    long_local = "b" * 30 + "@acme.test"
    assert tokens.address(long_local, public_id) == long_local  # 30 + 1 + 34 > 64


# ---------- where reports go ----------


def test_report_routes(tenant_a):
    own = make_server(tenant_a, name="Own", sender_email="mx@acme.test", allow_sender_substitution=True)
    yandex = make_server(tenant_a, name="Yandex", sender_email="box@yandex.test")
    mailru = make_server(tenant_a, name="Mail.ru", sender_email="box@mail.test")
    BounceMailbox.objects.create(tenant=tenant_a, server=mailru, host="imap.mail.test", login="box@mail.test")

    routes = report_routes(tenant_a.pk, [own, yandex, mailru])
    assert (routes[own.pk].address, routes[own.pk].read, routes[own.pk].tagged) == ("mx@acme.test", False, False)
    assert (routes[yandex.pk].address, routes[yandex.pk].read) == ("box@yandex.test", False)
    assert (routes[mailru.pk].address, routes[mailru.pk].read, routes[mailru.pk].tagged) == (
        "box@mail.test",
        True,
        False,
    )

    mailbox = bounce_mailbox(tenant_a)
    routes = report_routes(tenant_a.pk, [own, yandex])
    assert (routes[own.pk].address, routes[own.pk].to_bounce_mailbox, routes[own.pk].tagged) == (BOUNCES, True, True)
    assert routes[yandex.pk].read is False  # its reports still go to its own mailbox

    BounceMailbox.objects.filter(pk=mailbox.pk).update(email="box@yandex.test", login="box@yandex.test")
    assert report_routes(tenant_a.pk, [yandex])[yandex.pk].read  # the bounce mailbox is its mailbox
    BounceMailbox.objects.filter(pk=mailbox.pk).update(enabled=False)
    assert report_routes(tenant_a.pk, [own])[own.pk].address == "mx@acme.test"


# ---------- what goes out ----------


def test_a_substituting_server_returns_reports_to_the_bounce_mailbox_tagged_per_letter(tenant_a):
    bounce_mailbox(tenant_a)
    with smtp_server() as (controller, sink):
        server = make_server(
            tenant_a, port=controller.port, sender_email="mx@acme.test", allow_sender_substitution=True
        )
        mailing = start(tenant_a, server, ["a@x.test", "b@x.test"], sender_email="news@acme.test")
        send(mailing)
    letters = {letter.email: letter for letter in Letter.objects.filter(mailing=mailing)}
    assert len(sink.received) == 2
    for received in sink.received:
        letter = letters[received.rcpt_tos[0]]
        assert received.mail_from == f"bounces+{tokens.make(letter.public_id)}@acme.test"
        assert received.message["From"] == "news@acme.test"
        assert received.message["Reply-To"] == BOUNCES  # no reply-to in the template: the bounce mailbox


def test_without_plus_addressing_the_plain_bounce_address_and_the_templates_reply_to_wins(tenant_a):
    bounce_mailbox(tenant_a, plus_addressing=False)
    with smtp_server() as (controller, sink):
        server = make_server(
            tenant_a, port=controller.port, sender_email="mx@acme.test", allow_sender_substitution=True
        )
        send(start(tenant_a, server, ["a@x.test"], reply_to="sales@acme.test"))
    [received] = sink.received
    assert received.mail_from == BOUNCES
    assert received.message["Reply-To"] == "sales@acme.test"


def test_a_server_without_substitution_sends_from_its_own_mailbox(tenant_a):
    bounce_mailbox(tenant_a)
    with smtp_server() as (controller, sink):
        server = make_server(tenant_a, port=controller.port, sender_email="box@yandex.test")
        BounceMailbox.objects.create(tenant=tenant_a, server=server, host="imap.yandex.test", login="box@yandex.test")
        send(start(tenant_a, server, ["a@x.test"], sender_email="news@acme.test"))
    [received] = sink.received
    assert received.mail_from == "box@yandex.test"  # never tagged: the provider wants its login there
    assert received.message["From"] == "box@yandex.test"
    assert received.message["Reply-To"] == BOUNCES


def test_without_a_bounce_mailbox_a_substituting_server_tags_its_own_mailbox_when_it_is_read(tenant_a):
    with smtp_server() as (controller, sink):
        server = make_server(
            tenant_a, port=controller.port, sender_email="mx@acme.test", allow_sender_substitution=True
        )
        BounceMailbox.objects.create(tenant=tenant_a, server=server, host="imap.acme.test", login="mx@acme.test")
        mailing = start(tenant_a, server, ["a@x.test"])
        send(mailing)
    [received] = sink.received
    letter = Letter.objects.get(mailing=mailing)
    assert received.mail_from == f"mx+{tokens.make(letter.public_id)}@acme.test"
    assert "Reply-To" not in received.message


# ---------- the whole way round ----------


class BouncingSink(SinkHandler):
    """A receiving MTA that accepts every letter and then finds the mailbox
    gone: it writes a bare DSN to the envelope sender, quoting nothing of
    the letter (RET=HDRS refused, or a minimal MTA), and its local delivery
    drops it into the Dovecot Maildir with the Delivered-To it was sent to."""

    def __init__(self, dovecot) -> None:
        super().__init__()
        self.dovecot = dovecot

    async def handle_DATA(self, server, session, envelope):
        reply = await super().handle_DATA(server, session, envelope)
        for recipient in envelope.rcpt_tos:
            self.dovecot.deliver(dsn(envelope.mail_from, recipient))
        return reply


def dsn(return_path: str, recipient: str) -> bytes:
    date = format_datetime(datetime.now(UTC))
    return (
        f"Return-Path: <>\r\nDelivered-To: {return_path}\r\nDate: {date}\r\n"
        "From: MAILER-DAEMON@mx.x.test (Mail Delivery System)\r\n"
        f"To: {return_path}\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@mx.x.test>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="dsn"\r\n\r\n'
        f"--dsn\r\nContent-Type: text/plain\r\n\r\n<{recipient}>: mailbox was removed\r\n\r\n"
        "--dsn\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.x.test\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        f"Diagnostic-Code: smtp; 550 5.1.1 <{recipient}>: mailbox was removed\r\n\r\n--dsn--\r\n"
    ).encode()


@pytest.mark.parametrize("protocol", [BounceMailbox.Protocol.IMAP, BounceMailbox.Protocol.POP3])
def test_a_bounce_that_quotes_nothing_is_tied_to_its_letter_by_the_envelope_token(tenant_a, dovecot_mailbox, protocol):
    port = dovecot_mailbox.imap_port if protocol == BounceMailbox.Protocol.IMAP else dovecot_mailbox.pop3_port
    # bounces@postroute.test, on the real Dovecot
    mailbox = make_mailbox(tenant_a, dovecot_mailbox, protocol=protocol, port=port)
    handler = BouncingSink(dovecot_mailbox)
    with smtp_server(handler=handler) as (controller, _sink):
        server = make_server(
            tenant_a, port=controller.port, sender_email="mx@acme.test", allow_sender_substitution=True
        )
        mailing = start(tenant_a, server, ["gone@x.test", "gone2@x.test"])
        send(mailing)
    assert {r.mail_from.partition("+")[0] for r in handler.received} == {"bounces"}

    result = readers.read_mailbox(mailbox_id=mailbox.pk)

    assert (result.status, result.reports) == ("done", 2), result.error
    for letter in Letter.objects.filter(mailing=mailing):
        assert letter.status == Letter.Status.BOUNCED
        [report] = BounceReport.objects.filter(letter=letter)
        assert (report.matched_by, report.kind, report.status) == ("token", "hard", "5.1.1")
        assert Suppression.objects.filter(tenant=tenant_a, email=letter.email).exists()
