"""Claiming a mailing's letters: which are due, how many a chain takes
(its share of what is left), and the claim itself, one statement that
chooses, locks and marks them with the batch's token."""

import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q

from config import statements
from servers.models import SmtpServer

from ..models import PENDING_LETTERS, Letter, Mailing
from .rows import Rows

L = Letter.Status
PENDING = PENDING_LETTERS
PENDING_IN = ", ".join(["%s"] * len(PENDING))  # their placeholders in plain SQL's "status IN (...)"
# A pending letter may go now: never tried, or its retry time has come.
# The claim, a chain's share and a mailing's "letters left" ask the same.
DUE = "(next_attempt_at IS NULL OR next_attempt_at <= %s)"
# A server claims no letter it cannot carry (Letter.passed_over): the
# pattern of its id, passed_over_by().
CARRIES = "passed_over NOT LIKE %s"
LEASE = timedelta(minutes=10)


def claim(
    mailing: Mailing, server: SmtpServer, count: int, *, now: datetime, token: uuid.UUID | None = None
) -> list[Letter]:
    """Queued letters first, then deferred ones that are due, oldest first:
    a letter that keeps failing cannot hold up the rest of the mailing. One
    query per status, each reading the (mailing, status, id) index in
    order, so a claim reads about `count` rows however long the mailing.
    A batch's next letters take its token (`token`): a dead worker's claim
    counts an attempt for its first letter still sending, the one it was on
    (results.requeue_expired_leases), not for the first of letters it had
    not begun."""
    token = token or uuid.uuid4()
    if connection.vendor == "postgresql":
        letters: list[Letter] = []
        for status in PENDING:
            if len(letters) < count:
                letters += _claim_rows(mailing, server, status, count - len(letters), token=token, now=now)
        return sorted(letters, key=lambda letter: letter.pk)
    due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    pending = Letter.objects.filter(mailing=mailing).filter(due).exclude(passed_over__contains=passed_mark(server.pk))
    pending = pending.order_by("pk")
    with transaction.atomic():
        ids: list[int] = []
        for status in PENDING:
            if len(ids) < count:
                ids += pending.filter(status=status).values_list("pk", flat=True)[: count - len(ids)]
        # The status condition makes the claim safe without row locks
        # (SQLite in development): only one token wins a row.
        Letter.objects.filter(pk__in=ids, status__in=PENDING).update(
            status=L.SENDING, claim_token=token, lease_until=now + LEASE, server=server
        )
    return list(Letter.objects.filter(pk__in=ids, claim_token=token).order_by("pk"))


_LETTERS = Rows(Letter, "mailing_letter")
# One statement, committed by itself: the rows are chosen and locked (a row
# another claim holds is skipped, never waited for nor taken twice),
# updated and returned in one round trip, where the ORM needed a
# transaction, a select, an update and a select again. Materialized: the
# choice is made once whatever the plan (as `id IN (SELECT ... LIMIT n FOR
# UPDATE SKIP LOCKED)`, PostgreSQL returned more than n rows in a test).
_CLAIM_SQL = f"""
    WITH chosen AS MATERIALIZED (
        SELECT id FROM mailing_letter
        WHERE mailing_id = %s AND status = %s AND {DUE} AND {CARRIES}
        ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED
    )
    UPDATE mailing_letter SET status = %s, claim_token = %s, lease_until = %s, server_id = %s
    FROM chosen WHERE mailing_letter.id = chosen.id AND mailing_letter.status = %s
    RETURNING {_LETTERS.columns}
"""  # noqa: S608 (no value in the text: the model's column names)


def _claim_rows(
    mailing: Mailing, server: SmtpServer, status: str, count: int, *, token: uuid.UUID, now: datetime
) -> list[Letter]:
    params = [
        mailing.pk,
        status,
        now,
        passed_over_by(server.pk),
        count,
        L.SENDING,
        token,
        now + LEASE,
        server.pk,
        status,
    ]
    with statements.cursor() as cursor:
        cursor.execute(_CLAIM_SQL, params)
        return [_LETTERS.load(row) for row in cursor.fetchall()]


# Letter.passed_over, the servers that cannot carry a letter: ",12,34,".
def passed_mark(server_id: int) -> str:
    """What a letter's passed_over holds where the server cannot carry it."""
    return f",{server_id},"


def passed_over_by(server_id: int) -> str:
    """The LIKE pattern of a letter the server cannot carry."""
    return f"%{passed_mark(server_id)}%"


def passed_by(passed_over: str) -> set[int]:
    """The servers a letter's passed_over names."""
    return {int(pk) for pk in passed_over.split(",") if pk}


def passing_over(passed_over: str, server_id: int) -> str:
    """A letter's passed_over once the server cannot carry it either."""
    return f"{passed_over or ','}{server_id},"


# A conversation is worth opening for this many letters at least. One
# costs the box about what 20 letters cost: a Celery task (about 2 ms of
# the worker's CPU, and 0.8 ms to queue it), a connection with its greeting
# and EHLO (STARTTLS and AUTH on a real server), and its batch's statements
# (the slot, the share, the reservation, the claim, the settling). A second
# conversation for fewer letters gives one small mailing a second or two at
# a 150 ms round trip, and takes from the box what others' letters need.
SMALLEST_SHARE = 25
# The mailing's letters that may be claimed now: its id, PENDING, now.
DUE_LETTERS = f"SELECT 1 FROM mailing_letter WHERE mailing_id = %s AND status IN ({PENDING_IN}) AND {DUE}"  # noqa: S608
# Those letters counted up to a limit (a million-letter mailing is not
# counted through): the same, then the limit.
DUE_COUNT = f"SELECT count(*) FROM ({DUE_LETTERS} LIMIT %s) AS due"  # noqa: S608 (placeholders only)
# The letters due and the claims in flight, in one statement the ORM would
# take longer to compile than PostgreSQL to run (this runs before every
# batch). The names are the model's (tests pin them).
_SHARE_SQL = f"""
    SELECT ({DUE_COUNT}),
        (SELECT count(DISTINCT claim_token) FROM mailing_letter WHERE mailing_id = %s AND status = %s)
"""  # noqa: S608 (placeholders only)


def share(mailing: Mailing, server: SmtpServer, count: int, *, now: datetime, extending: bool = False) -> int:
    """With fewer letters left than the mailing's idle chains could take at
    once, each takes its share: as many conversations as the server allows
    and the letters fill, SMALLEST_SHARE letters each, get some (the last 60
    go 30 and 30 over two connections, not all 60 over one; the last 20 go over
    one), and the last chain to start takes all that is left. Reserved
    before the claim: room reserved for letters another chain then takes
    would send that chain to the next server. Reads at most count x chains
    index entries, and the claims in flight. `extending`: the caller's own
    claim is in flight (a batch claiming its next letters), not another
    chain's, and with nothing due it wants nothing."""
    chains = min(settings.DISPATCH_CHAINS, server.max_connections)
    if chains <= 1:
        return count
    params = [mailing.pk, *PENDING, connection.ops.adapt_datetimefield_value(now), count * chains]
    with statements.cursor() as cursor:
        cursor.execute(_SHARE_SQL, [*params, mailing.pk, L.SENDING])
        ahead, busy = cursor.fetchone()
    if extending:
        if not ahead:
            return 0  # nothing due: no room to reserve for the next letters
        busy = max(0, busy - 1)
    if ahead == count * chains:
        return count  # enough for every chain
    idle = max(1, min(chains - busy, ahead // SMALLEST_SHARE))
    return min(count, -(-ahead // idle)) or count
