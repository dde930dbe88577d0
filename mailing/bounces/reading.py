"""What the IMAP and POP3 readers share: the lease that makes one reader
per mailbox at a time, the result of a run, the time and size limits, and
the address check before any connection.

The lease is a column pair in the mailbox row, taken with a conditional
UPDATE and renewed after every message, so a worker that dies simply lets
it run out."""

import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from servers.connections import Quiet, checked_address
from servers.models import BounceMailbox

from . import parser


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


def connect_addresses(mailbox: BounceMailbox) -> tuple[str, list]:
    """The rules again (a record edited behind the forms' back is refused)
    and the SSRF check, before any connection."""
    return checked_address(Quiet(phase_timeout()), mailbox, mailbox.host, mailbox.port)


def is_delivery_report(parsed: parser.ParsedReport) -> bool:
    """Moved away (IMAP) or deletable (POP3): a report, not an auto-reply."""
    return parsed.kind not in (None, parser.AUTO_REPLY)
