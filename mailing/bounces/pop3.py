"""Reading a bounce mailbox over POP3.

POP3 has no flags or folders: messages are remembered by UIDL (ReadMessage)
and read with TOP, which, unlike RETR, does not mark them read; reports are
deleted only if the tenant asked, and a deletion takes effect only at QUIT,
after every report is recorded."""

import poplib
from contextlib import suppress

from servers import netguard
from servers.connections import tls_context
from servers.models import BounceMailbox, Security

from ..models import ReadMessage
from . import parser, services
from .reading import Lease, ReadResult, batch_size, connect_addresses, is_delivery_report, max_bytes, phase_timeout

TOP_ALL_LINES = 10_000_000
TOP_HEAD_LINES = 300  # of a message too big to read whole


class Pop3Reader:
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
        host, addresses = connect_addresses(mailbox)
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
        try:
            raw = self._fetch(number, size)
        except LineTooLong:
            self._skip(uidl)
            return
        parsed = parser.parse(raw)
        key = f"pop3:{uidl}"
        if parsed.kind is not None and services.report_record(mailbox=self.mailbox, source_key=key, parsed=parsed):
            self.result.reports += 1
        ours = parsed.kind is not None and services.is_ours(mailbox=self.mailbox, source_key=key, parsed=parsed)
        if not ours:
            self.result.left_alone += 1
        is_report = ours and is_delivery_report(parsed)
        ReadMessage.objects.get_or_create(mailbox=self.mailbox, uidl=uidl, defaults={"is_report": is_report})
        if is_report and self.mailbox.delete_after_processing:
            self.client.dele(number)
        self.lease.update()

    def _fetch(self, number: int, size: int) -> bytes:
        lines = TOP_ALL_LINES if size <= max_bytes() else TOP_HEAD_LINES
        try:
            _resp, body, _octets = self.client.top(number, lines)
        except poplib.error_proto as exc:  # TOP is optional (RFC 1939); RETR marks as read
            _too_long(exc)
            _resp, body, _octets = self._retr(number)
        return b"\r\n".join(body) + b"\r\n"

    def _retr(self, number: int) -> tuple[bytes, list[bytes], int]:
        try:
            return self.client.retr(number)
        except poplib.error_proto as exc:
            _too_long(exc)
            raise

    def _skip(self, uidl: str) -> None:
        """A message with a line longer than the client reads (anyone can
        mail the bounce address: HTML or a data: URI in one line) cannot be
        read, and the rest of it is still on the wire: it is remembered as
        read and left alone, and the reading goes on over a new connection
        (the old one's deletions are made again by the next run)."""
        ReadMessage.objects.get_or_create(mailbox=self.mailbox, uidl=uidl, defaults={"is_report": False})
        self.result.left_alone += 1
        self.lease.update()
        with suppress(Exception):
            self.client.close()
        self.client = self._connect()


class LineTooLong(Exception):
    """The client stopped reading a line past its limit, in the middle of the message."""


def _too_long(exc: poplib.error_proto) -> None:
    if exc.args and exc.args[0] == "line too long":  # servers.netguard's limit, not the server's -ERR
        raise LineTooLong from exc
