"""The dispatcher: sends an active mailing's letters through the first
allowed server until its limit is spent, then the next, without pauses;
when every server is spent the mailing waits and resumes by itself.

One call of run_mailing() sends one batch through one server:

1. the server is checked again (enabled, healthy, not resting, the SaaS
   rules and the SSRF check right before connecting);
2. a connection slot is taken (max_connections per server, across workers);
3. room is reserved in the limit accounting (mailing.limits);
4. letters are claimed with a token (a conditional UPDATE, so two workers
   never take the same letter); a claim has a lease, after which a dead
   worker's letters go back to the queue;
5. one SMTP connection carries the whole batch; each result is recorded,
   and room reserved for letters never handed over is given back.

The caller (a Celery task) runs it again at once while it returns "more"."""

import logging
import re
import smtplib
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Case, Q, Value, When
from django.utils import timezone

from accounts.models import Tenant
from servers import rules
from servers.connections import open_smtp
from servers.errors import diagnose, is_blacklisting
from servers.models import Health, SmtpServer

from . import limits
from .mailings import transition
from .messages import POLICY, build_message
from .models import DispatchChain, Letter, Mailing
from .recorder import Recorder, RecordingFailed

log = logging.getLogger(__name__)
L = Letter.Status
M = Mailing.Status
PENDING = (L.QUEUED, L.DEFERRED)
WIRE = POLICY.clone(linesep="\r\n")  # what goes over SMTP


@dataclass
class Outcome:
    handed: int = 0  # letters that reached DATA (they count against the limit)
    tried: int = 0  # letters whose exchange began: sent, refused or given back
    busy: bool = False  # every connection slot of the server was taken


@dataclass
class Progress:
    """How far one letter got: "mail" (nothing of it reached the server
    yet), "rcpt", or "data" (handed over: it counts against the limit)."""

    stage: str = "mail"


def run_mailing(*, mailing_id: int, now: datetime | None = None) -> str:
    """One batch. Returns "more", "waiting", "done" or "idle"."""
    mailing = Mailing.objects.select_related("tenant").filter(pk=mailing_id).first()
    if mailing is None or not mailing.tenant.is_active:
        return "idle"
    now = now or timezone.now()
    if mailing.status == M.WAITING:
        if mailing.resume_at and mailing.resume_at > now:
            # Another chain may have decided to wait while this one held the
            # room for the last letters: the chain that sent them finishes.
            if not Letter.objects.filter(mailing=mailing, status__in=(*PENDING, L.SENDING)).exists():
                _move(mailing, "complete", finished_at=now)
                return "done"
            return "waiting"
        if not _move(mailing, "wake", resume_at=None):
            return "idle"
    if mailing.status != M.ACTIVE:
        return "idle"
    busy = False
    for server in usable_servers(mailing, now):
        outcome = send_batch(mailing, server, now=now)
        if outcome.tried:
            return "more"
        # A server whose slots are all taken only stops us from waiting if
        # it still has room: then its workers are sending the rest.
        busy = busy or (outcome.busy and limits.next_room_at(server, mailing.tenant, now) is None)
    if busy:
        return "idle"
    return _settle(mailing, now)


def usable_servers(mailing: Mailing, now: datetime) -> list[SmtpServer]:
    servers = [link.server for link in mailing.server_links.select_related("server").order_by("position")]
    return [s for s in servers if s.is_usable and not (s.backoff_until and s.backoff_until > now)]


def send_batch(mailing: Mailing, server: SmtpServer, *, now: datetime) -> Outcome:
    with connection_slot(server) as slot:
        if not slot:
            return Outcome(busy=True)
        reservation = limits.reserve(server=server, tenant=mailing.tenant, wanted=settings.DISPATCH_BATCH, now=now)
        if not reservation.granted:
            return Outcome()
        letters = claim(mailing, server, reservation.granted, now=now)
        outcome = Outcome()
        try:
            if letters:
                outcome = _deliver(mailing, server, letters, now=now)
        finally:
            limits.release(reservation=reservation, unused=reservation.granted - outcome.handed)
        return outcome


def claim(mailing: Mailing, server: SmtpServer, count: int, *, now: datetime) -> list[Letter]:
    """Queued letters first, then deferred ones that are due, oldest first:
    a letter that keeps failing cannot hold up the rest of the mailing. One
    query per status, each reading the (mailing, status, id) index in
    order, so a claim reads about `count` rows however long the mailing."""
    token = uuid.uuid4()
    due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    letters = Letter.objects.filter(mailing=mailing).filter(due).order_by("pk").select_for_update(skip_locked=True)
    with transaction.atomic():
        ids: list[int] = []
        for status in (L.QUEUED, L.DEFERRED):
            if len(ids) < count:
                ids += letters.filter(status=status).values_list("pk", flat=True)[: count - len(ids)]
        # The status condition makes the claim safe where row locks are not
        # available (SQLite in development): only one token wins a row.
        Letter.objects.filter(pk__in=ids, status__in=PENDING).update(
            status=L.SENDING, claim_token=token, lease_until=now + LEASE, server=server
        )
    return list(Letter.objects.filter(pk__in=ids, claim_token=token).order_by("pk"))


LEASE = timedelta(minutes=10)


def _deliver(mailing: Mailing, server: SmtpServer, letters: list[Letter], *, now: datetime) -> Outcome:
    try:
        client = open_smtp(server, timeout=settings.DISPATCH_SMTP_TIMEOUT)
    except Exception as exc:
        _server_failed(server, exc, now=now)
        _requeue(letters)
        return Outcome()
    # The body and the final dot go out in two writes (see _exchange): with
    # Nagle's algorithm the dot would wait for the server's delayed ACK.
    client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    outcome = Outcome()
    recorder = Recorder(threaded=settings.DISPATCH_RECORD_THREAD)
    check_at = time.monotonic() + settings.DISPATCH_TICK / 2
    try:
        for index, letter in enumerate(letters):
            if time.monotonic() >= check_at:
                # A long batch (a slow server) still stops within a tick
                # when the mailing is paused or the server disabled.
                if not _may_go_on(mailing, server):
                    _requeue(letters[index:])
                    break
                check_at = time.monotonic() + settings.DISPATCH_TICK / 2
            outcome.tried += 1
            progress = Progress()
            go_on = _send_one(client, mailing, server, letter, recorder, progress, now=now)
            outcome.handed += progress.stage == "data"
            if not go_on:
                _requeue(letters[index + 1 :])
                break
        else:
            _reset_backoff(server)
    finally:
        recorder.close()
        try:
            client.quit()
        except Exception:
            client.close()
    return outcome


def _may_go_on(mailing: Mailing, server: SmtpServer) -> bool:
    """The mailing is still active, its tenant not suspended, and the server
    enabled, healthy and within the rules."""
    # Waiting (another chain found the limits spent) does not stop a batch
    # whose room is already reserved; pausing and cancelling do.
    active = Mailing.objects.filter(
        pk=mailing.pk, status__in=(M.ACTIVE, M.WAITING), tenant__status=Tenant.Status.ACTIVE
    )
    fresh = SmtpServer.objects.filter(pk=server.pk).first()
    if not active.exists() or fresh is None or not fresh.is_usable:
        return False
    try:
        rules.assert_connectable(fresh)
    except ValidationError:
        return False
    return True


def _exchange(
    client: smtplib.SMTP, sender: str, recipient: str, data: bytes, recorder: Recorder, progress: Progress
) -> None:
    """MAIL, RCPT, DATA for one letter, as smtplib.sendmail does, except that
    the previous letter's result must be committed before this one is
    accepted: the commit overlaps the MAIL, RCPT and DATA round trips and
    the sending of the body. A server that offers PIPELINING (RFC 2920; the
    big providers do) gets MAIL, RCPT and DATA in one write: one round trip
    instead of three."""
    commands = [f"mail FROM:{smtplib.quoteaddr(sender)}", f"rcpt TO:{smtplib.quoteaddr(recipient)}", "data"]
    pipelined = client.does_esmtp and client.has_extn("pipelining")
    if pipelined:
        client.send("".join(f"{c}\r\n" for c in commands))
        read = client.getreply
    else:

        def read() -> tuple[int, bytes]:
            client.putcmd(commands.pop(0))
            return client.getreply()

    code, reply = read()
    if code != 250:
        _rset(client, pending=2 if pipelined else 0)
        raise smtplib.SMTPSenderRefused(code, reply, sender)
    progress.stage = "rcpt"
    code, reply = read()
    if code not in (250, 251):
        _rset(client, pending=1 if pipelined else 0)
        raise smtplib.SMTPRecipientsRefused({recipient: (code, reply)})
    progress.stage = "data"
    code, reply = read()
    if code != 354:
        _rset(client)
        raise smtplib.SMTPDataError(code, reply)
    # The body as smtplib.data() sends it (leading dots doubled; the message
    # is built with CRLF line ends), but the server accepts the letter only
    # at the final dot: the previous result is committed before that.
    body = LEADING_DOT.sub(b"..", data)
    client.send(body if body.endswith(b"\r\n") else body + b"\r\n")
    try:
        recorder.wait_for_previous()
    except RecordingFailed:
        client.close()  # without the final dot the server drops this letter
        raise
    client.send(b".\r\n")
    code, reply = client.getreply()
    if code != 250:
        _rset(client)
        raise smtplib.SMTPDataError(code, reply)


def _rset(client: smtplib.SMTP, *, pending: int = 0) -> None:
    """Reset after a refusal. `pending` replies (to pipelined commands sent
    after the refused one) are read first, and a DATA the server took anyway
    gets an empty message. A server that said 421 has already hung up: its
    reply, not the hang-up, is what the letter keeps."""
    with suppress(smtplib.SMTPServerDisconnected, OSError):
        for index in range(pending):
            code, _ = client.getreply()
            if index == pending - 1 and code == 354:
                client.send(b".\r\n")
                client.getreply()
        client.rset()


LEADING_DOT = re.compile(rb"(?m)^\.")


def _send_one(
    client: smtplib.SMTP,
    mailing: Mailing,
    server: SmtpServer,
    letter: Letter,
    recorder: Recorder,
    progress: Progress,
    *,
    now: datetime,
) -> bool:
    """Send and record one letter; False when the server must stop here.
    DOMAIN.md §7: a refusal of the server as a whole (login, blacklisting,
    a refused sender) takes it out and gives the letter to the next server;
    a temporary one (421, a 4xx to MAIL FROM, a lost connection) makes the
    server rest; a refusal of one recipient fails or defers that letter."""
    data = build_message(letter, server, mailing).as_bytes(policy=WIRE)
    try:
        _exchange(client, server.sender_email, letter.email, data, recorder, progress)
    except smtplib.SMTPRecipientsRefused as exc:
        code, reply = next(iter(exc.recipients.values()))
        return _refused(server, letter, smtplib.SMTPResponseException(code, reply), recorder, now=now)
    except smtplib.SMTPResponseException as exc:
        return _refused(server, letter, exc, recorder, now=now)
    except (smtplib.SMTPServerDisconnected, OSError) as exc:
        if progress.stage == "mail":
            _requeue([letter])  # the connection was gone before this letter began
        else:
            # The letter may or may not have been accepted; retry it later
            # rather than lose it.
            recorder.record(partial(_defer, letter, f"connection lost: {exc}", now=now))
        _server_failed(server, exc, now=now)
        return False
    recorder.record(partial(_record_sent, letter, now=now))
    return True


def _refused(
    server: SmtpServer, letter: Letter, exc: smtplib.SMTPResponseException, recorder: Recorder, *, now: datetime
) -> bool:
    code, reply = exc.smtp_code, _text(exc.smtp_code, exc.smtp_error)
    at_sender = isinstance(exc, smtplib.SMTPSenderRefused)
    at_recipient = not at_sender and not isinstance(exc, smtplib.SMTPDataError)
    if (at_sender and code >= 500) or is_blacklisting(code, reply, at_recipient=at_recipient):
        # Blacklisted, or our sender refused outright: no letter can go
        # through this server; this one tries the next server.
        _server_failed(server, exc, now=now, disable=True)
        _requeue([letter])
        return False
    if code == 421:  # the server closes the connection: it rests, the letter waits
        recorder.record(partial(_defer, letter, reply, now=now))
        _server_failed(server, exc, now=now)
        return False
    if at_sender:  # a 4xx to MAIL FROM is the server's state (a rate limit), not the letter's
        _server_failed(server, exc, now=now)
        _requeue([letter])
        return False
    recorder.record(partial(_record_refusal, letter, code, reply, now=now))
    return True


def _text(code: int, reply: bytes | str) -> str:
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
    return f"{code} {text}".strip()


CLAIM_FIELD = Letter._meta.get_field("claim_token")
RECORD_SENT = (
    "UPDATE mailing_letter SET status = %s, sent_at = %s, attempts = attempts + 1, last_reply = %s, "
    "claim_token = NULL, lease_until = NULL WHERE id = %s AND claim_token = %s"
)


def _record_sent(letter: Letter, *, now: datetime) -> None:
    """The hot path, once per letter: one prepared-shape statement rather
    than the ORM's query building (a third of the time per letter)."""
    with connection.cursor() as cursor:
        token = CLAIM_FIELD.get_db_prep_value(letter.claim_token, connection)
        cursor.execute(RECORD_SENT, [L.SENT, now, "250 accepted", letter.pk, token])


def _record_refusal(letter: Letter, code: int, reply: str, *, now: datetime) -> None:
    if code >= 500:
        Letter.objects.filter(pk=letter.pk, claim_token=letter.claim_token).update(
            status=L.FAILED, attempts=letter.attempts + 1, last_reply=reply, claim_token=None, lease_until=None
        )
    else:
        _defer(letter, reply, now=now)


def _defer(letter: Letter, reply: str, *, now: datetime) -> None:
    """Temporary failure: retry with exponential backoff, bounded; after
    the last attempt the letter fails with the last reply."""
    attempts = letter.attempts + 1
    if attempts >= settings.DISPATCH_MAX_ATTEMPTS:
        fields = {"status": L.FAILED}
    else:
        delay = min(settings.DISPATCH_RETRY_BASE * 2 ** (attempts - 1), settings.DISPATCH_RETRY_MAX)
        fields = {"status": L.DEFERRED, "next_attempt_at": now + timedelta(seconds=delay)}
    Letter.objects.filter(pk=letter.pk, claim_token=letter.claim_token).update(
        attempts=attempts, last_reply=reply, claim_token=None, lease_until=None, **fields
    )


def _requeue(letters: list[Letter]) -> None:
    """Give letters that were never handed to the server back to the queue."""
    for letter in letters:
        Letter.objects.filter(pk=letter.pk, claim_token=letter.claim_token).update(
            status=_pending_status(letter), claim_token=None, lease_until=None, server=None
        )


def _pending_status(letter: Letter) -> str:
    return L.DEFERRED if letter.attempts else L.QUEUED


def _server_failed(server: SmtpServer, exc: BaseException, *, now: datetime, disable: bool = False) -> None:
    """Authentication, blacklisting, a refused sender and broken rules take
    the server out until the tenant tests it again; connection-level
    trouble makes it rest a while."""
    diagnosis = diagnose(exc, host=server.host, port=server.port, timeout=settings.DISPATCH_SMTP_TIMEOUT)
    if disable or diagnosis.disables_server or diagnosis.category in ("rules", "host_refused"):
        SmtpServer.objects.filter(pk=server.pk).update(
            health=Health.FAILING, health_error=diagnosis.message, health_hint=diagnosis.hint, health_checked_at=now
        )
        return
    failures = server.connection_failures + 1
    rest = min(settings.DISPATCH_RETRY_BASE * 2 ** (failures - 1), settings.DISPATCH_RETRY_MAX)
    SmtpServer.objects.filter(pk=server.pk).update(
        connection_failures=failures, backoff_until=now + timedelta(seconds=rest)
    )
    log.warning("server %s rests %ss after: %s", server.pk, rest, diagnosis.message)


def _reset_backoff(server: SmtpServer) -> None:
    if server.connection_failures:
        SmtpServer.objects.filter(pk=server.pk).update(connection_failures=0, backoff_until=None)


def _settle(mailing: Mailing, now: datetime) -> str:
    """Nothing was sent: finished, waiting for limits, or others are busy."""
    letters = Letter.objects.filter(mailing=mailing)
    if not letters.filter(status__in=(*PENDING, L.SENDING)).exists():
        _move(mailing, "complete", finished_at=now)
        return "done"
    if letters.filter(status=L.SENDING).exists() and not letters.filter(status__in=PENDING).exists():
        return "idle"
    resume = resume_time(mailing, now)
    _move(mailing, "wait", resume_at=resume)
    return "waiting"


def resume_time(mailing: Mailing, now: datetime) -> datetime:
    """The earliest moment a letter may go: a server's window frees room,
    a resting server wakes, or a deferred letter becomes due."""
    candidates = []
    for link in mailing.server_links.select_related("server"):
        server = link.server
        if not server.is_usable:
            continue
        if server.backoff_until and server.backoff_until > now:
            candidates.append(server.backoff_until)
        elif (room := limits.next_room_at(server, mailing.tenant, now)) is not None:
            candidates.append(room)
    due = (
        Letter.objects.filter(mailing=mailing, status=L.DEFERRED, next_attempt_at__gt=now)
        .order_by("next_attempt_at")
        .values_list("next_attempt_at", flat=True)
        .first()
    )
    if due:
        candidates.append(due)
    usable = [c for c in candidates if c != limits.NEVER]
    return min(usable) if usable else now + timedelta(hours=1)


def _move(mailing: Mailing, action: str, **fields: object) -> bool:
    try:
        transition(mailing=mailing, action=action, **fields)
    except ValidationError:
        return False  # paused, cancelled or moved by someone else meanwhile
    return True


def requeue_expired_leases(*, now: datetime | None = None) -> int:
    """Letters a dead worker had claimed go back to the queue. Their room in
    the limits stays counted: they may have reached DATA."""
    now = now or timezone.now()
    tried = Case(When(attempts__gt=0, then=Value(L.DEFERRED)), default=Value(L.QUEUED))
    return Letter.objects.filter(status=L.SENDING, lease_until__lt=now).update(
        status=tried, claim_token=None, lease_until=None, server=None
    )


@contextmanager
def connection_slot(server: SmtpServer) -> Iterator[bool]:
    """At most server.max_connections workers talk to one server at once.
    PostgreSQL advisory locks are per database session, so a dead worker's
    slot frees itself when its connection closes."""
    if connection.vendor != "postgresql":
        yield True
        return
    key = None
    with connection.cursor() as cursor:
        for slot in range(server.max_connections):
            candidate = server.pk * 64 + slot
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [candidate])
            if cursor.fetchone()[0]:
                key = candidate
                break
    try:
        yield key is not None
    finally:
        if key is not None:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [key])


def active_mailing_ids(*, now: datetime | None = None) -> list[int]:
    """Mailings the scheduler should run now."""
    now = now or timezone.now()
    running = Mailing.objects.filter(tenant__status="active").filter(
        Q(status=M.ACTIVE) | Q(status=M.WAITING, resume_at__lte=now)
    )
    return list(running.values_list("pk", flat=True))


CHAIN_LEASE = timedelta(seconds=120)


def take_chain(mailing_id: int, *, now: datetime | None = None) -> int | None:
    """A free chain slot of the mailing (None when DISPATCH_CHAINS chains
    already run): a conditional UPDATE, or the INSERT of a new slot row;
    either way only one caller wins a slot."""
    now = now or timezone.now()
    free = Q(until__isnull=True) | Q(until__lt=now)
    for slot in range(settings.DISPATCH_CHAINS):
        chains = DispatchChain.objects.filter(mailing_id=mailing_id, slot=slot)
        if chains.filter(free).update(until=now + CHAIN_LEASE):
            return slot
        try:
            with transaction.atomic():
                DispatchChain.objects.create(mailing_id=mailing_id, slot=slot, until=now + CHAIN_LEASE)
        except IntegrityError:
            continue  # the slot exists and is busy
        return slot
    return None


def renew_chain(mailing_id: int, slot: int | None, *, more: bool, now: datetime | None = None) -> None:
    if slot is None:
        return  # a chain started by hand (benchmarks, tests) holds no slot
    until = (now or timezone.now()) + CHAIN_LEASE if more else None
    DispatchChain.objects.filter(mailing_id=mailing_id, slot=slot).update(until=until)


def free_chain_slots(mailing_id: int) -> list[int]:
    """Take the free slots, at most DISPATCH_CHAINS of them (a chain that
    ran eagerly and already ended must not be started again here)."""
    slots = []
    for _ in range(settings.DISPATCH_CHAINS):
        slot = take_chain(mailing_id)
        if slot is None or slot in slots:
            break
        slots.append(slot)
    return slots


def hold_chains(mailing_id: int, *, until: datetime) -> None:
    """Take every slot until `until` (tests that act as the worker)."""
    for slot in range(settings.DISPATCH_CHAINS):
        DispatchChain.objects.update_or_create(mailing_id=mailing_id, slot=slot, defaults={"until": until})
