"""Shared by the bounce tests: letters that were sent, a bounce mailbox on
the test Dovecot, and the corpus in tests/fixtures/bounces/ filled in for
a letter."""

import imaplib
import uuid
from datetime import datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

from django.utils import timezone

from accounts.models import Tenant
from mailing import mailings as services
from mailing.bounces import tokens
from mailing.models import Letter, Mailing
from servers.models import BounceMailbox, Security
from tests.dovecot import DovecotServer
from tests.servers.factories import make_server

from .builders import make_list, make_template

CORPUS = Path(__file__).resolve().parent.parent / "fixtures" / "bounces"
SENDER = "box@acme.test"


def sent_letters(
    tenant: Tenant, emails: list[str], *, sent_at: datetime | None = None, name: str = "m"
) -> list[Letter]:
    """A started mailing whose letters went out (status sent) at `sent_at`."""
    contact_list = make_list(tenant, f"{name} list", emails)
    mailing = Mailing(tenant=tenant, name=name, template=make_template(tenant, name=f"{name} template"))
    services.mailing_save(mailing=mailing, lists=[contact_list], servers=[server_for(tenant)])
    services.mailing_start(mailing=mailing)
    letters = Letter.objects.filter(mailing=mailing)
    letters.update(status=Letter.Status.SENT, sent_at=sent_at or timezone.now() - timedelta(minutes=10))
    return list(letters.order_by("email"))


def server_for(tenant: Tenant):
    return tenant.smtp_servers.first() or make_server(tenant, sender_email=SENDER)


def render(name: str, letter: Letter | None = None, *, recipient: str = "", date: datetime | None = None) -> bytes:
    """A corpus file for `letter` (or just an address), with CRLF line ends
    as a mail server stores it."""
    public_id = letter.public_id if letter else uuid.uuid4()
    address = letter.email if letter else recipient
    values = {
        "{message_id}": f"<{public_id}@acme.test>",
        "{letter_id}": str(public_id),
        "{return_path}": tokens.address(SENDER, public_id),
        "{recipient}": address,
        "{recipient_domain}": address.rpartition("@")[2],
        "{sender}": SENDER,
        "{subject}": "Hello there",
        "{date}": format_datetime(date or timezone.now()),
        "{nonce}": uuid.uuid4().hex,
    }
    text = (CORPUS / name).read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace(key, value)
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


def make_mailbox(tenant: Tenant, dovecot: DovecotServer, **fields: object) -> BounceMailbox:
    """Plain IMAP on the test server unless `fields` say otherwise."""
    password = str(fields.pop("password", dovecot.password))
    values = {
        "host": "127.0.0.1",
        "port": dovecot.imap_port,
        "security": Security.NONE,
        "login": dovecot.user,
        "email": dovecot.user,
        **fields,
    }
    mailbox = BounceMailbox(tenant=tenant, **values)
    mailbox.set_password(password)
    mailbox.save()
    return mailbox


def append(dovecot: DovecotServer, raw: bytes, folder: str = "INBOX", flags: str = "") -> None:
    """Put a message into the mailbox over IMAP, unseen unless `flags` say so."""
    client = dovecot.imap_client()
    try:
        typ, data = client.append(folder, flags or None, None, raw)
        assert typ == "OK", data
    finally:
        client.logout()


def folder_messages(dovecot: DovecotServer, folder: str = "INBOX") -> list[tuple[str, str]]:
    """(subject, flags) of every message in `folder`, read without changing them."""
    client = dovecot.imap_client()
    try:
        typ, _ = client.select(f'"{folder}"', readonly=True)
        if typ != "OK":
            return []
        _typ, data = client.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        return [_subject_and_flags(item) for item in data if isinstance(item, tuple)]
    finally:
        client.logout()


def _subject_and_flags(item: tuple[bytes, bytes]) -> tuple[str, str]:
    meta, header = item
    subject = header.decode(errors="replace").partition(":")[2].strip()
    flags = imaplib.ParseFlags(meta) if b"FLAGS" in meta else ()
    return subject, " ".join(f.decode() for f in flags)
