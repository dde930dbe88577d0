"""Which servers may send for a mailing now, and what takes one out.

- *Failing* (health): authentication, blacklisting, a refused sender,
  a sender-side address that needs SMTPUTF8 where the server lacks it,
  broken rules, letter after letter refused as spam. Until the tenant
  tests it again (or staff reset it).
- *Resting* (backoff_until, with rest_reason and the reply): connection
  trouble, a rate limit, a server refusing every letter for now. Ends by
  itself; repeated rests grow longer, and the counter resets on the first
  letter the server accepts. A refusal of one connection (too many at
  once, replies.turned_away) while other conversations talk to the server
  rests nothing: only that chain waits (batch.Batch._turned_away).
- A *tenant rest* on a platform server: what one tenant's letters caused
  there (refusals of its recipients or its content) holds back that
  tenant only, never the server for the others; a blacklisting seen on
  that tenant's letters blocks it until staff clear it in the admin."""

import logging
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils.translation import gettext_noop

from accounts import languages
from accounts.models import Tenant
from config import metrics, statements
from servers import events as server_events
from servers import rules
from servers.errors import SPAM_REFUSED, SPAM_REFUSED_HINT, Diagnosis, diagnose
from servers.models import Health, RestReason, SmtpServer, TenantRest
from servers.wire import Role, SenderNeedsSmtpUtf8, SenderSideRefused
from servers.words import Words, worded

from .. import limits
from ..mailings import note_event, transition
from ..models import PENDING_LETTERS, RUNNING, Letter, Mailing, MailingServer
from .claims import passed_mark
from .replies import MAX_RATE_WAIT, Verdict
from .rows import Rows

log = logging.getLogger(__name__)
L = Letter.Status


def usable_servers(mailing: Mailing, now: datetime) -> list[SmtpServer]:
    """The mailing's servers in its order that may send now: enabled, not
    failing, not resting, not held back for this tenant."""
    with statements.cursor() as cursor:
        cursor.execute(_SERVERS_SQL, [mailing.tenant_id, connection.ops.adapt_datetimefield_value(now), mailing.pk])
        rows = cursor.fetchall()
    servers = [(_SERVERS.load(row), bool(row[-1])) for row in rows]
    return [s for s, held in servers if not held and s.is_usable and not resting(s, now)]


def server_if_may_go_on(mailing: Mailing, server: SmtpServer, now: datetime) -> SmtpServer | None:
    """The server as it is now, if the mailing is still running, its tenant
    not suspended, and the server enabled, healthy, not resting, not held
    back for this tenant and within the rules; else None."""
    # Waiting (another chain found the limits spent) does not stop a batch
    # whose room is already reserved; pausing and cancelling do.
    fresh, held, running = server_now(mailing, server.pk, now)
    if fresh is None or not running or held or not fresh.is_usable or resting(fresh, now):
        return None
    try:
        rules.assert_connectable(fresh)
    except ValidationError:
        return None
    return fresh


def _columns(model: type, **names: str) -> dict[str, str]:
    return {key: connection.ops.quote_name(model._meta.get_field(name).column) for key, name in names.items()}


_SERVERS = Rows(SmtpServer, "s")
_NAMES = {
    "columns": _SERVERS.columns,
    "rests": TenantRest._meta.db_table,
    "links": MailingServer._meta.db_table,
    "servers": SmtpServer._meta.db_table,
    "mailings": Mailing._meta.db_table,
    "tenants": Tenant._meta.db_table,
    **_columns(TenantRest, r_tenant="tenant", r_server="server", blocked="blocked", until="until"),
    **_columns(MailingServer, m_server="server", m_mailing="mailing", position="position", passed="passed_over"),
    **_columns(Mailing, m_tenant="tenant", m_status="status"),
    **_columns(Tenant, t_status="status"),
}
# The tenant's rest on server s that holds it back (not over yet, or a
# block): the tenant's id, now.
_HELD = """
    SELECT 1 FROM {rests} r WHERE r.{r_tenant} = %s AND r.{r_server} = s.id AND (r.{blocked} OR r.{until} > %s)
""".format(**_NAMES)  # noqa: S608 (no value in the text: the models' names)
# Before every batch, and plain SQL for it (mailing.dispatch.rows): the
# servers in the mailing's order, but those it goes on without (passed
# over), each with whether this tenant is held back on it.
_SERVERS_SQL = """
    SELECT {columns}, EXISTS ({held})
    FROM {links} ms JOIN {servers} s ON s.id = ms.{m_server}
    WHERE ms.{m_mailing} = %s AND ms.{passed} = '' ORDER BY ms.{position}, ms.id
""".format(held=_HELD, **_NAMES)  # noqa: S608 (no value in the text: the models' names)
# The check in the middle of a long batch: the server, whether the tenant is
# held back on it, and whether the mailing still runs for an active tenant.
_SERVER_NOW_SQL = """
    SELECT {columns}, EXISTS ({held}), EXISTS (
        SELECT 1 FROM {mailings} m JOIN {tenants} t ON t.id = m.{m_tenant}
        WHERE m.id = %s AND m.{m_status} IN ({running}) AND t.{t_status} = %s
    )
    FROM {servers} s WHERE s.id = %s
""".format(held=_HELD, running=", ".join(["%s"] * len(RUNNING)), **_NAMES)  # noqa: S608 (no value in the text: the models' names)


def server_now(mailing: Mailing, server_id: int, now: datetime) -> tuple[SmtpServer | None, bool, bool]:
    """The server as it is now (None when it is gone), whether the tenant is
    held back on it, and whether the mailing still runs (sending, waiting or
    blocked, its tenant not suspended): in one statement, where the ORM's
    three queries cost a long batch's check 2 ms of CPU."""
    params = [mailing.tenant_id, connection.ops.adapt_datetimefield_value(now), mailing.pk, *RUNNING]
    with statements.cursor() as cursor:
        cursor.execute(_SERVER_NOW_SQL, [*params, Tenant.Status.ACTIVE, server_id])
        row = cursor.fetchone()
    if row is None:
        return None, False, False
    return _SERVERS.load(row), bool(row[-2]), bool(row[-1])


def resting(server: SmtpServer, now: datetime) -> bool:
    return bool(server.backoff_until and server.backoff_until > now)


def tenant_rests(tenant_id: int, server_ids: list[int]) -> dict[int, TenantRest]:
    return {r.server_id: r for r in TenantRest.objects.filter(tenant_id=tenant_id, server_id__in=server_ids)}


def _escalate(base: timedelta, count: int, cap: timedelta) -> timedelta:
    return min(base * 2 ** min(max(count - 1, 0), 30), cap)


@contextmanager
def owners_language(server: SmtpServer) -> Iterator[None]:
    """Why a server fails is stored for its organisation to read later, in
    its language (a worker has none of its own); a platform server's, in
    the platform's."""
    owner = Tenant.objects.filter(pk=server.tenant_id) if server.tenant_id else Tenant.objects.none()
    with languages.of_organisation(owner.values_list("default_language", flat=True).first()):
        yield


def server_failed(server: SmtpServer, exc: BaseException, *, now: datetime, disable: bool = False) -> None:
    """Authentication, blacklisting, a refused sender and broken rules take
    the server out until the tenant tests it again; connection-level
    trouble makes it rest a while."""
    with owners_language(server):
        diagnosis = diagnose(exc, host=server.host, port=server.port, timeout=settings.DISPATCH_SMTP_TIMEOUT)
    if disable or diagnosis.disables_server or diagnosis.category in ("rules", "host_refused"):
        disable_server(server, diagnosis, now=now)
        return
    rest_server(server, RestReason.CONNECTION, diagnosis.message, now=now)


def disable_server(server: SmtpServer, diagnosis: Diagnosis, *, now: datetime) -> None:
    """Out until tested again. Its stored texts are in its owner's language
    (owners_language), its words for every reader (a platform server's)."""
    message, hint = diagnosis.message, diagnosis.hint
    values = {
        "health": Health.FAILING,
        "health_error": message,
        "health_hint": hint,
        "health_words": diagnosis.words_json(),
        "health_checked_at": now,
    }
    # A conditional update first: only the move into failing is an event.
    if SmtpServer.objects.filter(pk=server.pk).exclude(health=Health.FAILING).update(**values):
        server_events.server_failing(server, error=message, hint=hint)
    else:
        SmtpServer.objects.filter(pk=server.pk).update(**values)
    log.warning("server %s is failing: %s", server.pk, message)
    metrics.server_failed()


def rest_server(
    server: SmtpServer, reason: str, reply: str, *, now: datetime, wait: timedelta | None = None
) -> datetime:
    """The server rests as a whole; repeated rests grow longer."""
    failures = min(server.connection_failures + 1, 1000)
    if wait is None:
        base, cap = timedelta(seconds=settings.DISPATCH_RETRY_BASE), timedelta(seconds=settings.DISPATCH_RETRY_MAX)
        wait = _escalate(base, failures, cap)
    else:  # a rate limit: the provider's own window, longer if it insists
        wait = _escalate(wait, failures, max(wait, MAX_RATE_WAIT))
    until = now + wait
    SmtpServer.objects.filter(pk=server.pk).update(
        connection_failures=failures, backoff_until=until, rest_reason=reason, rest_reply=reply[:1000]
    )
    server.connection_failures, server.backoff_until = failures, until
    log.warning("server %s rests until %s (%s): %s", server.pk, until, reason, reply)
    metrics.server_rested(reason)
    return until


def rest_tenant(
    server: SmtpServer, tenant: Tenant, reason: str, reply: str, *, now: datetime, block: bool = False
) -> None:
    """Hold back one tenant's use of a platform server. A block waits for
    staff; a rest grows with each strike."""
    rest, _ = TenantRest.objects.get_or_create(server=server, tenant=tenant, defaults={"reason": reason})
    rest.strikes = min(rest.strikes + 1, 1000)
    base, cap = timedelta(seconds=settings.DISPATCH_RETRY_BASE), timedelta(seconds=settings.DISPATCH_RETRY_MAX)
    rest.until = now + _escalate(base * 5, rest.strikes, cap * 6)
    rest.blocked = rest.blocked or block
    rest.reason, rest.reply, rest.updated_at = reason, reply[:1000], now
    rest.save()
    log.warning("tenant %s %s on platform server %s: %s", tenant.pk, "blocked" if block else "rests", server.pk, reply)


def refusing(server: SmtpServer, tenant: Tenant, verdict: Verdict, *, now: datetime, block: bool = False) -> None:
    """A server that refuses letter after letter (a 4xx storm, repeated
    content refusals, a blacklisting seen at RCPT): a tenant's own server
    rests as a whole (or fails, when blacklisted); on a platform server
    only this tenant is held back."""
    if server.is_platform:
        rest_tenant(server, tenant, RestReason.REFUSALS, verdict.reply, now=now, block=block)
    elif block:
        sentence = gettext_noop("The server refuses mail from this sender or IP (%(reply)s).")
        with owners_language(server):
            diagnosis = Diagnosis("blacklisted", Words(sentence, {"reply": verdict.reply}))
        disable_server(server, diagnosis, now=now)
    else:
        rest_server(server, RestReason.REFUSALS, verdict.reply, now=now)


def refused_as_spam(server: SmtpServer, tenant: Tenant, verdict: Verdict, *, now: datetime) -> None:
    """Letter after letter refused as spam: the provider judges the
    letters (or the account) spam, and every further one would fail as
    well and cost the mailbox its reputation. A tenant's own server stops
    with a hint until the tenant tests it again (a rest would only fail a
    few more letters after each); on a platform server only this tenant
    is held back."""
    if server.is_platform:
        rest_tenant(server, tenant, RestReason.REFUSALS, verdict.reply, now=now)
        return
    with owners_language(server):
        words = Words(Words.of(SPAM_REFUSED).msgid, {"reply": verdict.reply})
        diagnosis = Diagnosis("refused_spam", words, Words.of(SPAM_REFUSED_HINT))
    disable_server(server, diagnosis, now=now)


def sender_needs_smtputf8(server: SmtpServer, tenant: Tenant, exc: SenderSideRefused, *, now: datetime) -> None:
    """A sender-side address (the envelope sender, From, Reply-To) is not
    ASCII and the server does not offer SMTPUTF8 (or its domain cannot go
    as IDNA at all): no letter of this sender can go, and none is the
    recipient's fault. A tenant's own server fails
    with the address named and what to do, as a refused sender does; on a
    platform server only this tenant is held back where its bounce mailbox
    is the cause, its letters waiting: the platform's own sender address
    fails the server. A mailing's own address: mailing_needs_smtputf8."""
    if server.is_platform and exc.address != server.sender_email:
        with languages.of_organisation(tenant.default_language):
            rest_tenant(server, tenant, RestReason.SMTPUTF8, str(exc.words), now=now)
        return
    server_failed(server, exc, now=now, disable=True)


# Whole sentences per role, so that each language words them its own way.
MAILING_PASSES_OVER = {
    Role.SENDER: gettext_noop(
        "Goes on without the server %(server)s: %(address)s, this mailing's sender address, is not ASCII "
        "before the @ and needs SMTPUTF8, which that server lacks."
    ),
    Role.REPLY_TO: gettext_noop(
        "Goes on without the server %(server)s: %(address)s, this mailing's Reply-To address, is not ASCII "
        "before the @ and needs SMTPUTF8, which that server lacks."
    ),
}
# Why a server is passed over, as the pause note gives it for each server.
PASSED_OVER_BECAUSE = {
    Role.SENDER: gettext_noop(
        "%(address)s, this mailing's sender address, is not ASCII before the @ and needs SMTPUTF8, "
        "which the server %(server)s lacks."
    ),
    Role.REPLY_TO: gettext_noop(
        "%(address)s, this mailing's Reply-To address, is not ASCII before the @ and needs SMTPUTF8, "
        "which the server %(server)s lacks."
    ),
}
PAUSED_EVERY_SERVER_PASSED_OVER = gettext_noop("Paused: no server of this mailing can carry it.")
KEEPS_ITS_ADDRESSES = gettext_noop(
    "A started mailing keeps its addresses: cancel it and start a new one with another address or server."
)


def mailing_needs_smtputf8(mailing: Mailing, server: SmtpServer, exc: SenderNeedsSmtpUtf8) -> None:
    """The mailing's own From (substituted) or Reply-To, kept from its
    start, is not ASCII before its @ and the server lacks SMTPUTF8: the
    mailing's problem, not the server's, which stays for the tenant's other
    mailings (a connection test, which reads no mailing, would pass and
    the mailing fail it again). The mailing goes on through its next
    servers without this one (passed over, as its page shows), its letters
    queued; with none left it pauses, naming every server and why. Either
    is said in its history with the address named, kept as words for each
    reader (the text in its organisation's language). A resume tries every
    server again (mailings.transition)."""
    params = {"server": server.name, "address": exc.address}
    passed = Words(MAILING_PASSES_OVER[exc.role], params)
    because = Words(PASSED_OVER_BECAUSE[exc.role], params)
    with languages.of_organisation(mailing.tenant.default_language):
        with transaction.atomic():
            # The mailing's row serialises chains passing over its last
            # servers at once: one of them finds none left and pauses it.
            status = Mailing.objects.select_for_update().filter(pk=mailing.pk).values_list("status", flat=True).first()
            links = MailingServer.objects.filter(mailing=mailing)
            # Another chain's batch through the same server may have passed
            # it over already: said once.
            newly = links.filter(server=server, passed_over="").update(
                passed_over=str(passed)[:PASSED_OVER_LENGTH],
                passed_over_words={"note": passed.to_json(), "reason": because.to_json()},
            )
            going_on = status in RUNNING and links.filter(passed_over="").exists()
            if going_on and newly:
                note_event(mailing_id=mailing.pk, status=status, note=passed)
        if going_on:
            log.warning("mailing %s goes on without server %s: %s", mailing.pk, server.pk, passed)
            return
        paused = [Words(PAUSED_EVERY_SERVER_PASSED_OVER), *_reasons(links), Words(KEEPS_ITS_ADDRESSES)]
        with suppress(ValidationError):  # paused or cancelled meanwhile
            transition(mailing=mailing, action="pause", note=paused)
    log.warning("mailing %s paused: %s", mailing.pk, worded(paused))


def _reasons(links: QuerySet[MailingServer]) -> list[Words]:
    """Why each passed-over server is, in the mailing's order."""
    reasons = []
    for link in links.exclude(passed_over="").order_by("position"):
        words = link.passed_over_words.get("reason") if isinstance(link.passed_over_words, dict) else None
        reasons.append(Words.from_json(words) or Words(link.passed_over, verbatim=True))  # or written before
    return reasons


PASSED_OVER_LENGTH = MailingServer._meta.get_field("passed_over").max_length


def able(mailing: Mailing) -> set[int]:
    """The mailing's servers that may send without anyone's action: enabled
    and not failing, not passed over for the mailing, the tenant not
    blocked there, no limit of 0 (a rest or a spent window is no matter: a
    letter waits for it)."""
    links = MailingServer.objects.filter(mailing_id=mailing.pk, passed_over="")
    blocked = TenantRest.objects.filter(tenant_id=mailing.tenant_id, blocked=True).values("server_id")
    servers = SmtpServer.objects.filter(pk__in=links.values("server_id")).exclude(pk__in=blocked)
    usable = [server for server in servers if server.is_usable]
    usage = limits.window_usage(usable, mailing.tenant)
    return {server.pk for server in usable if usage[server.pk].resume_at != limits.NEVER}


def _passed_over_pending(mailing: Mailing) -> QuerySet[Letter]:
    return Letter.objects.filter(mailing_id=mailing.pk, status__in=PENDING_LETTERS).exclude(passed_over="")


def stranded(mailing: Mailing) -> QuerySet[Letter]:
    """The pending letters every server able to send for the mailing has
    passed over: no wait brings a server that can carry them. Asked of
    the database (a mailing may have passed over many letters)."""
    letters = _passed_over_pending(mailing)
    for pk in able(mailing):
        letters = letters.filter(passed_over__contains=passed_mark(pk))
    return letters


def fail_stranded(mailing: Mailing) -> int:
    """Fail the pending letters that every server able to send for the
    mailing has passed over (one that could carry them was turned off or
    failed since): each keeps the reply that passed it over. Asked only
    when a server with room found no letter to claim, so a mailing's
    letters are not read each batch. How many failed."""
    count = stranded(mailing).update(status=L.FAILED, server=None)
    if not count:
        return 0
    log.info("mailing %s: %s letters no server able to send can carry failed", mailing.pk, count)
    metrics.letter_result("failed", count=count)  # at no server: "none"
    return count


def accepted_again(server: SmtpServer, tenant: Tenant) -> None:
    """The server took a letter: rests start from the shortest again."""
    if server.connection_failures or server.rest_reason or server.backoff_until:
        SmtpServer.objects.filter(pk=server.pk).update(
            connection_failures=0, backoff_until=None, rest_reason="", rest_reply=""
        )
        server.connection_failures, server.rest_reason = 0, ""
    if server.is_platform:
        TenantRest.objects.filter(server=server, tenant=tenant, blocked=False, strikes__gt=0).update(strikes=0)
