"""Connection tests: talk to a tenant's SMTP server or bounce mailbox step by
step, timing each step, never longer than SERVER_PROBE_TIMEOUT in all."""

import smtplib
import ssl
import time
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from email.utils import formatdate, make_msgid

from django.conf import settings
from django.utils.translation import gettext as _

from . import imap_folders, netguard
from .connections import PinnedSMTPClient, checked_address, open_smtp, tls_context
from .errors import Diagnosis, diagnose, server_words
from .headers import fold, mailbox, safe, text_header, text_part_headers, wire_body
from .models import BounceMailbox, Security, SmtpServer
from .selectors import report_routes, tenant_mailbox
from .wire import (
    Role,
    SenderUnsendable,
    ascii_domain,
    check_sender_side,
    idna_refusal,
    needs_smtputf8,
    utf8_options,
    wire_address,
)


@dataclass
class Step:
    name: str
    ok: bool
    ms: int
    detail: str = ""


@dataclass
class ProbeResult:
    steps: list[Step] = field(default_factory=list)
    diagnosis: Diagnosis | None = None

    @property
    def ok(self) -> bool:
        return self.diagnosis is None

    def steps_json(self) -> list[dict]:
        return steps_json(self.steps)


def steps_json(steps: list[Step]) -> list[dict]:
    """The steps as stored (jsonb): a detail quotes the server, and jsonb
    holds no NUL."""
    return [{**asdict(s), "detail": server_words(s.detail)} for s in steps]


class _Run:
    def __init__(self, timeout: float, on_step: Callable[[list[Step]], None] | None) -> None:
        self.deadline = time.monotonic() + timeout
        self.timeout = timeout
        self.result = ProbeResult()
        self.on_step = on_step or (lambda steps: None)

    def remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the test ran out of time")
        return left

    @contextmanager
    def step(self, name: str) -> Iterator[Step]:
        step = Step(name, ok=False, ms=0)
        started = time.monotonic()
        try:
            yield step
            step.ok = True
        except BaseException as exc:
            messages = getattr(exc, "messages", None)  # ValidationError
            step.detail = step.detail or (" ".join(messages) if messages else str(exc)) or type(exc).__name__
            raise
        finally:
            step.ms = round((time.monotonic() - started) * 1000)
            self.result.steps.append(step)
            self.on_step(self.result.steps)


def smtp_probe(
    server: SmtpServer,
    *,
    send_to: str = "",
    timeout: float | None = None,
    on_step: Callable[[list[Step]], None] | None = None,
) -> ProbeResult:
    """The dispatcher's own way in (open_smtp), step by step, then the
    sender (or a test letter) and a clean goodbye."""
    run = _Run(timeout or settings.SERVER_PROBE_TIMEOUT, on_step)
    client = None
    try:
        client = open_smtp(server, steps=run)
        _smtp_checks(run, client, server, send_to)
    except Exception as exc:
        host, port = server.connect_host_port()
        run.result.diagnosis = diagnose(exc, host=host, port=port, timeout=run.timeout)
    finally:
        if client is not None:
            with suppress(Exception):
                client.close()
    return run.result


def _smtp_checks(run: _Run, client: PinnedSMTPClient, server: SmtpServer, send_to: str) -> None:
    sides = sender_side(server)
    for address, role in sides:
        if reason := idna_refusal(address):  # through any server: before the SMTPUTF8 step
            raise SenderUnsendable(address, role, reason)
    if sides := [side for side in sides if needs_smtputf8(side[0])]:
        # Up front, as the dispatcher judges it: a mailing's every letter
        # would wait on this server, not just the test letter's.
        with run.step(_("International sender addresses (SMTPUTF8)")) as step:
            check_sender_side(client, sides)
            step.detail = _("Offered by the server")
    if send_to:
        with run.step(_("Send a test letter to %(send_to)s") % {"send_to": send_to}) as step:
            client.deadline_in(run.remaining())
            # Sent as the dispatcher sends (servers.wire): IDNA domains, and
            # SMTPUTF8 only where a mailbox is not ASCII.
            sender, recipient = wire_address(server.sender_email), wire_address(send_to)
            options = utf8_options(client, sender.utf8 or recipient.utf8)
            client.sendmail(sender.text, [recipient.text], test_letter(server, send_to), mail_options=options)
            step.detail = _("Accepted by the server")
    else:
        with run.step(_("Sender accepted (MAIL FROM)")) as step:
            client.deadline_in(run.remaining())
            sender = wire_address(server.sender_email)
            code, reply = client.mail(sender.text, utf8_options(client, sender.utf8))
            if code >= 400:
                raise smtplib.SMTPSenderRefused(code, reply, server.sender_email)
            step.detail = f"{code} {reply.decode(errors='replace')}"[:200]
            client.rset()
    with run.step(_("NOOP and QUIT")):
        client.deadline_in(run.remaining())
        client.noop()
        client.quit()


def sender_side(server: SmtpServer) -> list[tuple[str, Role]]:
    """The server's own addresses every letter of its tenant's mailings
    carries, with their roles: its sender address, the envelope sender
    (the bounce mailbox where the server sends reports there) and the
    Reply-To the bounce mailbox gives where a template names none. A
    template's own sender or Reply-To is the mailing's (the dispatcher
    checks those)."""
    sides = [(server.sender_email, Role.SENDER)]
    if server.tenant_id is None:
        return sides
    mailboxes = list(BounceMailbox.objects.filter(tenant_id=server.tenant_id))
    route = report_routes(server.tenant_id, [server], mailboxes)[server.pk]
    if route.to_bounce_mailbox:
        sides.append((route.address, Role.BOUNCE))
    if (own := tenant_mailbox(mailboxes)) is not None and not route.to_bounce_mailbox:
        sides.append((own.address, Role.REPLY_TO))
    return sides


def test_letter(server: SmtpServer, to: str) -> bytes:
    """The test letter as it goes over SMTP, its headers written as the
    dispatcher writes a mailing's (servers.headers): a long sender name or
    Subject that is not ASCII arrives whole, every space kept."""
    sender = ascii_domain(server.sender_email)
    domain = sender.rpartition("@")[2]
    # Composed (NFC), as the dispatcher writes them. The server's fields
    # were checked for controls (rules) before the connection; safe() is
    # the same last guard as the dispatcher's.
    name = unicodedata.normalize("NFC", safe(server.sender_name or _("Postroute test")))
    subject = unicodedata.normalize("NFC", _("Postroute: test letter through %(name)s") % {"name": server.name})
    headers = [
        ("From", mailbox(name, safe(sender))),
        ("To", safe(ascii_domain(to))),
        ("Subject", text_header(subject)),
        ("Date", formatdate()),
        ("Message-ID", make_msgid(domain=domain or None)),
        ("MIME-Version", "1.0"),
        *text_part_headers("plain"),
    ]
    body = _(
        "This is a test letter sent by Postroute through the server %(name)s "
        "(%(value)s). If you can read it, the server works."
    ) % {"name": server.name, "value": server.host or "internal"}
    return b"".join(fold(header, value) for header, value in headers) + b"\r\n" + wire_body(body)


def imap_probe(
    mailbox: BounceMailbox, *, timeout: float | None = None, on_step: Callable[[list[Step]], None] | None = None
) -> ProbeResult:
    classes = (netguard.PinnedIMAP4, netguard.PinnedIMAP4_SSL)
    return _mailbox_probe(mailbox, classes, _imap_session, timeout=timeout, on_step=on_step)


def _mailbox_probe(mailbox: BounceMailbox, classes: tuple, session, *, timeout, on_step) -> ProbeResult:
    """Settings check, connect (plain or implicit TLS), then the protocol's
    own steps; the client is closed whatever happens."""
    run = _Run(timeout or settings.SERVER_PROBE_TIMEOUT, on_step)
    client = None
    try:
        host, addresses = checked_address(run, mailbox, mailbox.host, mailbox.port)
        context = tls_context(mailbox.verify_tls)
        implicit = mailbox.security == Security.SSL
        with run.step(_("Connect with SSL/TLS") if implicit else _("Connect")) as step:
            cls = classes[1] if implicit else classes[0]
            left = run.remaining()
            client = cls(host, mailbox.port, addresses=addresses, timeout=left, ssl_context=context, deadline=left)
            welcome = client.welcome if hasattr(client, "welcome") else client.getwelcome()
            step.detail = welcome.decode(errors="replace")[:200]
        session(run, client, mailbox, context)
    except Exception as exc:
        run.result.diagnosis = diagnose(exc, host=mailbox.host, port=mailbox.port, timeout=run.timeout)
    finally:
        if client is not None:
            with suppress(Exception):
                client.shutdown() if hasattr(client, "shutdown") else client.close()
    return run.result


def _imap_session(run: _Run, client, mailbox: BounceMailbox, context: ssl.SSLContext) -> None:
    if mailbox.security == Security.STARTTLS:
        with run.step("STARTTLS"):
            client.deadline_in(run.remaining())
            client.starttls(ssl_context=context)
    with run.step(_("Log in")) as step:
        client.deadline_in(run.remaining())
        typ, data = client.login(mailbox.login, mailbox.get_password())
        step.detail = f"{typ} {data[0].decode(errors='replace')}"[:200]
    with run.step(_("Open the folder %(folder)s") % {"folder": mailbox.folder}) as step:
        client.deadline_in(run.remaining())
        typ, data = client.select(imap_folders.quoted(mailbox.folder), readonly=True)
        if typ != "OK":
            raise client.error(f"cannot open the folder {mailbox.folder}: {data[0].decode(errors='replace')}")
        if data[0] is not None:  # a server may leave out the count (EXISTS) and still open the folder
            step.detail = f"{int(data[0])} message(s)"
    with run.step(_("Log out")):
        client.deadline_in(run.remaining())
        client.logout()


def pop3_probe(
    mailbox: BounceMailbox, *, timeout: float | None = None, on_step: Callable[[list[Step]], None] | None = None
) -> ProbeResult:
    classes = (netguard.PinnedPOP3, netguard.PinnedPOP3_SSL)
    return _mailbox_probe(mailbox, classes, _pop3_session, timeout=timeout, on_step=on_step)


def _pop3_session(run: _Run, client, mailbox: BounceMailbox, context: ssl.SSLContext) -> None:
    if mailbox.security == Security.STARTTLS:
        with run.step("STLS"):
            client.deadline_in(run.remaining())
            client.stls(context)
    with run.step(_("Log in")) as step:
        client.deadline_in(run.remaining())
        client.user(mailbox.login)
        step.detail = client.pass_(mailbox.get_password()).decode(errors="replace")[:200]
    with run.step(_("Count the messages")) as step:
        client.deadline_in(run.remaining())
        count, size = client.stat()
        step.detail = f"{count} message(s), {size} bytes"
    with run.step(_("Log out")):
        client.deadline_in(run.remaining())
        client.quit()


def mailbox_probe(mailbox: BounceMailbox, **kwargs: object) -> ProbeResult:
    probe = pop3_probe if mailbox.protocol == BounceMailbox.Protocol.POP3 else imap_probe
    return probe(mailbox, **kwargs)
