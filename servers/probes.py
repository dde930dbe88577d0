"""Connection tests: talk to a tenant's SMTP server or bounce mailbox step by
step, timing each step, never longer than SERVER_PROBE_TIMEOUT in all."""

import smtplib
import ssl
import time
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from email.utils import formatdate, make_msgid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.functional import Promise
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, gettext_noop

from . import imap_folders, netguard, words
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
from .words import Words, error_words


@dataclass
class Step:
    name: str
    ok: bool
    ms: int
    detail: str = ""
    # The name and detail as servers.words where the test words them, kept
    # to word again for each reader; else the text is the server's own (a
    # reply, "EHLO") and shown as it came.
    name_words: Words | None = field(default=None, repr=False, compare=False)
    detail_words: Words | None = field(default=None, repr=False, compare=False)

    def say(self, detail: str | Words) -> None:
        self.detail_words = Words.of(detail)
        self.detail = str(self.detail_words)


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
    holds no NUL. Name and detail are worded in the active language (the
    organisation's) and kept as words under "words", worded again for each
    reader (shown_steps)."""
    return [_step_json(step) for step in steps]


def _step_json(step: Step) -> dict:
    text = server_words(step.detail)
    worded = step.detail_words is not None and not step.detail_words.verbatim
    detail = step.detail_words if worded else Words(text, verbatim=True)
    said = {"name": (step.name_words or Words.of(step.name)).to_json(), "detail": detail.to_json()}
    return {"name": step.name, "ok": step.ok, "ms": step.ms, "detail": text, "words": said}


def shown_steps(stored: list) -> list[dict]:
    """Stored steps with their name and detail in the reader's language
    (a step stored before words were kept: as it was stored)."""
    return [
        {
            **step,
            "name": words.shown(step.get("words"), "name", step.get("name", "")),
            "detail": words.shown(step.get("words"), "detail", step.get("detail", "")),
        }
        for step in stored
        if isinstance(step, dict)
    ]


def _failed_words(exc: BaseException) -> str | Words:
    """What a failed step says: an address refused with its words, a
    ValidationError's lazy message with its original, else the text."""
    said = getattr(exc, "words", None)
    if isinstance(said, Words):
        return said
    if isinstance(exc, ValidationError):
        said_all = error_words(exc)
        return said_all[0] if len(said_all) == 1 else " ".join(exc.messages)
    return str(exc) or type(exc).__name__


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
    def step(self, name: str | Promise | Words) -> Iterator[Step]:
        step = Step(str(Words.of(name)), ok=False, ms=0, name_words=Words.of(name))
        started = time.monotonic()
        try:
            yield step
            step.ok = True
        except BaseException as exc:
            if not step.detail:
                step.say(_failed_words(exc))
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
        with run.step(gettext_lazy("International sender addresses (SMTPUTF8)")) as step:
            check_sender_side(client, sides)
            step.say(Words(gettext_noop("Offered by the server")))
    if send_to:
        with run.step(Words(gettext_noop("Send a test letter to %(send_to)s"), {"send_to": send_to})) as step:
            client.deadline_in(run.remaining())
            # Sent as the dispatcher sends (servers.wire): IDNA domains, and
            # SMTPUTF8 only where a mailbox is not ASCII.
            sender, recipient = wire_address(server.sender_email), wire_address(send_to)
            options = utf8_options(client, sender.utf8 or recipient.utf8)
            client.sendmail(sender.text, [recipient.text], test_letter(server, send_to), mail_options=options)
            step.say(Words(gettext_noop("Accepted by the server")))
    else:
        with run.step(gettext_lazy("Sender accepted (MAIL FROM)")) as step:
            client.deadline_in(run.remaining())
            sender = wire_address(server.sender_email)
            code, reply = client.mail(sender.text, utf8_options(client, sender.utf8))
            if code >= 400:
                raise smtplib.SMTPSenderRefused(code, reply, server.sender_email)
            step.detail = f"{code} {reply.decode(errors='replace')}"[:200]
            client.rset()
    with run.step(gettext_lazy("NOOP and QUIT")):
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
        with run.step(gettext_lazy("Connect with SSL/TLS") if implicit else gettext_lazy("Connect")) as step:
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
    with run.step(gettext_lazy("Log in")) as step:
        client.deadline_in(run.remaining())
        typ, data = client.login(mailbox.login, mailbox.get_password())
        step.detail = f"{typ} {data[0].decode(errors='replace')}"[:200]
    with run.step(Words(gettext_noop("Open the folder %(folder)s"), {"folder": mailbox.folder})) as step:
        client.deadline_in(run.remaining())
        typ, data = client.select(imap_folders.quoted(mailbox.folder), readonly=True)
        if typ != "OK":
            raise client.error(f"cannot open the folder {mailbox.folder}: {data[0].decode(errors='replace')}")
        if data[0] is not None:  # a server may leave out the count (EXISTS) and still open the folder
            step.detail = f"{int(data[0])} message(s)"
    with run.step(gettext_lazy("Log out")):
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
    with run.step(gettext_lazy("Log in")) as step:
        client.deadline_in(run.remaining())
        client.user(mailbox.login)
        step.detail = client.pass_(mailbox.get_password()).decode(errors="replace")[:200]
    with run.step(gettext_lazy("Count the messages")) as step:
        client.deadline_in(run.remaining())
        count, size = client.stat()
        step.detail = f"{count} message(s), {size} bytes"
    with run.step(gettext_lazy("Log out")):
        client.deadline_in(run.remaining())
        client.quit()


def mailbox_probe(mailbox: BounceMailbox, **kwargs: object) -> ProbeResult:
    probe = pop3_probe if mailbox.protocol == BounceMailbox.Protocol.POP3 else imap_probe
    return probe(mailbox, **kwargs)
