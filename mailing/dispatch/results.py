"""What becomes of one letter: sent, failed, deferred for a retry, or given
back to the queue untouched. Every write is conditional on the claim token,
so a letter whose lease ran out and was taken again is not touched."""

from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Case, F, Value, When
from django.utils import timezone
from django.utils.translation import gettext as _

from config import metrics, statements

from ..contacts import suppression_add
from ..models import Letter, Suppression
from .claims import passing_over

L = Letter.Status

CLAIM_FIELD = Letter._meta.get_field("claim_token")
RECORD_SENT = (
    "UPDATE mailing_letter SET status = %s, sent_at = %s, attempts = attempts + 1, last_reply = %s, "
    "claim_token = NULL, lease_until = NULL WHERE id = %s AND claim_token = %s"
)
# The same for one letter committed alone, sent through libpq as it is
# (config.statements.execute_alone): the values as text.
RECORD_ONE_SENT = statements.numbered(RECORD_SENT)
# The same for a group of letters sent, committed by itself: one statement
# over arrays, one round trip, where a transaction round the rows of
# RECORD_SENT cost a BEGIN and a COMMIT round trip more and their client
# work. The text never changes with the group's size: prepared once a
# session (config.statements).
RECORD_SENT_TOGETHER = (
    "UPDATE mailing_letter AS l SET status = %s, sent_at = r.at, attempts = l.attempts + 1, last_reply = r.reply, "
    "claim_token = NULL, lease_until = NULL "
    "FROM unnest(%s::bigint[], %s::uuid[], %s::timestamptz[], %s::text[]) AS r(id, token, at, reply) "
    "WHERE l.id = r.id AND l.claim_token = r.token"
)
# With DISPATCH_DURABLE_RESULTS=0, a statement committed by itself does not
# wait for the disk: set_config(..., true) is SET LOCAL for the statement's
# own transaction, and PostgreSQL reads synchronous_commit as it commits it.
# One round trip, where a transaction round a SET LOCAL took four and made
# the quick mode slower than the durable one (759 against 872 letters/s,
# 809 against 536 µs of the worker's CPU a letter).
QUICK = "(SELECT set_config('synchronous_commit', 'off', true)) AS quick"
RECORD_ONE_SENT_QUICK = RECORD_ONE_SENT.replace(" WHERE ", f" FROM {QUICK} WHERE ", 1)
RECORD_SENT_TOGETHER_QUICK = RECORD_SENT_TOGETHER.replace(" WHERE ", f", {QUICK} WHERE ", 1)


@dataclass(frozen=True)
class Sent:
    """The hot path, once per letter: a row of one prepared-shape statement
    rather than the ORM's query building, so that the writer sends the
    rows of a whole group in one round trip (executemany). `at` is when the
    server said 250, not when the batch began."""

    letter: Letter
    at: datetime
    reply: str = "250 accepted"

    def params(self, session: BaseDatabaseWrapper) -> list[object]:
        token = CLAIM_FIELD.get_db_prep_value(self.letter.claim_token, session)
        return [L.SENT, self.at, self.reply[:1000], self.letter.pk, token]

    def __call__(self) -> None:
        record_sent([self])

    def alone(self) -> None:
        """Committed by itself (the writer's lone letter): on PostgreSQL
        outside a transaction, one statement straight through libpq."""
        if not statements.alone_possible():
            record_sent([self])
            return
        durable = settings.DISPATCH_DURABLE_RESULTS
        statements.execute_alone(
            "postroute_record_sent" if durable else "postroute_record_sent_quick",
            RECORD_ONE_SENT if durable else RECORD_ONE_SENT_QUICK,
            self.as_text(),
        )
        metrics.letter_result("sent", server_id=self.letter.server_id, reply=self.reply)

    def as_text(self) -> list[str]:
        """RECORD_ONE_SENT's values as libpq takes them, text."""
        letter = self.letter
        return [L.SENT, self.at.isoformat(), self.reply[:1000], str(letter.pk), str(letter.claim_token)]


def record_sent_together(rows: list[Sent]) -> None:
    """Letters sent, committed together by themselves (the writer's group
    of only such results): one statement outside a transaction on
    PostgreSQL; elsewhere the rows in a transaction."""
    if not statements.alone_possible():
        with transaction.atomic():
            record_sent(rows)
        return
    with statements.cursor() as cursor:
        cursor.execute(
            RECORD_SENT_TOGETHER if settings.DISPATCH_DURABLE_RESULTS else RECORD_SENT_TOGETHER_QUICK,
            [
                L.SENT,
                [row.letter.pk for row in rows],
                [row.letter.claim_token for row in rows],
                [row.at for row in rows],
                [row.reply[:1000] for row in rows],
            ],
        )
    for row in rows:
        metrics.letter_result("sent", server_id=row.letter.server_id, reply=row.reply)


def record_sent(rows: list[Sent]) -> None:
    # The thread's session, looked up once rather than through
    # `connection` (a thread-local look-up an attribute) for every row.
    session = connections[DEFAULT_DB_ALIAS]
    with statements.cursor() as cursor:
        if len(rows) == 1:
            cursor.execute(RECORD_SENT, rows[0].params(session))
        else:
            cursor.executemany(RECORD_SENT, [row.params(session) for row in rows])
    for row in rows:
        metrics.letter_result("sent", server_id=row.letter.server_id, reply=row.reply)


def fail(letter: Letter, reply: str, *, attempt: bool = True) -> None:
    _finish(letter, status=L.FAILED, attempts=letter.attempts + attempt, last_reply=reply[:1000])
    metrics.letter_result("failed", server_id=letter.server_id, reply=reply)


def fail_and_suppress(letter: Letter, reply: str) -> None:
    """A permanent refusal of the address itself (5.1.x at RCPT): the same
    as a hard bounce, so the next mailing does not try it again."""
    fail(letter, reply)
    with suppress(ValidationError):  # an address we sent to, but no longer valid syntax
        suppression_add(
            tenant=letter.tenant, email=letter.email, reason=Suppression.Reason.HARD_BOUNCE, note=f"Refused: {reply}"
        )


def retry_delays(attempts: int) -> timedelta:
    """The wait after the `attempts`-th temporary failure."""
    base, cap = settings.DISPATCH_RETRY_BASE, settings.DISPATCH_RETRY_MAX
    return timedelta(seconds=min(base * 2 ** (attempts - 1), cap))


def gives_up(attempts: int) -> bool:
    """A letter fails after DISPATCH_MAX_ATTEMPTS temporary failures, but
    never before its retries have spanned DISPATCH_RETRY_MAX: a receiver
    that greylists or a mailbox full for an hour still gets the letter."""
    if attempts < settings.DISPATCH_MAX_ATTEMPTS:
        return False
    waited = sum((retry_delays(n) for n in range(1, attempts)), timedelta())
    return waited >= timedelta(seconds=settings.DISPATCH_RETRY_MAX)


def defer(letter: Letter, reply: str, *, now: datetime) -> None:
    """A temporary failure of this letter: retry with exponential backoff;
    after the last attempt the letter fails with the last reply."""
    attempts = letter.attempts + 1
    metrics.letter_result("failed" if gives_up(attempts) else "deferred", server_id=letter.server_id, reply=reply)
    if gives_up(attempts):
        _finish(letter, status=L.FAILED, attempts=attempts, last_reply=reply[:1000])
        return
    _finish(
        letter,
        status=L.DEFERRED,
        attempts=attempts,
        last_reply=reply[:1000],
        next_attempt_at=now + retry_delays(attempts),
    )


def requeue(letters: list[Letter], *, reply: str = "") -> None:
    """Give letters that were not refused for their own sake back to the
    queue, uncounted: they go at once, to this server or the next."""
    for letter in letters:
        metrics.letter_result("requeued", server_id=letter.server_id)
        fields = {"status": pending_status(letter), "server": None}
        if reply:
            fields["last_reply"] = reply[:1000]
        _finish(letter, **fields)


def pass_over(letter: Letter, server_id: int, reply: str) -> None:
    """The server cannot carry the letter (its recipient's mailbox needs
    SMTPUTF8, or it is above the size the server announces) and another of
    its mailing's servers may: back to the queue, uncounted, with why, the
    server noted so that its claims skip it (claims.CARRIES)."""
    metrics.letter_result("requeued", server_id=letter.server_id)
    passed = passing_over(letter.passed_over, server_id)
    _finish(letter, status=pending_status(letter), server=None, last_reply=reply[:1000], passed_over=passed)


def pending_status(letter: Letter) -> str:
    return L.DEFERRED if letter.attempts else L.QUEUED


def _finish(letter: Letter, **fields: object) -> None:
    Letter.objects.filter(pk=letter.pk, claim_token=letter.claim_token).update(
        claim_token=None, lease_until=None, **fields
    )


def requeue_expired_leases(*, now: datetime | None = None) -> int:
    """Letters a dead worker had claimed go back to the queue. Their room in
    the limits stays counted: they may have reached DATA. The first letter
    of each expired claim still *sending* is the one the worker was on when
    it died (earlier ones are recorded): it counts an attempt, so a letter
    that kills every worker that sends it fails after the last attempt
    instead of going round for ever; the others go back uncounted.

    A batch's next letters share its token (mailing.dispatch.ahead) with a
    lease that ends a moment later: once one of a claim's letters has
    expired, the batch is over (it ends long before a lease), and all of
    them go back together, or a later sweep would count an attempt for the
    first of letters the worker never began. The one it was on is the
    first of the earliest claimed letters still sending, whatever the ids
    of the next ones (due retries, letters given back by another chain)."""
    now = now or timezone.now()
    dead = Letter.objects.filter(status=L.SENDING, lease_until__lt=now).values("claim_token")
    expired = Letter.objects.filter(status=L.SENDING, claim_token__in=dead)
    first: dict[object, int] = {}
    for token, pk in expired.order_by("lease_until", "pk").values_list("claim_token", "pk"):
        first.setdefault(token, pk)
    culprits = list(first.values())
    for letter in Letter.objects.filter(pk__in=culprits, status=L.SENDING):
        if gives_up(letter.attempts + 1):
            reply = _("Sending this letter stopped the worker every time; it was given up.")
            _finish(letter, status=L.FAILED, attempts=letter.attempts + 1, last_reply=reply, server=None)
        else:
            _finish(letter, status=L.DEFERRED, attempts=F("attempts") + 1, server=None, next_attempt_at=None)
    tried = Case(When(attempts__gt=0, then=Value(L.DEFERRED)), default=Value(L.QUEUED))
    rest = expired.update(status=tried, claim_token=None, lease_until=None, server=None)
    return rest + len(culprits)
