"""Reading a bounce mailbox over IMAP.

Only UIDs above the last one read (under the same UIDVALIDITY) are
fetched, with BODY.PEEK so nothing becomes seen. Reports go to the folder
Postroute/Processed (MOVE, else COPY + \\Deleted + EXPUNGE, else a keyword);
anything else, auto-replies included, stays exactly as it was. A report is
recorded before it is moved away, and the position advances only after
that."""

import imaplib
import logging
import re
from contextlib import suppress
from datetime import datetime, timedelta

from servers import imap_folders, netguard
from servers.connections import tls_context
from servers.models import BounceMailbox, Security

from . import parser, services
from .reading import Lease, ReadResult, batch_size, connect_addresses, is_delivery_report, max_bytes, phase_timeout

log = logging.getLogger(__name__)

PROCESSED_FOLDER = ("Postroute", "Processed")
PROCESSED_KEYWORD = "$PostrouteProcessed"


class ImapReader:
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
        host, addresses = connect_addresses(mailbox)
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
        typ, data = self.client.select(imap_folders.quoted(mailbox.folder))
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
        criteria = ["UID", f"{last + 1}:*", "UNKEYWORD", PROCESSED_KEYWORD]
        if self.mailbox.server_id is not None:
            # A sending mailbox holds years of its owner's mail: only what
            # came since the day before reading it was turned on.
            criteria += ["SINCE", imap_date(self.mailbox.created_at - timedelta(days=1))]
        data = _ok(self.client.uid("SEARCH", *criteria))
        # "N:*" always includes the highest UID, even below N.
        uids = sorted(int(u) for u in (data[0] or b"").split() if int(u) > last)
        return uids[: batch_size()]

    def _one(self, uid: int) -> None:
        raw = self._fetch(uid)
        parsed = parser.parse(raw) if raw is not None else None
        if parsed is None or parsed.kind is None:
            self.result.left_alone += 1
        else:
            key = f"imap:{self.mailbox.folder}:{self.uidvalidity}:{uid}"
            if services.report_record(mailbox=self.mailbox, source_key=key, parsed=parsed):
                self.result.reports += 1
            if not services.is_ours(mailbox=self.mailbox, source_key=key, parsed=parsed):
                self.result.left_alone += 1
            elif is_delivery_report(parsed):
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
            return self.client.uid("MOVE", str(uid), imap_folders.quoted(folder))[0] == "OK"
        if self.client.uid("COPY", str(uid), imap_folders.quoted(folder))[0] != "OK":
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
            typ, data = self.client.list('""', imap_folders.quoted(name))
            if typ == "OK" and data and data[0]:
                return name
            if self.client.create(imap_folders.quoted(name))[0] == "OK":
                self.client.subscribe(imap_folders.quoted(name))  # so mail programs show it
                return name
        log.warning("mailbox %s: cannot create a Processed folder; flagging instead", self.mailbox.pk)
        return ""

    def _separator(self) -> str:
        typ, data = self.client.list('""', '""')
        found = re.search(rb'\) "(.)"', data[0]) if typ == "OK" and data and data[0] else None
        return found.group(1).decode() if found else "/"


MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def imap_date(moment: datetime) -> str:
    """RFC 3501's date ("29-May-2024"), whatever the locale."""
    return f"{moment.day}-{MONTHS[moment.month - 1]}-{moment.year}"


def _ok(response: tuple[str, list]) -> list:
    typ, data = response
    if typ != "OK":
        raise imaplib.IMAP4.error(_text(data))
    return data


def _text(data: list) -> str:
    first = data[0] if data else b""
    return first.decode(errors="replace") if isinstance(first, bytes) else str(first)
