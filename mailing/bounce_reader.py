"""Reading a tenant's bounce mailbox over IMAP or POP3.

One reader per mailbox at a time: a lease in the mailbox row, taken with a
conditional UPDATE and renewed after every message, so a worker that dies
simply lets it run out. A report is recorded (once: mailing.bounces keys it
by its place in the mailbox) before it is moved away, and the reading
position advances only after that, so a reader killed at any point loses
nothing and counts nothing twice.

IMAP: only UIDs above the last one read (under the same UIDVALIDITY) are
fetched, with BODY.PEEK so nothing becomes seen. Reports go to the folder
Postroute/Processed (MOVE, else COPY + \\Deleted + EXPUNGE, else a keyword);
anything else, auto-replies included, stays exactly as it was.
POP3: messages are remembered by UIDL and read with TOP (which, unlike RETR,
does not mark them read); reports are deleted only if the tenant asked.

Each phase of a read (connecting and logging in, opening the folder, the
search or the listing, each message) has BOUNCE_READER_TIMEOUT seconds in
all, however slowly the server talks (servers.deadlines)."""

import imaplib
import logging
import poplib
import re
import time
import uuid
from contextlib import suppress
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from accounts.models import Tenant
from servers import netguard
from servers.connections import Quiet, checked_address, tls_context
from servers.errors import diagnose
from servers.models import BounceMailbox, Health, Security

from . import bounce_parser, bounces
from .models import BounceReport, ReadMessage

log = logging.getLogger(__name__)

PROCESSED_FOLDER = ("Postroute", "Processed")
PROCESSED_KEYWORD = "$PostrouteProcessed"
TOP_ALL_LINES = 10_000_000
TOP_HEAD_LINES = 300  # of a message too big to read whole
MAX_FAILURES = 32767  # the column's limit; the delay stopped growing long before


def _setting(name: str, default: int) -> int:
    return getattr(settings, name, default)


def lease_seconds() -> int:
    return _setting("BOUNCE_READER_LEASE", 600)


def batch_size() -> int:
    return _setting("BOUNCE_BATCH", 200)


def max_bytes() -> int:
    return _setting("BOUNCE_MAX_MESSAGE_BYTES", 2_000_000)


def phase_timeout() -> float:
    """Seconds one phase of a read may take in all, however slowly the
    server talks: connecting and logging in, opening the folder, the search
    or the listing, each message."""
    return float(settings.BOUNCE_READER_TIMEOUT)


@dataclass
class ReadResult:
    status: str  # "done", "busy", "disabled" (or its tenant suspended), "failed"
    reports: int = 0
    left_alone: int = 0
    error: str = ""


class LeaseLost(Exception):
    """Another reader took the mailbox over (ours ran out): stop at once."""


class Lease:
    def __init__(self, mailbox_id: int, token: uuid.UUID) -> None:
        self.mailbox_id, self.token = mailbox_id, token
        self.started = time.monotonic()

    @classmethod
    def claim(cls, mailbox_id: int) -> "Lease | None":
        now, token = timezone.now(), uuid.uuid4()
        free = BounceMailbox.objects.filter(pk=mailbox_id).exclude(reader_lock_until__gt=now)
        taken = free.update(reader_lock_until=now + timedelta(seconds=lease_seconds()), reader_lock_token=token)
        return cls(mailbox_id, token) if taken else None

    def update(self, **fields: object) -> None:
        """Write reading state, renewing the lease; only while it is ours."""
        until = timezone.now() + timedelta(seconds=lease_seconds())
        mine = BounceMailbox.objects.filter(pk=self.mailbox_id, reader_lock_token=self.token)
        if not mine.update(reader_lock_until=until, **fields):
            raise LeaseLost

    def release(self) -> None:
        mine = BounceMailbox.objects.filter(pk=self.mailbox_id, reader_lock_token=self.token)
        mine.update(reader_lock_until=None, reader_lock_token=None)

    def time_left(self) -> bool:
        # Stop well before the lease runs out; the next run goes on.
        return time.monotonic() - self.started < lease_seconds() / 2


# ---------- entry point ----------


def readable() -> QuerySet[BounceMailbox]:
    """Mailboxes that may be read: enabled, of a tenant that is not
    suspended (nothing connects for a suspended tenant; a task queued just
    before the suspension finds nothing to read either)."""
    return BounceMailbox.objects.filter(enabled=True, tenant__status=Tenant.Status.ACTIVE)


def mailboxes_to_read() -> list[int]:
    now = timezone.now()
    due = readable().exclude(reader_lock_until__gt=now)
    due = due.exclude(next_check_at__gt=now + _half_interval())  # backing off
    return list(due.values_list("pk", flat=True))


def read_mailbox(*, mailbox_id: int) -> ReadResult:
    mailbox = readable().select_related("tenant").filter(pk=mailbox_id).first()
    if mailbox is None:
        return ReadResult("disabled")
    lease = Lease.claim(mailbox.pk)
    if lease is None:
        return ReadResult("busy")
    try:
        result = _read(mailbox, lease)
    except LeaseLost:
        return ReadResult("busy")
    except Exception as exc:
        log.warning("reading bounce mailbox %s failed", mailbox.pk, exc_info=True)
        result = _failed(mailbox, exc)
    else:
        _succeeded(mailbox)
    finally:
        _count_reports(mailbox)
        lease.release()
    return result


def _read(mailbox: BounceMailbox, lease: Lease) -> ReadResult:
    if mailbox.protocol == BounceMailbox.Protocol.POP3:
        return _Pop3Reader(mailbox, lease).run()
    return _ImapReader(mailbox, lease).run()


def _succeeded(mailbox: BounceMailbox) -> None:
    now = timezone.now()
    BounceMailbox.objects.filter(pk=mailbox.pk).update(
        last_checked_at=now,
        last_error="",
        health=Health.OK,
        health_error="",
        health_hint="",
        health_checked_at=now,
        failures=0,
        next_check_at=None,
    )


def _failed(mailbox: BounceMailbox, exc: Exception) -> ReadResult:
    diagnosis = diagnose(exc, host=mailbox.host, port=mailbox.port, timeout=phase_timeout())
    BounceMailbox.objects.filter(pk=mailbox.pk).update(
        last_error=diagnosis.message,
        health=Health.FAILING,
        health_error=diagnosis.message,
        health_hint=diagnosis.hint,
        health_checked_at=timezone.now(),
    )
    _back_off(mailbox)
    return ReadResult("failed", error=diagnosis.message)


def _back_off(mailbox: BounceMailbox) -> None:
    """One more failure in a row puts the next reading off. Settings saved
    while this reader ran (updated_at moved) are the tenant's fix, whose
    first try this failure must not delay."""
    failures = min(mailbox.failures + 1, MAX_FAILURES)
    BounceMailbox.objects.filter(pk=mailbox.pk, updated_at=mailbox.updated_at).update(
        failures=failures, next_check_at=timezone.now() + retry_delay(failures)
    )


def retry_delay(failures: int) -> timedelta:
    """One interval after the first failure, doubling with each one after
    it, up to BOUNCE_BACKOFF_MAX."""
    interval = settings.BOUNCE_CHECK_INTERVAL
    longest = max(settings.BOUNCE_BACKOFF_MAX, interval)
    return timedelta(seconds=min(interval * 2 ** min(failures - 1, 30), longest))


def _half_interval() -> timedelta:
    # Beat runs every interval; a reading due before half-way to the next
    # beat is taken on this one. Otherwise the time a failed reading took
    # would push each retry one whole interval later than its delay says.
    return timedelta(seconds=settings.BOUNCE_CHECK_INTERVAL / 2)


def _count_reports(mailbox: BounceMailbox) -> None:
    found = BounceReport.objects.filter(mailbox=mailbox).exclude(kind=BounceReport.Kind.AUTO_REPLY).count()
    BounceMailbox.objects.filter(pk=mailbox.pk).update(reports_found=found)


def _addresses(mailbox: BounceMailbox) -> tuple[str, list]:
    """The rules again (a record edited behind the forms' back is refused)
    and the SSRF check, before any connection."""
    return checked_address(Quiet(phase_timeout()), mailbox, mailbox.host, mailbox.port)


def _is_delivery_report(parsed: bounce_parser.ParsedReport) -> bool:
    return parsed.kind not in (None, bounce_parser.AUTO_REPLY)


# ---------- IMAP ----------


class _ImapReader:
    def __init__(self, mailbox: BounceMailbox, lease: Lease) -> None:
        self.mailbox, self.lease = mailbox, lease
        self.result = ReadResult("done")
        self.processed_folder: str | None = None  # "" once known to be impossible

    def run(self) -> ReadResult:
        self.client = self._connect()
        try:
            self._phase()
            self._select()
            self._phase()
            for uid in self._new_uids():
                if not self.lease.time_left():
                    break
                self._phase()
                self._one(uid)
            with suppress(Exception):
                self._phase()
                self.client.logout()
        finally:
            with suppress(Exception):
                self.client.shutdown()
        return self.result

    def _connect(self) -> imaplib.IMAP4:
        mailbox = self.mailbox
        host, addresses = _addresses(mailbox)
        context = tls_context(mailbox.verify_tls)
        cls = netguard.PinnedIMAP4_SSL if mailbox.security == Security.SSL else netguard.PinnedIMAP4
        seconds = phase_timeout()  # from the TCP connect to the capabilities after login
        client = cls(host, mailbox.port, addresses=addresses, timeout=seconds, ssl_context=context, deadline=seconds)
        try:
            if mailbox.security == Security.STARTTLS:
                client.starttls(ssl_context=context)
            client.login(mailbox.login, mailbox.get_password())
            # The capabilities after login (MOVE, UIDPLUS) differ from the greeting's.
            self.capabilities = set(_ok(client.capability())[0].decode().upper().split())
        except BaseException:
            with suppress(Exception):
                client.shutdown()
            raise
        return client

    def _phase(self) -> None:
        self.client.deadline_in(phase_timeout())

    def _select(self) -> None:
        mailbox = self.mailbox
        typ, data = self.client.select(_quote(mailbox.folder))
        if typ != "OK":
            raise imaplib.IMAP4.error(f"cannot open the folder {mailbox.folder}: {_text(data)}")
        _code, values = self.client.response("UIDVALIDITY")
        self.uidvalidity = int(values[-1] or 0)
        scope = f"{mailbox.host.lower()}|{mailbox.login}|{mailbox.folder}"
        if (mailbox.uidvalidity, mailbox.uid_scope) != (self.uidvalidity, scope):
            # Another folder, server or a renumbered one: UIDs start over.
            self.lease.update(uidvalidity=self.uidvalidity, uid_scope=scope, last_uid=0)
            mailbox.uidvalidity, mailbox.uid_scope, mailbox.last_uid = self.uidvalidity, scope, 0

    def _new_uids(self) -> list[int]:
        last = self.mailbox.last_uid
        data = _ok(self.client.uid("SEARCH", "UID", f"{last + 1}:*", "UNKEYWORD", PROCESSED_KEYWORD))
        # "N:*" always includes the highest UID, even below N.
        uids = sorted(int(u) for u in (data[0] or b"").split() if int(u) > last)
        return uids[: batch_size()]

    def _one(self, uid: int) -> None:
        raw = self._fetch(uid)
        parsed = bounce_parser.parse(raw) if raw is not None else None
        if parsed is None or parsed.kind is None:
            self.result.left_alone += 1
        else:
            key = f"imap:{self.mailbox.folder}:{self.uidvalidity}:{uid}"
            if bounces.report_record(mailbox=self.mailbox, source_key=key, parsed=parsed):
                self.result.reports += 1
            if _is_delivery_report(parsed):
                self._file_away(uid)
        self.lease.update(last_uid=uid)
        self.mailbox.last_uid = uid

    def _fetch(self, uid: int) -> bytes | None:
        # BODY.PEEK leaves \Seen alone; a partial fetch bounds a huge message.
        data = _ok(self.client.uid("FETCH", str(uid), f"(BODY.PEEK[]<0.{max_bytes()}>)"))
        return next((item[1] for item in data if isinstance(item, tuple)), None)

    def _file_away(self, uid: int) -> None:
        if self.processed_folder is None:
            self.processed_folder = self._ensure_processed_folder()
        if self.processed_folder and self._move(uid, self.processed_folder):
            return
        # Cannot move: mark it, so it is skipped even when UIDs start over.
        self.client.uid("STORE", str(uid), "+FLAGS.SILENT", f"({PROCESSED_KEYWORD})")

    def _move(self, uid: int, folder: str) -> bool:
        if "MOVE" in self.capabilities:
            return self.client.uid("MOVE", str(uid), _quote(folder))[0] == "OK"
        if self.client.uid("COPY", str(uid), _quote(folder))[0] != "OK":
            return False
        self.client.uid("STORE", str(uid), "+FLAGS.SILENT", r"(\Deleted)")
        if "UIDPLUS" in self.capabilities:
            self.client.uid("EXPUNGE", str(uid))  # only ours, not what a person marked
        else:
            self.client.expunge()
        return True

    def _ensure_processed_folder(self) -> str:
        separator = self._separator()
        candidates = [separator.join(PROCESSED_FOLDER), separator.join(("INBOX", *PROCESSED_FOLDER))]
        for name in candidates:
            typ, data = self.client.list('""', _quote(name))
            if typ == "OK" and data and data[0]:
                return name
            if self.client.create(_quote(name))[0] == "OK":
                self.client.subscribe(_quote(name))  # so mail programs show it
                return name
        log.warning("mailbox %s: cannot create a Processed folder; flagging instead", self.mailbox.pk)
        return ""

    def _separator(self) -> str:
        typ, data = self.client.list('""', '""')
        found = re.search(rb'\) "(.)"', data[0]) if typ == "OK" and data and data[0] else None
        return found.group(1).decode() if found else "/"


def _ok(response: tuple[str, list]) -> list:
    typ, data = response
    if typ != "OK":
        raise imaplib.IMAP4.error(_text(data))
    return data


def _text(data: list) -> str:
    first = data[0] if data else b""
    return first.decode(errors="replace") if isinstance(first, bytes) else str(first)


def _quote(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


# ---------- POP3 ----------


class _Pop3Reader:
    def __init__(self, mailbox: BounceMailbox, lease: Lease) -> None:
        self.mailbox, self.lease = mailbox, lease
        self.result = ReadResult("done")

    def run(self) -> ReadResult:
        self.client = self._connect()
        try:
            self._read_all()
            self._phase()
            self.client.quit()  # deletions take effect only here
        finally:
            with suppress(Exception):
                self.client.close()
        return self.result

    def _connect(self) -> poplib.POP3:
        mailbox = self.mailbox
        host, addresses = _addresses(mailbox)
        context = tls_context(mailbox.verify_tls)
        cls = netguard.PinnedPOP3_SSL if mailbox.security == Security.SSL else netguard.PinnedPOP3
        seconds = phase_timeout()  # from the TCP connect to PASS
        client = cls(host, mailbox.port, addresses=addresses, timeout=seconds, ssl_context=context, deadline=seconds)
        try:
            if mailbox.security == Security.STARTTLS:
                client.stls(context)
            client.user(mailbox.login)
            client.pass_(mailbox.get_password())
        except BaseException:
            with suppress(Exception):
                client.close()
            raise
        return client

    def _phase(self) -> None:
        self.client.deadline_in(phase_timeout())

    def _read_all(self) -> None:
        self._phase()
        listing = self._listing()
        known = dict(ReadMessage.objects.filter(mailbox=self.mailbox).values_list("uidl", "is_report"))
        delete = self.mailbox.delete_after_processing
        read = 0
        for number, uidl, size in listing:
            if uidl in known:
                if known[uidl] and delete:  # read by a run that died before QUIT
                    self._phase()
                    self.client.dele(number)
                continue
            if read >= batch_size() or not self.lease.time_left():
                return  # no pruning on a partial run
            self._phase()
            self._one(number, uidl, size)
            read += 1
        on_server = {uidl for _n, uidl, _s in listing}
        ReadMessage.objects.filter(mailbox=self.mailbox).exclude(uidl__in=on_server).delete()

    def _listing(self) -> list[tuple[int, str, int]]:
        sizes = {}
        for line in self.client.list()[1]:
            number, size = line.split()[:2]
            sizes[int(number)] = int(size)
        listing = []
        for line in self.client.uidl()[1]:
            number, uidl = line.split()[:2]
            listing.append((int(number), uidl.decode(errors="replace"), sizes.get(int(number), 0)))
        return listing

    def _one(self, number: int, uidl: str, size: int) -> None:
        parsed = bounce_parser.parse(self._fetch(number, size))
        if parsed.kind is None:
            self.result.left_alone += 1
        elif bounces.report_record(mailbox=self.mailbox, source_key=f"pop3:{uidl}", parsed=parsed):
            self.result.reports += 1
        is_report = _is_delivery_report(parsed)
        ReadMessage.objects.get_or_create(mailbox=self.mailbox, uidl=uidl, defaults={"is_report": is_report})
        if is_report and self.mailbox.delete_after_processing:
            self.client.dele(number)
        self.lease.update()

    def _fetch(self, number: int, size: int) -> bytes:
        lines = TOP_ALL_LINES if size <= max_bytes() else TOP_HEAD_LINES
        try:
            _resp, body, _octets = self.client.top(number, lines)
        except poplib.error_proto:  # TOP is optional (RFC 1939); RETR marks as read
            _resp, body, _octets = self.client.retr(number)
        return b"\r\n".join(body) + b"\r\n"
