"""Running a mailing: one batch per call through the first server that may
send, then deciding what the mailing does when none could: finished,
waiting until a known moment, or unable to send until someone acts."""

import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import NamedTuple

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import Tenant
from config import statements
from servers.models import SmtpServer, TenantRest

from .. import limits
from ..mailings import transition
from ..models import Letter, Mailing, MailingServer
from . import rests
from .batch import only_paced, send_batch
from .claims import CARRIES, DUE_LETTERS, PENDING, PENDING_IN, passed_over_by
from .rows import Rows

L = Letter.Status
M = Mailing.Status
W = Mailing.WaitReason


def run_mailing(*, mailing_id: int, now: datetime | None = None) -> str:
    """One batch. Returns "more" (run again at once: letters are left to
    claim), "busy" (the server
    to use has room but every connection slot is taken: try again in a
    moment), "paced" (the server to use has spent only its max per minute:
    try again next minute), "crowded" (the server refused this chain's
    connection while others talk to it: try again in a while), "waiting",
    "blocked", "done" or "idle"."""
    mailing = _mailing(mailing_id)
    if mailing is None or not mailing.tenant.is_active:
        return "idle"
    now = now or timezone.now()
    if mailing.status in (M.WAITING, M.BLOCKED):
        due = mailing.status == M.WAITING and (mailing.resume_at is None or mailing.resume_at <= now)
        if not due and not wakeable(mailing, now):
            # Another chain may have decided to wait while this one held the
            # room for the last letters: the chain that sent them finishes.
            if not any(_left(mailing, now)):
                _move(mailing, "complete", finished_at=now)
                return "done"
            return "waiting" if mailing.status == M.WAITING else "blocked"
        if not _move(mailing, "wake", resume_at=None):
            return "idle"
    if mailing.status != M.ACTIVE:
        return "idle"
    unclaimed = False
    for server in rests.usable_servers(mailing, now):
        started = time.monotonic()
        outcome = send_batch(mailing, server, now=now)
        # A batch may have lasted minutes (a slow server): what is left is
        # counted, and the mailing's wait decided, as of its end.
        now += timedelta(seconds=time.monotonic() - started)
        if outcome.turned_away:
            # This connection was one too many beside others going on: the
            # chain tries again later, neither through the next server nor
            # resting this one (nor at once: it would be refused again).
            return "crowded"
        if outcome.tried:
            # Nothing left to claim: the chain settles now (the chain that
            # sends the last letters finishes the mailing) rather than in a
            # task of its own that would find nothing to send.
            left = _left(mailing, now)
            return "more" if left.due else _settle(mailing, now, left)
        if outcome.busy and limits.next_room_at(server, mailing.tenant, now) is None:
            # The first server with room is busy: wait for its slot rather
            # than send through the next one, with another From.
            return "busy"
        if outcome.paced or (outcome.busy and only_paced(server, mailing, now)):
            # Busy or not, a server whose minute only is spent is paced.
            return "paced"
        unclaimed = unclaimed or outcome.unclaimed
    if unclaimed and rests.fail_stranded(mailing):
        # Letters every server that may still send had passed over: failed,
        # rather than due for ever with none of them claiming them.
        return "more"
    return _settle(mailing, now, _left(mailing, now))


_MAILINGS, _TENANTS = Rows(Mailing, "m"), Rows(Tenant, "t")
# Before every batch, and plain SQL for it (mailing.dispatch.rows).
_MAILING_SQL = (
    f"SELECT {_MAILINGS.columns}, {_TENANTS.columns} FROM {Mailing._meta.db_table} m "  # noqa: S608 (names only)
    f"JOIN {Tenant._meta.db_table} t ON t.id = m.{Mailing._meta.get_field('tenant').column} WHERE m.id = %s"
)


def _mailing(mailing_id: int) -> Mailing | None:
    """The mailing with its tenant, as select_related() would give it."""
    with statements.cursor() as cursor:
        cursor.execute(_MAILING_SQL, [mailing_id])
        row = cursor.fetchone()
    if row is None:
        return None
    mailing = _MAILINGS.load(row)
    mailing.tenant = _TENANTS.load(row, _MAILINGS.width)
    return mailing


class Left(NamedTuple):
    due: bool  # letters that may be claimed now (queued, or deferred and due)
    pending: bool  # letters waiting to be sent (queued or deferred)
    sending: bool  # letters some chain is sending


# Asked after every batch and at the end of every chain: one statement, one
# snapshot, where the ORM asked up to three exists(), whose compiling cost
# more CPU than PostgreSQL spent on them.
_LEFT_SQL = f"""
    SELECT
        EXISTS ({DUE_LETTERS}),
        EXISTS (SELECT 1 FROM mailing_letter WHERE mailing_id = %s AND status IN ({PENDING_IN})),
        EXISTS (SELECT 1 FROM mailing_letter WHERE mailing_id = %s AND status = %s)
"""  # noqa: S608 (placeholders only)


def _left(mailing: Mailing, now: datetime) -> Left:
    due = [mailing.pk, *PENDING, connection.ops.adapt_datetimefield_value(now)]
    with statements.cursor() as cursor:
        cursor.execute(_LEFT_SQL, [*due, mailing.pk, *PENDING, mailing.pk, L.SENDING])
        return Left(*(bool(value) for value in cursor.fetchone()))


# Asked of waiting mailings every tick.
def _claimable(mailing: Mailing, now: datetime, servers: Sequence[SmtpServer] = ()) -> bool:
    """A letter is due; with `servers`, one that one of them may claim (not
    one that every one of them passed over, claims.CARRIES)."""
    carries = " OR ".join([CARRIES] * len(servers))
    sql = f"SELECT EXISTS ({DUE_LETTERS} AND ({carries}))" if servers else f"SELECT EXISTS ({DUE_LETTERS})"
    params = [mailing.pk, *PENDING, connection.ops.adapt_datetimefield_value(now)]
    with statements.cursor() as cursor:
        cursor.execute(sql, [*params, *(passed_over_by(server.pk) for server in servers)])
        return bool(cursor.fetchone()[0])


def wakeable(mailing: Mailing, now: datetime) -> bool:
    """A waiting or blocked mailing may send now: one of its servers became
    usable with room (its health back, enabled, a limit raised, a new
    server added) and a letter is due that it may claim (a letter it
    passed over waits for another server). Checked every tick, so fixing a
    server wakes the mailing within one tick."""
    servers = rests.usable_servers(mailing, now)
    if not servers or not _claimable(mailing, now):
        return False
    usage = limits.window_usage(servers, mailing.tenant, now)
    with_room = [s for s in servers if usage[s.pk].left != 0]
    if not with_room:
        return False
    # Due letters none of them may claim wake it only where one fails for
    # want of a server that can carry it (run_mailing: fail_stranded).
    return _claimable(mailing, now, with_room) or rests.stranded(mailing).exists()


def _settle(mailing: Mailing, now: datetime, left: Left) -> str:
    """Nothing (more) to send now: finished, waiting, blocked, or others
    are busy."""
    pending, sending = left.pending, left.sending
    if not pending and not sending:
        _move(mailing, "complete", finished_at=now)
        return "done"
    if sending and not pending:
        return "idle"
    resume = resume_time(mailing, now)
    if resume is None:
        _move(mailing, "block", resume_at=None)
        return "blocked"
    _move(mailing, "wait", resume_at=resume.at, wait_reason=resume.reason)
    return "waiting"


class Resume(NamedTuple):
    at: datetime
    reason: str  # Mailing.WaitReason


def resume_time(mailing: Mailing, now: datetime) -> Resume | None:
    """The earliest moment a letter may go, and why then: a server's window
    frees room (limits), a resting server wakes or a tenant's rest ends
    (rest), or a deferred letter becomes due (retry). None when no server
    can send without someone's action (failing, disabled, blocked, a limit
    of 0): the mailing cannot send."""
    # Not those it goes on without (passed over): they send none of it.
    links = mailing.server_links.select_related("server").filter(passed_over="")
    servers = [link.server for link in links]
    holds = rests.tenant_rests(mailing.tenant_id, [s.pk for s in servers])
    candidates: list[Resume] = []
    room_now = False
    for server in servers:
        hold = holds.get(server.pk)
        if not server.is_usable or (hold and hold.blocked):
            continue
        if rests.resting(server, now):
            candidates.append(Resume(server.backoff_until, W.REST))
        elif hold and hold.holds(now):
            candidates.append(Resume(hold.until, W.REST))
        elif (room := limits.next_room_at(server, mailing.tenant, now)) is None:
            room_now = True
        elif room != limits.NEVER:
            candidates.append(Resume(room, W.LIMITS))
    if not candidates and not room_now:
        return None
    due = (
        Letter.objects.filter(mailing=mailing, status=L.DEFERRED, next_attempt_at__gt=now)
        .order_by("next_attempt_at")
        .values_list("next_attempt_at", flat=True)
        .first()
    )
    if due:
        candidates.append(Resume(due, W.RETRY))
    if not candidates:
        return Resume(now + timedelta(seconds=settings.DISPATCH_TICK), W.LIMITS)
    return min(candidates, key=lambda resume: resume.at)


def _move(mailing: Mailing, action: str, **fields: object) -> bool:
    try:
        transition(mailing=mailing, action=action, **fields)
    except ValidationError:
        return False  # paused, cancelled or moved by someone else meanwhile
    return True


def active_mailing_ids(*, now: datetime | None = None) -> list[int]:
    """Mailings the scheduler should run now: sending ones, waiting ones
    whose time has come, and waiting or blocked ones a fixed server can
    wake."""
    now = now or timezone.now()
    running = Mailing.objects.filter(tenant__status="active")
    ids = list(
        running.filter(Q(status=M.ACTIVE) | Q(status=M.WAITING, resume_at__lte=now)).values_list("pk", flat=True)
    )
    idle = running.filter(Q(status=M.BLOCKED) | Q(status=M.WAITING, resume_at__gt=now)).select_related("tenant")
    return ids + [m.pk for m in idle if wakeable(m, now)]


def blocked_reasons(mailing: Mailing, now: datetime) -> list[tuple[SmtpServer, str, str]]:
    """For a mailing that cannot send: each server, why it cannot, and what
    to do about it."""
    links = list(mailing.server_links.select_related("server").order_by("position"))
    servers = [link.server for link in links]
    holds = rests.tenant_rests(mailing.tenant_id, [s.pk for s in servers])
    usage = limits.window_usage(servers, mailing.tenant, now)
    return [(link.server, *_reason(link, holds.get(link.server_id), usage[link.server_id])) for link in links]


def _reason(link: MailingServer, hold: TenantRest | None, usage: limits.Usage) -> tuple[str, str]:
    server = link.server
    if link.passed_over:  # the mailing's own address, which this server cannot carry: said in full
        return link.passed_over_note, ""
    if not server.enabled:
        return _("disabled"), _("Enable it on the Servers page.")
    if not server.is_usable:
        return _("failing: %(error)s") % {"error": server.health_message}, server.health_fix or _(
            "Fix the settings and run Test connection."
        )
    if hold and hold.blocked:
        return _("blocked for your letters by the platform: %(reply)s") % {"reply": hold.reply}, _(
            "Contact support; staff have been told."
        )
    if usage.resume_at == limits.NEVER:
        return _("a limit of 0"), _("Raise the server's limits (or ask staff for a quota).")
    return _("can send"), ""
