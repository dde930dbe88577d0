"""Mailing services: creation, the state machine, and starting (one letter
per mailbox, its address in any case, not suppressed; created in bulk).

A start asked for on a page or by the scheduler is prepared by a task
(mailing_start_async): making a million letters takes longer than a web
request may. The mailing keeps its state, flagged `preparing_since`, until
mailing_start has made every letter and moved it to active in the same
transaction, so the dispatcher never sees a mailing without its letters."""

from collections.abc import Iterable
from datetime import datetime, timedelta
from functools import cache

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Count, Exists, Min, OuterRef, QuerySet
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts import languages
from accounts.models import Tenant, User
from config import statements
from servers.models import SmtpServer
from servers.selectors import platform_servers, tenant_servers
from servers.words import Said, error_words, sentences, sentences_json, worded

from . import events
from .models import PENDING_LETTERS, Contact, ContactList, Letter, Mailing, MailingEvent, MailingServer, Suppression

S = Mailing.Status

# action -> (states it may start from, state it leads to)
TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "schedule": (frozenset({S.DRAFT}), S.SCHEDULED),
    "unschedule": (frozenset({S.SCHEDULED}), S.DRAFT),
    "start": (frozenset({S.DRAFT, S.SCHEDULED}), S.ACTIVE),
    "pause": (frozenset({S.ACTIVE, S.WAITING, S.BLOCKED}), S.PAUSED),
    "resume": (frozenset({S.PAUSED}), S.ACTIVE),
    "cancel": (frozenset({S.DRAFT, S.SCHEDULED, S.ACTIVE, S.WAITING, S.BLOCKED, S.PAUSED}), S.CANCELLED),
    "wait": (frozenset({S.ACTIVE}), S.WAITING),
    "block": (frozenset({S.ACTIVE}), S.BLOCKED),
    "wake": (frozenset({S.WAITING, S.BLOCKED}), S.ACTIVE),
    "complete": (frozenset({S.ACTIVE, S.WAITING, S.BLOCKED}), S.COMPLETED),
}


START_SOURCES = TRANSITIONS["start"][0]
# A start time that has passed: refused when scheduled, and by the form
# next to the field (mailing.forms.mailings), with the same words.
PAST = gettext_lazy("Choose a time in the future, or start now.")
NOBODY = gettext_lazy("Nobody to send to: the lists are empty or every address is suppressed.")
PREPARING = gettext_lazy("Its letters are being prepared; wait until it has started.")
# A start task is killed after this long (tasks.start_mailing's hard
# limit); a start still preparing then is asked for again.
START_TASK_LIMIT = timedelta(minutes=30)


def allowed_actions(mailing: Mailing) -> set[str]:
    if mailing.preparing_since is not None:
        return set()
    return {a for a, (sources, _) in TRANSITIONS.items() if mailing.status in sources}


def transition(*, mailing: Mailing, action: str, by: User | None = None, note: Said = "", **fields: object) -> None:
    """The only way a mailing changes state: a conditional update, so two
    requests (or a request and a worker) cannot both move it. A mailing
    whose letters are being prepared moves only by starting. The note is
    kept as words (servers.words), worded for each reader."""
    target = TRANSITIONS[action][1]
    with transaction.atomic():
        if not _move(mailing.pk, action, {"status": target, **fields}):
            current, preparing = Mailing.objects.filter(pk=mailing.pk).values_list("status", "preparing_since").get()
            if preparing is not None:
                raise ValidationError(PREPARING)
            raise ValidationError(
                _("A mailing that is %(lower)s cannot %(action)s.")
                % {"lower": Mailing.Status(current).label.lower(), "action": action}
            )
        _record(mailing.pk, before=mailing.status, after=target, by_id=by.pk if by else None, note=note)
        if action == "resume":
            # Every server is tried again: the one passed over for the
            # mailing's own address may have been mended meanwhile.
            passed = MailingServer.objects.filter(mailing_id=mailing.pk).exclude(passed_over="")
            passed.update(passed_over="", passed_over_words={})
            # And every letter's servers, which may carry it now (a server
            # given SMTPUTF8 or a larger SIZE meanwhile).
            pending = Letter.objects.filter(mailing_id=mailing.pk, status__in=PENDING_LETTERS)
            pending.exclude(passed_over="").update(passed_over="")
        events.mailing_moved(mailing, before=mailing.status, after=target, fields=fields)
        if target == S.ACTIVE:
            transaction.on_commit(lambda: _kick(mailing.pk))
    mailing.status = target
    for name, value in fields.items():
        setattr(mailing, name, value)


# The dispatcher moves every mailing it finishes, and waiting ones back and
# forth: plain statements, whose text depends only on the action and the
# fields set, where the ORM compiled an update and an insert each time (a
# twentieth of a dispatch worker's CPU with mailings of 20 letters).
def _move(mailing_id: int, action: str, values: dict[str, object]) -> bool:
    sql = _move_sql(action, tuple(values))
    params = [Mailing._meta.get_field(name).get_db_prep_save(value, connection) for name, value in values.items()]
    with statements.cursor() as cursor:
        cursor.execute(sql, [*params, mailing_id, *sorted(TRANSITIONS[action][0])])
        return cursor.rowcount == 1


@cache
def _move_sql(action: str, names: tuple[str, ...]) -> str:
    columns = ", ".join(f"{Mailing._meta.get_field(name).column} = %s" for name in names)
    sources = ", ".join(["%s"] * len(TRANSITIONS[action][0]))
    # A mailing whose letters are being prepared moves only by starting.
    unprepared = "" if action == "start" else " AND preparing_since IS NULL"
    return f"UPDATE {Mailing._meta.db_table} SET {columns} WHERE id = %s AND status IN ({sources}){unprepared}"  # noqa: S608 (names only)


_EVENT_SQL = (
    f"INSERT INTO {MailingEvent._meta.db_table} (mailing_id, from_status, to_status, by_id, note, note_words, at) "  # noqa: S608 (names only)
    "VALUES (%s, %s, %s, %s, %s, %s, %s)"
)
NOTE_LENGTH = MailingEvent._meta.get_field("note").max_length


def note_event(*, mailing_id: int, status: str, note: Said) -> None:
    """A line of the mailing's history where its state does not change."""
    _record(mailing_id, before=status, after=status, by_id=None, note=note)


def _record(mailing_id: int, *, before: str, after: str, by_id: int | None, note: Said) -> None:
    """The note's text is worded in the active language (the organisation's,
    for background work), its words kept for every other reader."""
    said = sentences(note)
    text = worded(said)[:NOTE_LENGTH]
    stored = MailingEvent._meta.get_field("note_words").get_db_prep_save(sentences_json(said), connection)
    at = MailingEvent._meta.get_field("at").get_db_prep_save(timezone.now(), connection)
    with statements.cursor() as cursor:
        cursor.execute(_EVENT_SQL, [mailing_id, before, after, by_id, text, stored, at])


def available_servers(tenant: Tenant) -> list[SmtpServer]:
    """The servers a mailing may use, in the default order: the tenant's own
    enabled servers by priority, then the platform's (SaaS)."""
    return [*tenant_servers(tenant).filter(enabled=True), *platform_servers()]


@transaction.atomic
def mailing_save(
    *,
    mailing: Mailing,
    lists: Iterable[ContactList],
    servers: Iterable[SmtpServer],
    by: User | None = None,
) -> Mailing:
    if mailing.status != S.DRAFT:
        raise ValidationError(_("Only a draft can be changed."))
    if mailing.preparing_since is not None:
        raise ValidationError(PREPARING)
    allowed = {s.pk: s for s in available_servers(mailing.tenant)}
    # Each server once, however often a caller names it (a link a server).
    chosen = list({s.pk: s for s in servers if s.pk in allowed}.values())
    if not chosen:
        raise ValidationError({"servers": _("Choose at least one server.")})
    if mailing.template.tenant_id != mailing.tenant_id or any(lst.tenant_id != mailing.tenant_id for lst in lists):
        raise ValidationError(_("The template and lists must belong to the same organisation."))
    if mailing.pk is None:
        mailing.created_by = by
    mailing.full_clean()
    mailing.save()
    mailing.lists.set(lists)
    order = {s.pk: i for i, s in enumerate(allowed.values())}
    MailingServer.objects.filter(mailing=mailing).delete()
    MailingServer.objects.bulk_create(
        MailingServer(mailing=mailing, server=s, position=order[s.pk])
        for s in sorted(chosen, key=lambda s: order[s.pk])
    )
    return mailing


def recipients(mailing: Mailing) -> QuerySet[Contact]:
    """One contact per mailbox on the mailing's lists, not suppressed. A
    mailbox is its address in any case (Suppression.objects.of): contacts
    Ann@x.test and ann@x.test are kept apart, but they are one reader, who
    gets one letter, made from the contact with the lowest id. What
    INSERT_LETTERS makes on PostgreSQL."""
    first_of_each = _listed(mailing).values(mailbox=Lower("email")).annotate(first=Min("pk")).values("first")
    return Contact.objects.filter(pk__in=first_of_each)


def recipient_count(mailing: Mailing) -> int:
    """How many letters a start would make now: recipients(), counted in
    one pass over the contacts (the page shows it on every visit)."""
    return _listed(mailing).aggregate(n=Count(Lower("email"), distinct=True))["n"]


def _listed(mailing: Mailing) -> QuerySet[Contact]:
    """The contacts on the mailing's lists whose address (in any case) is
    not suppressed: every spelling of each mailbox."""
    suppressed = Suppression.objects.of(mailing.tenant_id, OuterRef("email"))
    in_lists = Contact.lists.through.objects.filter(contact_id=OuterRef("pk"), contactlist__in=mailing.lists.all())
    return Contact.objects.filter(tenant_id=mailing.tenant_id).filter(Exists(in_lists)).exclude(Exists(suppressed))


def mailing_schedule(*, mailing: Mailing, at: datetime, by: User | None = None) -> None:
    """Refused now, as Start now is, when nobody is to be sent to: not only
    at its time, when the beat could only cancel it. (Lists emptied after
    that still cancel it then, with the reason in its history.)"""
    if at <= timezone.now():
        raise ValidationError({"scheduled_at": str(PAST)})
    if mailing.status in TRANSITIONS["schedule"][0]:  # else the transition says why not
        _count_recipients(mailing)
    transition(mailing=mailing, action="schedule", by=by, scheduled_at=at)


def _count_recipients(mailing: Mailing) -> int:
    """recipient_count(), refused when there is nobody to send to."""
    count = recipient_count(mailing)
    if count == 0:
        raise ValidationError(NOBODY, code="nobody")
    return count


def mailing_start(*, mailing: Mailing, by: User | None = None) -> int:
    """Snapshot the template and queue one letter per recipient, then move
    the mailing to active, in one transaction; returns the number of
    letters. Later edits of the template change nothing here. The task
    behind mailing_start_async calls this; so may anything that can wait."""
    with transaction.atomic():
        mailing = Mailing.objects.select_for_update().select_related("template").get(pk=mailing.pk)
        if mailing.status not in START_SOURCES:
            raise ValidationError(_("This mailing has already started."))
        if mailing.preparing_since is None:
            _snapshot(mailing)  # (an asked-for start took it when asked)
        count = _create_letters(mailing)
        if count == 0:
            raise ValidationError(NOBODY, code="nobody")
        fields = {"started_at": timezone.now(), "letter_count": count, "preparing_since": None, "start_error": ""}
        transition(mailing=mailing, action="start", by=by, **fields)
    return count


def mailing_start_async(*, mailing: Mailing, by: User | None = None) -> int:
    """Ask for the start: take the template's snapshot now and have a task
    make the letters (mailing_start). Returns how many it is preparing."""
    if mailing.status not in START_SOURCES:
        raise ValidationError(_("This mailing has already started."))
    if mailing.preparing_since is not None:
        raise ValidationError(PREPARING)
    expected = _count_recipients(mailing)
    now = timezone.now()
    with transaction.atomic():
        claimed = Mailing.objects.filter(pk=mailing.pk, status__in=START_SOURCES, preparing_since=None).update(
            preparing_since=now, start_error="", letter_count=expected
        )
        if not claimed:
            raise ValidationError(_("This mailing is already starting."))
        fresh = Mailing.objects.select_related("template").get(pk=mailing.pk)
        _snapshot(fresh)
        _enqueue_start(mailing.pk, by)
    mailing.preparing_since, mailing.start_error, mailing.letter_count = now, "", expected
    return expected


def _enqueue_start(mailing_id: int, by: User | None) -> None:
    from . import tasks

    by_id = by.pk if by is not None else None
    transaction.on_commit(lambda: tasks.start_mailing.delay(mailing_id, by_id))


def mailing_start_prepared(*, mailing_id: int, by_id: int | None = None) -> None:
    """The start task's work: make the letters of a mailing whose start was
    asked for. Nothing happens for one that has started meanwhile (a task
    delivered twice), and a refusal is kept for the page to show."""
    mailing = Mailing.objects.filter(pk=mailing_id, preparing_since__isnull=False).select_related("tenant").first()
    if mailing is None:
        return
    # The refusal is read later by everyone in the organisation: in its language.
    with languages.of_organisation(mailing.tenant.default_language):
        try:
            mailing_start(mailing=mailing, by=User.objects.filter(pk=by_id).first() if by_id else None)
        except ValidationError as exc:
            mailing_start_failed(mailing_id=mailing_id, reason=error_words(exc))


def mailing_start_failed(*, mailing_id: int, reason: Said) -> None:
    """A start that could not be prepared: a draft stays a draft with the
    reason shown on its page; a scheduled mailing is cancelled with it. A
    lazy `reason` is worded in the organisation's language; the history's
    note keeps its words for every reader."""
    with transaction.atomic():
        preparing = Mailing.objects.select_for_update().filter(
            pk=mailing_id, preparing_since__isnull=False, status__in=START_SOURCES
        )
        mailing = preparing.first()
        if mailing is None:
            return  # it started after all
        language = Tenant.objects.values_list("default_language", flat=True).get(pk=mailing.tenant_id)
        said = sentences(reason)
        with languages.of_organisation(language):
            text = worded(said)[:300]
            Mailing.objects.filter(pk=mailing.pk).update(preparing_since=None, start_error=text, letter_count=0)
            mailing.preparing_since = None
            if mailing.status == S.SCHEDULED:
                transition(mailing=mailing, action="cancel", note=said)


def restart_stalled_starts(*, now: datetime | None = None) -> int:
    """Beat: a start whose task was lost (its worker killed past the hard
    limit, a broker that dropped it) is asked for again."""
    stalled = Mailing.objects.filter(preparing_since__lt=(now or timezone.now()) - START_TASK_LIMIT)
    restarted = 0
    for mailing_id in stalled.values_list("pk", flat=True):
        with transaction.atomic():
            if Mailing.objects.filter(pk=mailing_id, preparing_since__isnull=False).update(
                preparing_since=timezone.now()
            ):
                _enqueue_start(mailing_id, None)
                restarted += 1
    return restarted


def _kick(mailing_id: int) -> None:
    """Send at once rather than at the next scheduler tick."""
    from . import dispatch, tasks

    for slot in dispatch.needed_chain_slots(mailing_id):
        tasks.send_mailing.delay(mailing_id, slot)


def _snapshot(mailing: Mailing) -> None:
    t = mailing.template
    fields = ["subject", "text_body", "html_body", "sender_email", "sender_name", "reply_to"]
    for name in fields:
        setattr(mailing, name, getattr(t, name))
    mailing.save(update_fields=fields)


def _create_letters(mailing: Mailing) -> int:
    if connection.vendor == "postgresql":
        return _create_letters_postgres(mailing)
    return _create_letters_batched(mailing)


# One letter per mailbox (recipients): DISTINCT ON keeps, of the spellings
# of an address, the contact with the lowest id. Still one pass over the
# tenant's contacts; the sort it adds took a twentieth of the statement's
# time at 100,000 recipients. The letters are made in the contacts' order
# (their ids), which the dispatcher sends them in, as before: a list
# imported with its most important rows first goes out in that order. The
# mailing has no letters yet (its row is
# locked, its status checked), so nothing can conflict.
INSERT_LETTERS = """
INSERT INTO mailing_letter
    (public_id, tenant_id, mailing_id, contact_id, email, context, status, attempts, last_reply, created_at)
SELECT gen_random_uuid(), c.tenant_id, %(mailing)s, c.id, c.email,
       c.fields || jsonb_build_object('email', c.email, 'first_name', c.first_name, 'last_name', c.last_name),
       'queued', 0, '', %(now)s
FROM (SELECT DISTINCT ON (LOWER(c.email)) c.*
      FROM mailing_contact c
      WHERE c.tenant_id = %(tenant)s
        AND EXISTS (SELECT 1 FROM mailing_contact_lists cl
                    JOIN mailing_mailing_lists ml ON ml.contactlist_id = cl.contactlist_id
                    WHERE cl.contact_id = c.id AND ml.mailing_id = %(mailing)s)
        AND NOT EXISTS (SELECT 1 FROM mailing_suppression s  -- in any case, as Suppression.objects.of
                        WHERE s.tenant_id = c.tenant_id AND LOWER(s.email) = LOWER(c.email))
      ORDER BY LOWER(c.email), c.id) c
ORDER BY c.id
"""


def _create_letters_postgres(mailing: Mailing) -> int:
    """One INSERT ... SELECT: the rows never travel through Python, so
    memory stays flat and 100,000 letters take seconds (make bench)."""
    with connection.cursor() as cursor:
        params = {"mailing": mailing.pk, "tenant": mailing.tenant_id, "now": timezone.now()}
        cursor.execute(INSERT_LETTERS, params)
        return cursor.rowcount


def _create_letters_batched(mailing: Mailing, batch: int = 2000) -> int:
    """Other databases (SQLite in development): stream contacts in chunks."""
    now, count, rows = timezone.now(), 0, []
    values = recipients(mailing).order_by("pk").values_list("pk", "email", "first_name", "last_name", "fields")
    for pk, email, first, last, extra in values.iterator(chunk_size=batch):
        context = {**extra, "email": email, "first_name": first, "last_name": last}
        rows.append(
            Letter(
                tenant_id=mailing.tenant_id,
                mailing=mailing,
                contact_id=pk,
                email=email,
                context=context,
                created_at=now,
            )
        )
        if len(rows) >= batch:
            count += len(Letter.objects.bulk_create(rows))
            rows = []
    count += len(Letter.objects.bulk_create(rows)) if rows else 0
    return count


def start_due_mailings() -> int:
    """Beat: ask for the start of scheduled mailings whose time has come
    (a task prepares each, so a large one does not hold up the tick). A
    suspended tenant's stay scheduled: nothing is sent for it, and they
    start at the first tick after it is reactivated."""
    started = 0
    due = Mailing.objects.filter(status=S.SCHEDULED, scheduled_at__lte=timezone.now(), preparing_since=None)
    for mailing in due.filter(tenant__status=Tenant.Status.ACTIVE).select_related("tenant"):
        with languages.of_organisation(mailing.tenant.default_language):  # the note is read by its members
            try:
                mailing_start_async(mailing=mailing)
                started += 1
            except ValidationError as exc:
                if exc.code == "nobody":
                    transition(mailing=mailing, action="cancel", note=error_words(exc))
    return started
