"""One batch: a connection slot, room reserved in the limits, letters
claimed, one SMTP connection carrying them, and every letter ending with a
result or back in the queue, whatever the server says or raises."""

import logging
import smtplib
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections

from config import metrics, requestids, statements
from servers.connections import PinnedSMTPClient, open_smtp
from servers.errors import server_words
from servers.models import BounceMailbox, SmtpServer

from .. import events, limits
from ..addresses import (
    RecipientNeedsSmtpUtf8,
    SenderNeedsSmtpUtf8,
    SenderSideRefused,
    UnsendableAddress,
    check_sender_side,
)
from ..models import Letter, Mailing, SlotWait
from ..sender import batch_routes, envelope_sender
from . import rests
from .ahead import CLAIM_AHEAD, Ahead, Chunk, first_with_room, reserve_and_claim, settle
from .claims import passed_by
from .exchange import (
    MinuteOver,
    Progress,
    Refusal,
    TooBig,
    abandon,
    envelope,
    exchange,
    mail_max,
    offers_size,
    pipelines,
    refuses_size,
    silent,
    wire_size,
)
from .messages import Builder, sender_side
from .recorder import Recorder, RecordingFailed
from .replies import (
    CONNECTION_COUNT,
    CONNECTION_LOST,
    LOST_NOTE,
    NOT_AGAIN_NOTE,
    NOT_BUILT,
    SPAM_WORDS,
    STORM_NOTE,
    UNEXPECTED,
    UNSURE_NOTE,
    Kind,
    Stage,
    Verdict,
    judge,
    kept_reply,
    per_connection_cap,
    too_big_reply,
    turned_away,
)
from .results import Sent, defer, fail, fail_and_suppress, pass_over, requeue
from .rows import Rows
from .slots import connection_slot, others_talking

log = logging.getLogger(__name__)
L = Letter.Status
# Temporary refusals of this many letters in a row are the server's state
# (a 451 to everything), not the recipients': the server rests and the
# letters go to the next server at once, uncounted.
STORM = 3
# A batch ends by itself after this long (a slow server), far below the
# task's soft time limit (mailing.tasks), so the limit is only a backstop.
BATCH_SECONDS = 240
# Letters refused in a row on one connection before it is opened anew.
# Postfix counts a refused RCPT and the pipelined DATA after it as two
# errors until a letter is accepted; from smtpd_soft_error_limit (10) it
# answers each command a second late, at smtpd_hard_error_limit (20) it
# hangs up with "421 too many errors". A new connection starts from zero.
RECONNECT_AFTER = 4
# On the shared platform server a batch is one tenant's turn: the tenant
# that waited longest goes next (_others_wait_first), after at most this
# many letters of another's.
PLATFORM_TURN = 50
NO_VERDICT = Verdict(Kind.TEMPORARY, 0, "")
# Content refusals in a row that rest the sending (the tenant's, on a
# platform server).
CONTENT_STRIKES = 3


@dataclass
class Outcome:
    handed: int = 0  # letters that reached DATA (they count against the limit)
    tried: int = 0  # letters whose exchange began: sent, refused or given back
    busy: bool = False  # every connection slot of the server was taken
    paced: bool = False  # only its max per minute is spent: it has room again next minute
    turned_away: bool = False  # the server refused this connection only (Batch._turned_away)
    unclaimed: bool = False  # room, but no letter to claim (another chain's, or none it can carry)


def send_batch(mailing: Mailing, server: SmtpServer, *, now: datetime) -> Outcome:
    outcome = Outcome()
    metrics.know_server(server.pk, server.tenant_id, server.kind)
    if server.is_platform and _others_wait_first(server, mailing.tenant_id, now):
        _wait_for_slot(server, mailing.tenant_id, now)
        outcome.busy = True  # another tenant's turn on the shared server
        return outcome
    with connection_slot(server) as slot:
        if not slot:
            if server.is_platform:
                _wait_for_slot(server, mailing.tenant_id, now)
            outcome.busy = True
            return outcome
        if server.is_platform:
            SlotWait.objects.filter(server=server, tenant_id=mailing.tenant_id).delete()
        size = min(settings.DISPATCH_BATCH, PLATFORM_TURN) if server.is_platform else settings.DISPATCH_BATCH
        chunks: list[Chunk] = []
        try:
            first = reserve_and_claim(mailing, server, size, now=now, into=chunks)
            if first is None or not first.reservation.granted:
                usage = limits.window_usage([server], mailing.tenant, now)[server.pk]
                outcome.paced = limits.paced(server, usage)
                _count_limit_reached(usage)
                events.limit_reached(server, mailing.tenant_id, usage, now=now)
                return outcome
            if not first.letters:  # claimed by another chain meanwhile, or none it can carry
                outcome.unclaimed = True
                return outcome
            batch = Batch(mailing, server, first.letters, outcome, now, chunks=chunks, size=size)
            with metrics.Timer() as timer, requestids.bound(mailing_id=mailing.pk, server_id=server.pk):
                batch.run()
            metrics.observe_batch(timer.seconds, len(batch.letters))
        finally:
            # Counted in a finally, from what reached DATA, whatever raised.
            settle(chunks)
    return outcome


def _count_limit_reached(usage: limits.Usage) -> None:
    """For the metrics: which window a batch found spent."""
    for kind, left in (
        ("minute", usage.minute_left),
        ("hour", usage.hour_left),
        ("day", usage.day_left),
        ("platform_quota", usage.tenant_day_left),
        ("platform_quota", usage.group_day_left),
    ):
        if left == 0:
            metrics.limit_reached(kind)
            return


# A waiting chain asks again every second (mailing.tasks); one that has not
# asked for this long has stopped (its mailing paused, finished, its worker
# gone) and no longer holds others back.
WAIT_FORGOTTEN = timedelta(seconds=5)


def _others_wait_first(server: SmtpServer, tenant_id: int, now: datetime) -> bool:
    """Another tenant has been waiting for this platform server longer
    than this one: this chain leaves the slot to it."""
    waits = SlotWait.objects.filter(server=server, seen__gte=now - WAIT_FORGOTTEN)
    mine = waits.filter(tenant_id=tenant_id).values_list("since", flat=True).first()
    others = waits.exclude(tenant_id=tenant_id)
    return (others.filter(since__lt=mine) if mine else others).exists()


def _wait_for_slot(server: SmtpServer, tenant_id: int, now: datetime) -> None:
    wait, created = SlotWait.objects.get_or_create(
        server=server, tenant_id=tenant_id, defaults={"since": now, "seen": now}
    )
    if not created:
        stale = wait.seen < now - WAIT_FORGOTTEN
        SlotWait.objects.filter(pk=wait.pk).update(seen=now, **({"since": now} if stale else {}))


def only_paced(server: SmtpServer, mailing: Mailing, now: datetime) -> bool:
    """A per-minute cap is a pace, not a spent limit: the server is waited
    for like a busy one, never passed over for the next in the order. A max
    per minute of 0 is a limit of 0, not a pace: nothing comes of waiting."""
    if not server.max_per_minute:
        return False  # no query: a server without the cap is never paced
    return limits.paced(server, limits.window_usage([server], mailing.tenant, now)[server.pk])


@dataclass
class Batch:
    mailing: Mailing
    server: SmtpServer
    letters: list[Letter]
    outcome: Outcome
    now: datetime
    chunks: list[Chunk] = field(default_factory=list)  # the letters' reservations, the next ones appended
    size: int = 0  # letters a claim takes at most
    started: float = field(default_factory=time.monotonic)
    held: list[tuple[Letter, str]] = field(default_factory=list)  # first-time temporary refusals in a row
    temporary_in_a_row: int = 0  # temporary refusals in a row, retries included
    last_temporary: Verdict = NO_VERDICT  # the last of them
    done: set[int] = field(default_factory=set)  # letters with a result or given back
    content_strikes: int = 0
    accepted: int = 0
    refused_in_a_row: int = 0  # on this connection, since its last accepted letter
    accepted_here: int = 0  # letters accepted on this connection
    begun_here: int = 0  # letters whose MAIL went on this connection (a server's cap counts them)
    # The next letters' bytes (or why they could not be made), made while
    # the server took the one before (_make_ahead), or for their SIZE.
    made: list[tuple[Letter, bytes | Exception]] = field(default_factory=list)
    position: int = 0  # the index of the letter the loop is on
    # The batch's next letters, being claimed while its last ones go
    # (mailing.dispatch.ahead); None once they joined (or none was asked).
    coming: Ahead | None = None
    # The letter whose MAIL, RCPT and DATA went with the last final dot
    # (exchange: `then`), until its turn reads their replies; the claim
    # whose room it counts in if abandoned (next letters may join meanwhile).
    early: Letter | None = None
    early_chunk: Chunk | None = None
    # False once the server was silent to an envelope that went with a
    # final dot (it drops what came with the dot): each would cost a deadline.
    with_the_dot: bool = True
    # The server offered SIZE but refused the parameter (exchange.refuses_size).
    size_refused: bool = False
    # The letters the server takes a connection, as its EHLO's LIMITS says.
    mail_max: int | None = None
    # The mailing's servers that may send (rests.able), once a letter this
    # server cannot carry asked (_elsewhere).
    able: set[int] | None = None

    def clock(self) -> datetime:
        """The batch's clock: `now` as the caller gave it, moved on by the
        time spent since (so a test's clock and the real one both work)."""
        return self.now + timedelta(seconds=time.monotonic() - self.started)

    def run(self) -> None:
        self.recorder = Recorder(threaded=settings.DISPATCH_RECORD_THREAD)
        self.client: PinnedSMTPClient | None = None
        # Where this server's reports and the letters' replies go: once per batch.
        self.route, self.reply_to = batch_routes(
            self.server, self.mailing.tenant_id, _mailboxes(self.mailing.tenant_id)
        )
        self.builder = Builder(self.server, self.mailing, reply_to=self.reply_to)
        self.settings_side, self.mailing_side = sender_side(self.builder.sender, self.route, self.mailing)
        self.sender_side = self.settings_side + self.mailing_side
        release_session()
        try:
            if self._connect():
                self._loop()
                self._end_of_streak(batch_over=True)
        finally:
            self._take_coming(wanted=False)  # given back below, their room in send_batch
            self.recorder.close()
            self._give_back([letter for letter in self.letters if letter.pk not in self.done], quietly=True)
            if self.client is not None:
                self._hang_up()

    def _connect(self) -> bool:
        try:
            self.client = open_smtp(self.server, timeout=settings.DISPATCH_SMTP_TIMEOUT)
        except Exception as exc:
            self.client = None
            if self._turned_away(exc):
                self.outcome.turned_away = True
            else:
                rests.server_failed(self.server, exc, now=self.clock())
            return False
        # The body and the final dot go out in two writes (see exchange):
        # with Nagle's algorithm the dot would wait for the delayed ACK.
        self.client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.client.size_refused = self.size_refused  # type: ignore[attr-defined]
        self.mail_max = mail_max(self.client)
        self.refused_in_a_row = self.accepted_here = self.begun_here = 0
        return True

    def _turned_away(self, exc: Exception) -> bool:
        """A new connection refused at its greeting or EHLO with a 4xx that
        is not about the rate of mail (replies.turned_away), while other
        conversations talk to the server: the provider counts connections,
        and this one was too many. It costs this connection only: its chain
        tries again later, and the server does not rest, which would stop
        the others' batches. Alone with the server, the refusal is the
        server's state, and it rests (growing)."""
        if not isinstance(exc, smtplib.SMTPConnectError | smtplib.SMTPHeloError):
            return False
        if not turned_away(exc.smtp_code, server_words(exc.smtp_error)):
            return False
        if not others_talking(self.server):
            return False
        log.info("server %s turned a connection away beside others: %s", self.server.pk, exc)
        return True

    def _one_too_many(self, verdict: Verdict) -> bool:
        """A refusal of the number of connections said to a letter (Microsoft
        365 takes three submissions of a mailbox at once: "432 4.3.2
        STOREDRV.ClientSubmit; sender thread limit exceeded" to MAIL FROM)
        while other conversations talk to the server: as at the greeting
        (_turned_away), this connection ends, its letter goes back
        uncounted, and the server does not rest."""
        return bool(CONNECTION_COUNT.search(verdict.reply)) and others_talking(self.server) > 0

    def _reconnect(self) -> bool:
        """A fresh connection for the rest of the batch (results so far are
        recorded in order by the same recorder)."""
        self._hang_up()
        self.client = None
        return self._connect()

    def _hang_up(self) -> None:
        """QUIT, or, with a letter's envelope on the wire (`early`: its DATA
        may have been answered 354, where QUIT would be a line of it), its
        replies read and the connection closed; a 354 counts it as handed."""
        if self.early is None:
            _close(self.client)
            return
        self.early = None
        if abandon(self.client):
            self.outcome.handed += 1
            (self.early_chunk or self.chunks[-1]).handed += 1

    def _minute_end(self) -> float | None:
        """With a max per minute, the room was reserved in the clock minute
        of `now`: the letters must be handed over within it (limits.py), so
        none is accepted after it ends (monotonic time)."""
        if self.server.max_per_minute is None:
            return None
        left = limits.trunc_minute(self.now) + limits.MINUTE - self.now
        return self.started + left.total_seconds()

    def _loop(self) -> None:
        check_at = time.monotonic() + settings.DISPATCH_TICK / 2
        allowed: int | None = None
        minute_end = self._minute_end()
        index, joined = -1, len(self.letters)
        while (index := index + 1) < len(self.letters) or self._more():
            letter, self.position = self.letters[index], index
            if len(self.letters) != joined:
                # The next letters joined, with their own room: what the
                # last check allowed counted the letters before them only.
                joined, allowed = len(self.letters), None
            if minute_end is not None and time.monotonic() >= minute_end:
                # The rest goes back; the next batch reserves in the new minute.
                self.outcome.paced = not self.outcome.tried
                return
            if time.monotonic() >= check_at:
                # A long batch (a slow server) still stops within a tick when
                # the mailing is paused, the server disabled or its limit
                # lowered below what this batch reserved.
                allowed = self._may_still_send(len(self.letters) - index)
                check_at = time.monotonic() + settings.DISPATCH_TICK / 2
            if allowed is not None:
                if allowed <= 0:
                    return
                allowed -= 1
            if time.monotonic() - self.started > BATCH_SECONDS:
                return  # well before the task's time limit: the rest goes back to the queue
            if self.refused_in_a_row >= RECONNECT_AFTER and not self._reconnect():
                return
            if self._at_mail_max(0) and not self._reconnect():
                return  # the server's LIMITS MAILMAX: a new connection, not its refusal
            if allowed is None and minute_end is None and len(self.letters) - index <= CLAIM_AHEAD:
                self._ask_for_more()
            self.outcome.tried += 1
            progress = Progress(accept_before=minute_end)
            following = self.letters[index + 1] if index + 1 < len(self.letters) else None
            # The next letter's envelope goes with this one's final dot
            # unless the loop already knows it may stop or reconnect before
            # it (a stop after all abandons it: _hang_up). A server with a
            # max per minute keeps one letter at a time within its minute.
            early = (
                self.with_the_dot
                and minute_end is None
                and (allowed is None or allowed > 1)
                and self.refused_in_a_row + 1 < RECONNECT_AFTER
            )
            try:
                go_on = self._send_one(self.client, letter, progress, following, early=early)
            finally:
                self.outcome.handed += progress.handed
                self.chunks[-1].handed += progress.handed
            if not go_on or not self._still_connected(more=following is not None):
                return

    def _at_mail_max(self, ahead: int) -> bool:
        """The connection's next letter (`ahead` 0), or the one after it
        (1), would be one more than the server's LIMITS MAILMAX."""
        return self.mail_max is not None and self.begun_here + ahead >= self.mail_max

    def _ask_for_more(self) -> None:
        """Once a claim: the batch's next letters, claimed while its last
        ones go (mailing.dispatch.ahead), unless its batch is a tenant's
        turn on the platform server or its chain's slice is spent. Only
        after a full claim: one of fewer letters took what was left (or its
        share of it), and asking again would cost a small mailing's batch
        three statements for nothing."""
        if self.coming is not None or self.server.is_platform:
            return
        if len(self.chunks[-1].letters) < self.size:
            return
        if time.monotonic() - self.started >= settings.DISPATCH_SLICE:
            return
        threaded = self.recorder.threaded and connection.vendor == "postgresql"
        self.coming = Ahead(self._claim_more, threaded=threaded)

    def _claim_more(self, into: list[Chunk]) -> None:
        """On the claimer's thread: what the chain's next batch would check,
        then its letters claimed with this batch's token."""
        now = self.clock()
        server = rests.server_if_may_go_on(self.mailing, self.server, now)
        # A max per minute given meanwhile: a minute's room, which this
        # batch (begun without one) would not hand over within its minute.
        if server is not None and server.max_per_minute is None and first_with_room(self.mailing, server, now):
            token = self.letters[0].claim_token
            reserve_and_claim(self.mailing, server, self.size, now=now, into=into, token=token)

    def _more(self) -> bool:
        """The batch's letters are through: it goes on with the next ones,
        if it got any, over a new connection."""
        if not self._take_coming(wanted=True):
            return False
        return self._reconnect()

    def _take_coming(self, *, wanted: bool) -> bool:
        """The next letters join the batch, their room its chunks."""
        coming, self.coming = self.coming, None
        if coming is None:
            return False
        chunks = coming.taken(wanted=wanted)
        self.chunks += chunks
        for chunk in chunks:
            self.letters += chunk.letters
            # A letter this batch gave back meanwhile may be among them,
            # claimed again: it is this batch's to send or give back again.
            self.done.difference_update(letter.pk for letter in chunk.letters)
        return any(chunk.letters for chunk in chunks)

    def _still_connected(self, *, more: bool) -> bool:
        """A server that hung up with 421 after a refusal: "too many errors"
        (Postfix) only means this connection, so the batch goes on over a new
        one (if it has a letter left: `more`); any other 421 rests the server."""
        goodbye = getattr(self.client, "goodbye", "")
        if not goodbye and not getattr(self.client, "reconnect", False):
            return True
        # A refused letter whose transaction could not be reset (a 5xx to
        # RSET, a DATA taken after a refusal) gets a fresh connection too,
        # rather than a next MAIL FROM met with "503 nested MAIL".
        if not goodbye or "too many errors" in goodbye.lower():
            return more and self._reconnect()
        rests.rest_server(self.server, rests.RestReason.CONNECTION, goodbye, now=self.clock())
        return False

    def _send_one(
        self,
        client: PinnedSMTPClient,
        letter: Letter,
        progress: Progress,
        following: Letter | None = None,
        *,
        early: bool = False,
    ) -> bool:
        """Send and record one letter; False when this batch must stop.
        `following`, the batch's next letter, is made while the server
        takes this one, and with `early` its envelope goes with this one's
        final dot: not where it would be one letter more than the
        connection's LIMITS MAILMAX, whoever decided `early` (the loop for
        its connection, or a letter going again over a new connection,
        whose cap may be lower, or after a refused MAIL that counted)."""
        early = early and not self._at_mail_max(1)
        sent = self.early is letter  # its envelope went with the last final dot
        try:
            # Before the letter is made: a sender-side address its making
            # would refuse is the sender's problem too.
            utf8 = check_sender_side(client, self.sender_side)
            data = self._wire(letter)
            commands = [] if sent else self._envelope(client, letter, data, utf8=utf8)
        except SoftTimeLimitExceeded:
            raise  # the task's own limit: the batch ends and gives the rest back
        except SenderSideRefused as exc:
            # The sender's, not this letter's: no letter could go through
            # this server. It goes back with the rest, none failed.
            self._give_back([letter])
            if isinstance(exc, SenderNeedsSmtpUtf8) and (exc.address, exc.role) not in self.settings_side:
                rests.mailing_needs_smtputf8(self.mailing, self.server, exc)  # the server stays for the others
            else:
                rests.sender_needs_smtputf8(self.server, self.mailing.tenant, exc, now=self.clock())
            return False
        except Exception as exc:  # this one letter cannot go: it fails, the batch goes on
            if isinstance(exc, RecipientNeedsSmtpUtf8 | TooBig) and self._elsewhere(letter):
                # This server cannot carry it, another of the mailing's may:
                # it goes there, uncounted, this server's claims skip it.
                self._record(letter, partial(pass_over, letter, self.server.pk, unsendable_reply(exc)))
            elif isinstance(exc, UnsendableAddress | TooBig):
                self._record(letter, partial(fail, letter, unsendable_reply(exc)))
            else:  # the builder refused it
                log.exception("letter %s could not be built", letter.pk)
                self._record(letter, partial(fail, letter, f"{NOT_BUILT}{exc}"))
            if sent:  # its envelope is on the wire: the batch goes on over a new connection
                self._hang_up()
                client.reconnect = True  # type: ignore[attr-defined]
            return True
        release_session()
        # Before the deadline: making the next letter for its SIZE is our time.
        then = self._then(client, following, utf8=utf8) if early and following is not None else None
        # The whole exchange, however the server dribbles its replies.
        client.deadline_in(settings.DISPATCH_SMTP_TIMEOUT)
        started = time.monotonic()
        self.early = None
        self.begun_here += 1
        try:
            reply = self._exchange(client, commands, data, progress, following, sent=sent, then=then)
        except Refusal as exc:
            if refuses_size(client, exc):
                return self._without_size(client, letter, progress, following, exc, early=early)
            if (
                exc.stage in (Stage.MAIL, Stage.RCPT, Stage.DATA)
                and self.begun_here > 1
                and per_connection_cap(exc.code, exc.reply)
            ):
                return self._capped(letter, progress, following, exc, early=early)
            return self._refused(letter, judge(exc.code, exc.reply, exc.stage), exc.stage)
        except (RecordingFailed, SoftTimeLimitExceeded):
            raise
        except MinuteOver:
            # Stopped before the final dot: the server took nothing.
            progress.stage = Stage.MAIL
            self._give_back([letter])
            return False
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            # Gone at this letter's MAIL after the server had answered a
            # final dot on this connection (taken, or refused with an
            # envelope of this letter's behind it): the server's way of
            # ending the connection, not a failure.
            if progress.stage == Stage.MAIL and (self.accepted_here or sent):
                if sent and silent(exc):
                    # Silent to the envelope that came with the dot: the
                    # batch's next envelopes wait for the dot's reply.
                    self.with_the_dot = early = False
                return self._afresh(letter, progress, following, early=early)
            self._lost(letter, progress, exc)
            return False
        except Exception as exc:  # not the server's doing: this letter keeps the error
            log.exception("letter %s: unexpected error while sending", letter.pk)
            self._record(letter, partial(defer, letter, f"{UNEXPECTED}{exc!r}", now=self.clock()))
            return False  # the connection's state is unknown
        # The server's time: not the next letter's making (Deadline.not_counting).
        metrics.observe_letter(time.monotonic() - started - client.own_seconds)
        self._record(letter, Sent(letter, at=self.clock(), reply=reply))
        self._accepted()
        return True

    def _without_size(
        self,
        client: PinnedSMTPClient,
        letter: Letter,
        progress: Progress,
        following: Letter | None,
        refusal: Refusal,
        *,
        early: bool,
    ) -> bool:
        """The server offered SIZE but refused the parameter (refuses_size):
        the letter goes again at once without it, and so do the batch's next
        letters and connections. On the same connection while it is open;
        over a new one where the server hung up after its 555 (rset closed
        it): nothing of the letter reached the server, and a retry on the
        closed connection would be a lost connection, resting the server.
        The refused MAIL counts toward the server's LIMITS MAILMAX (Exim
        counts every MAIL command): the retry goes over a new connection
        where it would be one too many (and _send_one lets the next envelope
        ride its dot only if the connection takes one more)."""
        log.info("server %s refuses the SIZE it offers: %s", self.server.pk, refusal.reply)
        self.size_refused = True  # the batch's next connections too
        progress.stage = Stage.MAIL
        if not client.sock or self._at_mail_max(0):
            return self._afresh(letter, progress, following, early=early)
        return self._send_one(client, letter, progress, following, early=early)

    def _exchange(
        self,
        client: PinnedSMTPClient,
        commands: list[bytes],
        data: bytes,
        progress: Progress,
        following: Letter | None,
        *,
        sent: bool,
        then: list[bytes] | None,
    ) -> str:
        """exchange(), `following` made meanwhile; whatever it raises, the
        batch knows whether `following`'s envelope went (`early`)."""
        try:
            meanwhile = None if following is None else partial(self._make_ahead, following)
            return exchange(client, commands, data, self.recorder, progress, meanwhile=meanwhile, sent=sent, then=then)
        finally:
            if progress.then_sent:
                self.early, self.early_chunk = following, self.chunks[-1]

    def _envelope(self, client: PinnedSMTPClient, letter: Letter, data: bytes | None, *, utf8: bool) -> list[bytes]:
        """`data`, the letter's bytes, for a server that offers SIZE; `utf8`,
        whether the sender side needs SMTPUTF8 (check_sender_side)."""
        sender = envelope_sender(self.route, letter.public_id)
        size = None if data is None else wire_size(data)
        return envelope(client, sender, letter.email, utf8=utf8, size=size)

    def _then(self, client: PinnedSMTPClient, following: Letter, *, utf8: bool) -> list[bytes] | None:
        """The next letter's envelope, to go with this one's final dot; None
        when it cannot be made, or the letter cannot go (its own turn says
        why); None without PIPELINING, where it could not go. Its SIZE needs
        its bytes now: made ahead already but for a connection's first
        letters (_make_ahead makes the one after it)."""
        if not pipelines(client):
            return None
        try:
            data = self._made(following) if offers_size(client) else None
            return self._envelope(client, following, data, utf8=utf8)
        except Exception:
            return None

    def _afresh(self, letter: Letter, progress: Progress, following: Letter | None, *, early: bool = False) -> bool:
        """The connection was gone at the start of `letter`, after the
        server had accepted a letter on it: a server that takes one (or a
        few) letters a connection, or hangs up instead of waiting for QUIT
        (or one that said so: _capped). Nothing of this letter reached it:
        it goes over a new connection, once (a loss before any letter is
        accepted there rests the server). `early` was decided for the old
        connection; _send_one holds it to the new one's LIMITS MAILMAX,
        which may be lower (a server pool whose machines say different
        things)."""
        if not self._reconnect():
            self._give_back([letter])  # the server rests, or the chain waits (_connect)
            return False
        return self._send_one(self.client, letter, progress, following, early=early)

    def _capped(
        self, letter: Letter, progress: Progress, following: Letter | None, refusal: Refusal, *, early: bool
    ) -> bool:
        """The server takes so many letters a connection (Exim's
        smtp_accept_max_per_connection) and `letter` was one too many: this
        connection ends and the letter goes over a new one at once, as the
        first there, no attempt counted and the server not resting; a
        server capping at N gets N letters a connection. Said again to that
        first letter, it is no cap but a refusal (its judgement then rests
        the server): the batch never reconnects for ever. Only a letter
        refused before its 354 (at MAIL, where servers say it, at RCPT, or
        to the DATA command, where some count letters): nothing of it was
        read, and it counts once, over the new connection. One refused
        after its body counted against the limit, and its room in this
        batch is spent (it is judged as any other refusal)."""
        log.info("server %s takes %s letters a connection: %s", self.server.pk, self.begun_here - 1, refusal.reply)
        progress.stage = Stage.MAIL
        return self._afresh(letter, progress, following, early=early)

    def _elsewhere(self, letter: Letter) -> bool:
        """Whether a server of the mailing other than this one, and than
        those that could not carry the letter before, may still send it
        (rests.able, asked once a batch: a batch of international
        recipients on a server without SMTPUTF8 asks it once, not for
        each of them)."""
        if self.able is None:
            self.able = rests.able(self.mailing)
        return bool(self.able - passed_by(letter.passed_over) - {self.server.pk})

    def _wire(self, letter: Letter) -> bytes:
        """The letter's bytes: made ahead, or now. A letter that could not
        be made ahead raises its error now, in its own turn."""
        try:
            return self._made(letter)
        finally:
            self.made = [entry for entry in self.made if entry[0] is not letter]

    def _made(self, letter: Letter) -> bytes:
        """The letter's bytes, kept for its turn: made ahead, or now."""
        made = next((made for made_for, made in self.made if made_for is letter), None)
        if made is None:
            made = self._make(letter)
        if isinstance(made, Exception):
            raise made
        return made

    def _make(self, letter: Letter) -> bytes | Exception:
        try:
            made: bytes | Exception = self.builder.wire(letter)
        except Exception as exc:  # the letter's own turn reports it
            made = exc
        # Kept until its turn; those of letters the batch gave back are
        # dropped with the oldest.
        self.made = [*self.made[-2:], (letter, made)]
        return made

    def _make_ahead(self, following: Letter) -> None:
        """Make the next letter not yet made while the server takes the one
        before it (its reply to the final dot is on the way): the making
        leaves the chain of waits each letter goes through, where it took
        70 µs of 1.1 ms. `following` when its bytes are not made yet; the
        letter after it when they are (the server offers SIZE, and its
        envelope, going with this final dot, needed them). It needs no
        database and sends nothing: a letter the batch does not reach after
        all only cost its making."""
        made = [made_for for made_for, _ in self.made]
        after = self.position + 2
        for letter in (following, self.letters[after] if after < len(self.letters) else None):
            if letter is not None and not any(letter is made_for for made_for in made):
                self._make(letter)
                return

    def _lost(self, letter: Letter, progress: Progress, exc: BaseException) -> None:
        reason = f"{CONNECTION_LOST}{exc or 'no reason'}"
        if progress.stage == Stage.MAIL:
            self._give_back([letter])  # the connection was gone before this letter began
        elif progress.stage == Stage.DOT and letter.last_reply.startswith(UNSURE_NOTE):
            # The second time: it may well have been delivered twice already.
            self._record(letter, partial(fail, letter, NOT_AGAIN_NOTE + UNSURE_NOTE + reason))
        elif progress.stage == Stage.DOT:
            # The final dot went: it may or may not have been accepted.
            # Retry it later, once, rather than lose it.
            self._record(letter, partial(defer, letter, UNSURE_NOTE + reason, now=self.clock()))
        elif letter.last_reply.startswith(LOST_NOTE):
            # Before the dot nothing can be accepted, so the first such loss
            # costs nothing; a letter that loses the connection every time
            # counts from the second time, or it would come first for ever.
            self._record(letter, partial(defer, letter, LOST_NOTE + reason, now=self.clock()))
        else:
            self._give_back([letter], reply=LOST_NOTE + reason)
        rests.server_failed(self.server, exc, now=self.clock())

    def _refused(self, letter: Letter, verdict: Verdict, stage: Stage) -> bool:
        kind, server, tenant = verdict.kind, self.server, self.mailing.tenant
        self.refused_in_a_row += 1
        if kind in (Kind.BAD_ADDRESS, Kind.REFUSED, Kind.CONTENT):
            self._end_of_streak()
            write = fail_and_suppress if kind == Kind.BAD_ADDRESS else fail
            self._record(letter, partial(write, letter, kept_reply(verdict, stage)))
            if kind != Kind.CONTENT:
                return True
            self.content_strikes += 1
            if self.content_strikes < CONTENT_STRIKES:
                return True
            if SPAM_WORDS.search(verdict.reply):
                rests.refused_as_spam(server, tenant, verdict, now=self.clock())
            else:
                rests.refusing(server, tenant, verdict, now=self.clock())
            return False
        if kind == Kind.TEMPORARY:
            self.temporary_in_a_row, self.last_temporary = self.temporary_in_a_row + 1, verdict
            if letter.attempts or letter.last_reply.startswith(STORM_NOTE):
                # Refused again on a retry: it counts (greylisting that
                # lasts is the recipient's own refusal)...
                self._record(letter, partial(defer, letter, verdict.reply, now=self.clock()))
            else:
                self.held.append((letter, verdict.reply))
            # ... but retries refused in a row with the others are the
            # server's state as well: a wave of due retries must not burn
            # an attempt each against a server that refuses everyone.
            if self.temporary_in_a_row < STORM:
                return True
            self._storm(verdict)
            return False
        if kind in (Kind.RATE_LIMIT, Kind.SERVER_BUSY) and self._one_too_many(verdict):
            self._give_back([letter, *self._take_held()], reply=verdict.reply)
            self.outcome.turned_away = True
            return False
        # The server refuses everyone for now: this letter and the ones
        # refused just before it go back uncounted, to this server later or
        # the next one at once.
        self._give_back([letter, *self._take_held()], reply=verdict.reply)
        if kind == Kind.RATE_LIMIT:
            rests.rest_server(server, rests.RestReason.RATE_LIMIT, verdict.reply, now=self.clock(), wait=verdict.wait)
        elif kind == Kind.SERVER_BUSY:
            rests.rest_server(server, rests.RestReason.CONNECTION, verdict.reply, now=self.clock())
        elif kind == Kind.SENDER_REFUSED:
            refused = smtplib.SMTPSenderRefused(verdict.code, verdict.words, server.sender_email)
            rests.server_failed(server, refused, now=self.clock(), disable=True)
        elif not server.is_platform:
            refused = smtplib.SMTPResponseException(verdict.code, verdict.words)
            rests.server_failed(server, refused, now=self.clock(), disable=True)
        else:  # a blacklisting seen on this tenant's letters to a platform server
            rests.rest_tenant(server, tenant, rests.RestReason.REFUSALS, verdict.reply, now=self.clock(), block=True)
        return False

    def _storm(self, verdict: Verdict) -> None:
        self.temporary_in_a_row = 0
        self._give_back(self._take_held(), reply=STORM_NOTE + verdict.reply)
        rests.refusing(self.server, self.mailing.tenant, verdict, now=self.clock())

    def _end_of_streak(self, *, batch_over: bool = False) -> None:
        """Temporary refusals followed by anything else were the recipients'
        own (greylisting, a full mailbox): those letters are deferred and
        count an attempt. A batch of nothing but such refusals is a storm."""
        if batch_over and self.temporary_in_a_row == self.outcome.tried >= 2:
            self._storm(self.last_temporary)
            return
        held, self.held = self.held, []
        self.temporary_in_a_row = 0
        for letter, reply in held:
            self._record(letter, partial(defer, letter, reply, now=self.clock()))

    def _take_held(self) -> list[Letter]:
        held, self.held = [letter for letter, _ in self.held], []
        return held

    def _accepted(self) -> None:
        self.refused_in_a_row = 0
        self.accepted_here += 1
        self._end_of_streak()
        self.content_strikes = 0
        self.accepted += 1
        if self.accepted == 1:
            rests.accepted_again(self.server, self.mailing.tenant)

    def _record(self, letter: Letter, write: Callable[[], object]) -> None:
        self.done.add(letter.pk)
        self.recorder.record(write)

    def _give_back(self, letters: list[Letter], *, reply: str = "", quietly: bool = False) -> None:
        try:
            requeue(letters, reply=reply)
        except Exception:
            if not quietly:
                raise
            log.exception("letters could not be given back; their lease returns them")
        self.done.update(letter.pk for letter in letters)

    def _may_still_send(self, remaining: int) -> int | None:
        """How many more letters this batch may hand over: None for all of
        them, 0 to stop now (the rest goes back to the queue)."""
        fresh = rests.server_if_may_go_on(self.mailing, self.server, self.clock())
        if fresh is None:
            return 0
        if not limits.counted(fresh):
            return None  # no window to read: at 50 ms a letter, every batch checks once
        usage = limits.window_usage([fresh], self.mailing.tenant, self.clock())[fresh.pk]
        # The windows count every letter this batch claimed; only those that
        # reached DATA are really used.
        room = usage.room_beyond(len(self.letters) - self.outcome.handed)
        return None if room is None else max(0, min(remaining, room))


# Where a batch's reports and replies go: the tenant's mailboxes, before
# every batch, in plain SQL (mailing.dispatch.rows) and only the columns a
# route needs (the others cost more to load than the query itself).
_MAILBOXES = Rows(BounceMailbox, "b", only=("server_id", "enabled", "email", "login", "plus_addressing"))
_MAILBOXES_SQL = (
    f"SELECT {_MAILBOXES.columns} FROM {BounceMailbox._meta.db_table} b "  # noqa: S608 (names only)
    f"WHERE b.{BounceMailbox._meta.get_field('tenant').column} = %s"
)


def _mailboxes(tenant_id: int) -> list[BounceMailbox]:
    with statements.cursor() as cursor:
        cursor.execute(_MAILBOXES_SQL, [tenant_id])
        return [_MAILBOXES.load(row) for row in cursor.fetchall()]


def _close(client: PinnedSMTPClient) -> None:
    """QUIT within the usual bound: open_smtp hands the client back with no
    deadline, and a server dribbling "221-" lines would hold the batch (and
    its slot) for as long as it likes."""
    try:
        client.deadline_in(settings.DISPATCH_SMTP_TIMEOUT)
        client.quit()
    except Exception:
        client.close()


def release_session() -> None:
    """With a pool (the dispatch worker: many conversations a process), the
    thread's database session goes back to it while the conversation waits
    on the network: sessions are bounded by the pool, not by the number of
    conversations. Without one, the session stays (one a process).

    Called before every letter, and the session is mostly already back:
    one thread-local look-up (each of `connection`'s costs one), and no
    close() without a session."""
    session = connections[DEFAULT_DB_ALIAS]
    if session.connection is not None and session.settings_dict["OPTIONS"].get("pool") and not session.in_atomic_block:
        session.close()


def unsendable_reply(exc: UnsendableAddress | TooBig) -> str:
    """What a letter this server cannot carry keeps: an address it cannot
    take, or a size above the one it announces (it would be refused after
    its body)."""
    if isinstance(exc, TooBig):
        return too_big_reply(exc.size, exc.limit)
    return str(exc)
