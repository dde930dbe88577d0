"""A batch goes on over its connection: its next letters are claimed while
its last ones go.

Between two batches of a chain, a conversation with a fast server waited
about 25 ms: the claim of 200 letters (16 ms: choosing, locking and marking
them), the batch's other statements (the mailing, its servers, the slot,
the share, the reservation, the letters left, the mailboxes) and a new
connection; with two conversations that was 7% of each one's time. Now,
when its last CLAIM_AHEAD letters remain, a batch asks for its next ones on
a thread of its own, which checks first what the next batch would check
(the mailing still runs, the server may still send and is the first of the
mailing's order with room), then reserves their room and claims them with
the batch's token. The batch goes on with them over a new connection: a
connection still carries one claim's letters, DISPATCH_BATCH at most, as
before, for the providers that count letters a connection.

Not where a batch is a turn or a minute: on the platform server a batch is
one tenant's turn, on a server with a max per minute it holds one minute's
room. And not once the chain's slice is spent (DISPATCH_SLICE), when the
task hands its thread to the chains waiting for one."""

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from celery.exceptions import SoftTimeLimitExceeded
from django.db import connection

from servers.models import SmtpServer

from .. import limits
from ..models import Letter, Mailing
from . import rests
from .claims import claim, share

log = logging.getLogger(__name__)
# Letters left in a batch when its next ones are asked for: about 30 ms on
# a fast server, more than the claim takes (16 ms for 200 letters).
CLAIM_AHEAD = 20


@dataclass
class Chunk:
    """Letters claimed under one reservation of room: a batch's first ones,
    and each next ones."""

    reservation: limits.Reservation
    unused: int  # room reserved and not given back: what was claimed
    letters: list[Letter] = field(default_factory=list)
    handed: int = 0  # letters that reached DATA


def reserve_and_claim(
    mailing: Mailing,
    server: SmtpServer,
    size: int,
    *,
    now: datetime,
    into: list[Chunk],
    token: uuid.UUID | None = None,
) -> Chunk | None:
    """A chain's share of the letters due, at most `size`, with room
    reserved for them (the reservation first: room reserved for letters
    another chain then took would send this one to the next server). The
    chunk joins `into` once its room is reserved, so whatever raises later,
    settle() gives back what it did not use. `token`: the batch's own, for
    its next letters, of which none may be due (None)."""
    wanted = share(mailing, server, size, now=now, extending=token is not None)
    if not wanted:
        return None
    reservation = limits.reserve(server=server, tenant=mailing.tenant, wanted=wanted, now=now)
    chunk = Chunk(reservation, unused=reservation.granted)
    if not reservation.granted:
        return chunk
    into.append(chunk)
    chunk.letters = claim(mailing, server, reservation.granted, now=now, token=token)
    # Room for letters there are not is given back at once: the dashboard
    # counts only what is handed over or in flight.
    limits.release(reservation=reservation, unused=reservation.granted - len(chunk.letters))
    chunk.unused = len(chunk.letters)
    return chunk


def settle(chunks: list[Chunk]) -> None:
    """Room reserved and not used gives back, from what reached DATA."""
    for chunk in chunks:
        limits.release(reservation=chunk.reservation, unused=chunk.unused - chunk.handed)


def first_with_room(mailing: Mailing, server: SmtpServer, now: datetime) -> bool:
    """`server` is usable and no server before it in the mailing's order
    has room now: the chain's next batch would use it too (run)."""
    usable = rests.usable_servers(mailing, now)
    ids = [s.pk for s in usable]
    if server.pk not in ids:
        return False
    before = usable[: ids.index(server.pk)]
    if not before:
        return True
    usage = limits.window_usage(before, mailing.tenant, now)
    # A server whose minute only is spent is waited for (run), as one with room.
    return all(usage[s.pk].left == 0 and not limits.paced(s, usage[s.pk]) for s in before)


class Ahead:
    """A batch's next letters, being claimed: on a thread of its own with
    its own database session (back to the pool when done) where threads
    write (the dispatch worker on PostgreSQL), or else when they are wanted
    (tests; SQLite in development, which takes one writer at a time)."""

    def __init__(self, take: Callable[[list[Chunk]], None], *, threaded: bool) -> None:
        self.chunks: list[Chunk] = []
        self._take = take
        self._thread: threading.Thread | None = None
        if threaded:
            self._thread = threading.Thread(target=self._run, name="letter-claimer", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            self._take(self.chunks)
        except SoftTimeLimitExceeded:
            raise
        except Exception:
            log.exception("a batch's next letters could not be claimed; its chain's next batch claims them")
        finally:
            if self._thread is not None:
                connection.close()  # this thread's own session

    def taken(self, *, wanted: bool = True) -> list[Chunk]:
        """What was claimed, once it is; `wanted=False` (the batch is over)
        claims nothing more, only waits for a claim under way."""
        if self._thread is not None:
            self._thread.join()
        elif wanted:
            self._run()
        return self.chunks
