"""Writes for sending servers, the bounce mailboxes and connection tests."""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max, QuerySet, RestrictedError
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from accounts import languages
from accounts.models import Tenant, User

from . import events, presets, probes, tasks
from .models import BounceMailbox, ConnectionTest, Health, RestReason, SmtpServer, TenantRest


class TooManyTests(Exception):
    pass


SUSPENDED = _("The organisation is suspended: the test did not run.")
IN_USE = _("Mailings that have not finished use this server: %(names)s. Finish, cancel or change them first.")


# What a tenant edits; an update writes only these, so a dispatcher or a
# bounce reader writing health, backoff or reading state at the same moment
# is never overwritten with the form's stale copy.
SERVER_SETTINGS = [
    "name", "kind", "sender_email", "sender_name", "host", "port", "security", "login", "password_encrypted",
    "verify_tls", "max_per_hour", "max_per_day", "allow_sender_substitution", "enabled", "max_connections",
    "tenant_daily_quota", "updated_at",
]  # fmt: skip
MAILBOX_SETTINGS = [
    "protocol", "email", "host", "port", "security", "login", "password_encrypted", "verify_tls", "folder",
    "enabled", "delete_after_processing", "plus_addressing", "updated_at",
]  # fmt: skip
# A change to any of these is the tenant fixing the mailbox: a mailbox that
# was backing off after failures is read again at the next beat.
MAILBOX_CONNECTION = [
    "protocol", "host", "port", "security", "login", "password_encrypted", "verify_tls", "folder", "enabled",
]  # fmt: skip
NO_BACKOFF = {"failures": 0, "next_check_at": None}


@transaction.atomic
def server_save(*, server: SmtpServer, password: str | None) -> SmtpServer:
    """Create or update; password None keeps the stored one."""
    if server.pk is None and server.tenant_id is not None:
        top = SmtpServer.objects.filter(tenant_id=server.tenant_id).aggregate(m=Max("priority"))["m"]
        server.priority = 0 if top is None else top + 1
    if password is not None:
        server.set_password(password)
    server.full_clean()
    server.save(update_fields=SERVER_SETTINGS if server.pk else None)
    return server


@transaction.atomic
def server_move(*, server: SmtpServer, up: bool) -> None:
    """Swap with the neighbour above or below in the tenant's order."""
    servers = list(SmtpServer.objects.select_for_update().filter(tenant_id=server.tenant_id).order_by("priority", "pk"))
    index = next(i for i, s in enumerate(servers) if s.pk == server.pk)
    other = index - 1 if up else index + 1
    if 0 <= other < len(servers):
        servers[index], servers[other] = servers[other], servers[index]
    for position, item in enumerate(servers):
        if item.priority != position:
            SmtpServer.objects.filter(pk=item.pk).update(priority=position)


@transaction.atomic
def server_reorder(*, tenant: Tenant, public_ids: list[str]) -> None:
    """Set the order from a dragged list; ids of other tenants are ignored."""
    servers = {str(s.public_id): s for s in SmtpServer.objects.select_for_update().filter(tenant=tenant)}
    ordered = [servers[i] for i in public_ids if i in servers]
    ordered += [s for s in sorted(servers.values(), key=lambda s: s.priority) if s not in ordered]
    for position, server in enumerate(ordered):
        SmtpServer.objects.filter(pk=server.pk).update(priority=position)


def server_set_enabled(*, server: SmtpServer, enabled: bool) -> None:
    server.enabled = enabled
    server.save(update_fields=["enabled", "updated_at"])


def server_delete(*, server: SmtpServer) -> None:
    """Mailings restrict the deletion of a server they may still send
    through (their on_delete): the deletion itself refuses, and its error
    lists the mailings, so this app never asks the mailing app."""
    try:
        server.delete()
    except RestrictedError as exc:
        names = _names(exc.restricted_objects)
        raise ValidationError(IN_USE, code="in_use", params={"names": names}) from exc


def _names(objects: Iterable[object], shown: int = 5) -> str:
    """The first `shown` names in order and a count of the rest: «A», «B» and 3 more."""
    names = sorted(str(o) for o in objects)
    listed = ", ".join(names[:shown])
    if len(names) <= shown:
        return listed
    return gettext("%(listed)s and %(count)d more") % {"listed": listed, "count": len(names) - shown}


@transaction.atomic
def mailbox_save(*, mailbox: BounceMailbox, password: str | None) -> BounceMailbox:
    if password is not None:
        mailbox.set_password(password)
    mailbox.full_clean()
    if mailbox.server_id is None:
        # The tenant's fix for a platform server holding it back because
        # this address needed SMTPUTF8: its letters go again at once, not
        # after the rest (a new address that needs it too is held again).
        TenantRest.objects.filter(tenant_id=mailbox.tenant_id, reason=RestReason.SMTPUTF8, blocked=False).delete()
    if mailbox.pk is None:
        mailbox.save()
        return mailbox
    fields = list(MAILBOX_SETTINGS)
    if _connection_changed(mailbox):
        for name, value in NO_BACKOFF.items():
            setattr(mailbox, name, value)
        fields += list(NO_BACKOFF)
    mailbox.save(update_fields=fields)
    return mailbox


@dataclass(frozen=True)
class BounceReading:
    """Where a sending server's own mailbox is read: its IMAP server, and
    the password (the server's SMTP password, a new one typed, or None to
    keep the one stored for the mailbox)."""

    host: str
    port: int
    security: str
    same_password: bool
    password: str | None = None


@transaction.atomic
def server_mailbox_save(
    *, server: SmtpServer, reading: BounceReading | None, password_changed: bool = False
) -> BounceMailbox | None:
    """Read the server's own mailbox for bounces (same address and login),
    or stop reading it (None). Its reports stay, without the mailbox. A new
    SMTP password is the tenant's fix for a mailbox that logs in with it:
    the next beat reads it, whatever its back-off."""
    current = BounceMailbox.objects.filter(server=server).first()
    if reading is None:
        if current is not None:
            current.delete()
        return None
    mailbox = current or BounceMailbox(
        tenant_id=server.tenant_id,
        server=server,
        protocol=BounceMailbox.Protocol.IMAP,
        plus_addressing=presets.plus_addressing_for(server.host, server.sender_email),
    )
    mailbox.server = server
    mailbox.email, mailbox.login = server.sender_email, server.login or server.sender_email
    mailbox.host, mailbox.port, mailbox.security = reading.host.strip(), reading.port, reading.security
    mailbox.verify_tls = server.verify_tls
    password = reading.password
    if reading.same_password:
        mailbox.password_encrypted, password = "", None
        if password_changed and mailbox.pk is not None:
            BounceMailbox.objects.filter(pk=mailbox.pk).update(**NO_BACKOFF)
    return mailbox_save(mailbox=mailbox, password=password)


def _connection_changed(mailbox: BounceMailbox) -> bool:
    stored = BounceMailbox.objects.filter(pk=mailbox.pk).values(*MAILBOX_CONNECTION).first() or {}
    return any(stored.get(name) != getattr(mailbox, name) for name in MAILBOX_CONNECTION)


def record_health(*, record: SmtpServer | BounceMailbox, result: probes.ProbeResult) -> None:
    diagnosis = result.diagnosis
    record.health = Health.OK if diagnosis is None else Health.FAILING
    record.health_error = "" if diagnosis is None else diagnosis.message
    record.health_hint = "" if diagnosis is None else diagnosis.hint
    record.health_words = {} if diagnosis is None else diagnosis.words_json()
    record.health_checked_at = timezone.now()
    fields = ["health", "health_error", "health_hint", "health_words", "health_checked_at"]
    if isinstance(record, BounceMailbox):
        record.last_error = record.health_error
        fields.append("last_error")
    values = {f: getattr(record, f) for f in fields}
    if isinstance(record, BounceMailbox) and diagnosis is None:
        values.update(NO_BACKOFF)  # it works now: read at the next beat
    rows = type(record).objects.filter(pk=record.pk)
    newly_failing = (
        isinstance(record, SmtpServer) and diagnosis is not None and not rows.filter(health=Health.FAILING).exists()
    )
    rows.update(**values)
    if newly_failing:
        events.server_failing(record, error=record.health_error, hint=record.health_hint)


@transaction.atomic
def connection_test_start(
    *,
    tenant: Tenant,
    by: User | None = None,
    server: SmtpServer | None = None,
    mailbox: BounceMailbox | None = None,
    send_to: str = "",
) -> ConnectionTest:
    """Queue a connection test. CONNECTION_TESTS_PER_MINUTE bounds the
    tests of a tenant and, across all their organisations, of a user."""
    # The rows' locks (tenant first, then user, always in that order)
    # serialise the count and the insert, so the bound is exact.
    Tenant.objects.select_for_update().only("pk").get(pk=tenant.pk)
    if by is not None:
        User.objects.select_for_update().only("pk").get(pk=by.pk)
    recent = ConnectionTest.objects.filter(created_at__gte=timezone.now() - timedelta(minutes=1))
    limit = settings.CONNECTION_TESTS_PER_MINUTE
    if recent.filter(tenant=tenant).count() >= limit or (by and recent.filter(started_by=by).count() >= limit):
        raise TooManyTests(gettext("Too many connection tests in the last minute. Wait a moment and try again."))
    test = ConnectionTest.objects.create(tenant=tenant, started_by=by, server=server, mailbox=mailbox, send_to=send_to)
    transaction.on_commit(lambda: tasks.run_connection_test.delay(test.pk))
    return test


def connection_test_run(*, test_id: int) -> None:
    claimed = ConnectionTest.objects.filter(pk=test_id, status=ConnectionTest.Status.PENDING).update(
        status=ConnectionTest.Status.RUNNING
    )
    if not claimed:
        return  # another worker has it, or it already ran
    test = ConnectionTest.objects.select_related("server", "mailbox", "tenant").get(pk=test_id)
    if not test.tenant.is_active:
        _refuse_suspended(test)
        return

    def progress(steps: list[probes.Step]) -> None:
        ConnectionTest.objects.filter(pk=test.pk).update(steps=probes.steps_json(steps))

    record = test.server or test.mailbox
    with languages.of_organisation(test.tenant.default_language):
        if test.server is not None:
            result = probes.smtp_probe(test.server, send_to=test.send_to, on_step=progress)
        else:
            result = probes.mailbox_probe(test.mailbox, on_step=progress)
        _finish(test, result)
        record_health(record=record, result=result)


def _refuse_suspended(test: ConnectionTest) -> None:
    """A test queued just before its tenant was suspended: nothing connects
    (nor sends a test letter) for a suspended tenant."""
    ConnectionTest.objects.filter(pk=test.pk).update(
        status=ConnectionTest.Status.FAILED, error=str(SUSPENDED), finished_at=timezone.now()
    )


def _finish(test: ConnectionTest, result: probes.ProbeResult) -> None:
    d = result.diagnosis
    ConnectionTest.objects.filter(pk=test.pk).update(
        status=ConnectionTest.Status.PASSED if d is None else ConnectionTest.Status.FAILED,
        steps=result.steps_json(),
        error="" if d is None else d.message,
        hint="" if d is None else d.hint,
        result_words={} if d is None else d.words_json(),
        category="" if d is None else d.category,
        finished_at=timezone.now(),
    )


def connection_test_stopped(*, test_id: int) -> None:
    """The worker's time limit stopped the test: it ends failed, whatever
    step it was in (the probe's own deadline normally ends it first)."""
    _fail_unfinished(
        ConnectionTest.objects.filter(pk=test_id),
        gettext("The test took longer than the worker allows and was stopped."),
    )


# Longer than any test's run (its task's hard limit), plus a wait in the queue.
STALE_TEST_AFTER = timedelta(minutes=5)


def connection_tests_fail_stale() -> int:
    """Tests still waiting or running long after any test ends (their worker
    was killed, or none took them) end failed, so no page polls forever."""
    stale = ConnectionTest.objects.filter(created_at__lt=timezone.now() - STALE_TEST_AFTER)
    return _fail_unfinished(stale, gettext("The test did not finish: no worker completed it. Try again."))


def _fail_unfinished(tests: QuerySet[ConnectionTest], error: str) -> int:
    unfinished = (ConnectionTest.Status.PENDING, ConnectionTest.Status.RUNNING)
    return tests.filter(status__in=unfinished).update(
        status=ConnectionTest.Status.FAILED,
        error=error,
        hint=gettext("Try again later; if it happens again, the server is too slow to use."),
        category="timeout",
        finished_at=timezone.now(),
    )


def rotate_secrets() -> int:
    """Re-encrypt every stored password, and the webhooks' signing secrets,
    with the newest key. Runs beside a live platform: a row is written only
    if it still holds the token read, so a secret a tenant saved meanwhile
    (already under the newest key) is never replaced by the old one."""
    from accounts.models import WebhookEndpoint

    from . import crypto

    count = 0
    for model, column in ((SmtpServer, "password_encrypted"), (BounceMailbox, "password_encrypted"),
                          (WebhookEndpoint, "secret_encrypted")):  # fmt: skip
        for pk, token in model.objects.exclude(**{column: ""}).values_list("pk", column):
            count += model.objects.filter(pk=pk, **{column: token}).update(**{column: crypto.rotate(token)})
    return count


def reset_health(*, server_ids: list[int]) -> int:
    """Staff: servers back to *not tested*, no rest, and every tenant's rest
    and block on them lifted (the dispatcher tries them again at once)."""
    with transaction.atomic():
        TenantRest.objects.filter(server_id__in=server_ids).delete()
        return SmtpServer.objects.filter(pk__in=server_ids).update(
            health=Health.UNKNOWN,
            health_error="",
            health_hint="",
            health_words={},
            backoff_until=None,
            connection_failures=0,
            rest_reason="",
            rest_reply="",
        )


def tenant_rests_lift(*, rest_ids: list[int]) -> int:
    deleted, _ = TenantRest.objects.filter(pk__in=rest_ids).delete()
    return deleted
