import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from accounts.models import Tenant

from . import crypto, rules, words


class Security(models.TextChoices):
    NONE = "none", _("None (plain text)")
    SSL = "ssl", _("SSL/TLS (implicit, usually port 465)")
    STARTTLS = "starttls", _("STARTTLS (usually port 587)")


class Health(models.TextChoices):
    UNKNOWN = "unknown", _("Not tested yet")
    OK = "ok", _("OK")
    FAILING = "failing", _("Failing")


class EncryptedPasswordMixin(models.Model):
    """The column holds only the Fernet token; the plain text exists in
    memory while connecting, and is never rendered back."""

    password_encrypted = models.TextField(_("encrypted password"), blank=True, editable=False)

    class Meta:
        abstract = True

    def set_password(self, raw: str) -> None:
        self.password_encrypted = crypto.encrypt(raw)

    def get_password(self) -> str:
        return crypto.decrypt(self.password_encrypted)

    @property
    def has_password(self) -> bool:
        return bool(self.password_encrypted)


class HealthMixin(models.Model):
    health = models.CharField(_("health"), max_length=10, choices=Health.choices, default=Health.UNKNOWN)
    health_error = models.TextField(_("health error"), blank=True)
    health_hint = models.TextField(_("health hint"), blank=True)
    health_checked_at = models.DateTimeField(_("health checked"), null=True, blank=True)
    # The error and hint as servers.words, worded for each reader: a
    # platform server's is read by tenants of every language. The two
    # texts above stay, in the owner's language (the admin, webhooks, rows
    # written before).
    health_words = models.JSONField(_("health error and hint (words)"), default=dict, blank=True, db_default={})

    class Meta:
        abstract = True

    @property
    def health_message(self) -> str:
        """Why it fails, in the reader's language."""
        return words.shown(self.health_words, "message", self.health_error)

    @property
    def health_fix(self) -> str:
        """What to do about it, in the reader's language."""
        return words.shown(self.health_words, "hint", self.health_hint)


port_validators = [MinValueValidator(1), MaxValueValidator(65535)]


class RestReason(models.TextChoices):
    CONNECTION = "connection", _("Connection trouble")
    RATE_LIMIT = "rate_limit", _("Rate-limited by the server")
    REFUSALS = "refusals", _("Refusing every letter for now")
    # A platform server without SMTPUTF8 and the tenant's bounce mailbox not
    # ASCII before its @: the tenant's fix, not the content's.
    SMTPUTF8 = "smtputf8", _("Its bounce mailbox needs SMTPUTF8")


class SmtpServer(EncryptedPasswordMixin, HealthMixin, models.Model):
    class Kind(models.TextChoices):
        EXTERNAL = "external", _("External SMTP")
        INTERNAL = "internal", _("Internal SMTP (this host's mail server)")

    public_id = models.UUIDField(_("public ID"), default=uuid.uuid4, unique=True, editable=False)
    # No tenant: the platform's default server (SaaS), configured by staff.
    tenant = models.ForeignKey(
        Tenant,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="smtp_servers",
        verbose_name=_("organisation"),
        db_index=False,
    )
    name = models.CharField(_("name"), max_length=100)
    kind = models.CharField(_("type"), max_length=10, choices=Kind.choices, default=Kind.EXTERNAL)
    sender_email = models.EmailField(_("sender address"))
    sender_name = models.CharField(_("sender display name"), max_length=100, blank=True)
    host = models.CharField(_("SMTP server"), max_length=253, blank=True)
    port = models.PositiveIntegerField(_("SMTP port"), null=True, blank=True, validators=port_validators)
    security = models.CharField(_("security"), max_length=10, choices=Security.choices, default=Security.SSL)
    login = models.CharField(_("SMTP login"), max_length=254, blank=True)
    verify_tls = models.BooleanField(
        _("verify TLS certificates"), default=True, help_text=_("Turning this off is possible only when self-hosted.")
    )
    max_per_minute = models.PositiveIntegerField(
        _("max per minute"),
        null=True,
        blank=True,
        help_text=_(
            "Empty: no per-minute limit. Set it just below your provider's cap: Postroute then paces the "
            "server rather than meeting its rate limit."
        ),
    )
    max_per_hour = models.PositiveIntegerField(
        _("max per hour"), null=True, blank=True, help_text=_("Empty: no hourly limit.")
    )
    max_per_day = models.PositiveIntegerField(
        _("max per day"), null=True, blank=True, help_text=_("Empty: no daily limit.")
    )
    allow_sender_substitution = models.BooleanField(
        _("allow sender substitution"),
        default=False,
        help_text=_("The server accepts a From address other than its own mailbox."),
    )
    priority = models.PositiveIntegerField(_("priority"), default=0, help_text=_("Lower goes first."))
    enabled = models.BooleanField(_("enabled"), default=True)
    max_connections = models.PositiveSmallIntegerField(
        _("max connections"),
        default=2,
        validators=[MinValueValidator(1), MaxValueValidator(20)],
        help_text=_("How many workers may talk to this server at once (providers limit it)."),
    )
    # A server that keeps failing at connection level, refuses every letter
    # for now, or says it is rate-limiting us, rests as a whole.
    backoff_until = models.DateTimeField(_("resting until"), null=True, blank=True, editable=False)
    connection_failures = models.PositiveSmallIntegerField(_("connection failures"), default=0, editable=False)
    rest_reason = models.CharField(
        _("reason for the rest"), max_length=12, choices=RestReason.choices, blank=True, editable=False
    )
    rest_reply = models.TextField(_("server's reply"), blank=True, editable=False)
    # Platform server only: how many letters each tenant may send through it
    # per day, unless a PlatformQuota row says otherwise for that tenant.
    tenant_daily_quota = models.PositiveIntegerField(_("daily quota per organisation"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("sending server")
        verbose_name_plural = _("sending servers")
        ordering = ["priority", "created_at"]
        indexes = [models.Index(fields=["tenant", "priority"])]

    def __str__(self) -> str:
        return f"{self.name} <{self.sender_email}>"

    @property
    def is_platform(self) -> bool:
        return self.tenant_id is None

    @property
    def is_usable(self) -> bool:
        """Enabled and not failing: only such a server may send."""
        return self.enabled and self.health != Health.FAILING

    def connect_host_port(self) -> tuple[str, int]:
        if self.kind == self.Kind.INTERNAL:
            return settings.INTERNAL_SMTP_HOST, settings.INTERNAL_SMTP_PORT
        return self.host, self.port or 0

    def clean(self) -> None:
        super().clean()
        errors = rules.smtp_server_errors(self)
        if errors:
            raise ValidationError(errors)


class TenantRest(models.Model):
    """One tenant's use of a platform server, held back by what that tenant's
    own letters caused (refusals of its recipients or its content), so that
    nothing one tenant sends takes the shared server from the others. A rest
    ends by itself at `until`; a block (`blocked`) waits for staff, who see
    it in the admin."""

    server = models.ForeignKey(
        SmtpServer,
        on_delete=models.CASCADE,
        related_name="tenant_rests",
        verbose_name=_("sending server"),
        db_index=False,
    )
    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, related_name="server_rests", verbose_name=_("organisation")
    )
    until = models.DateTimeField(_("until"), null=True, blank=True)
    blocked = models.BooleanField(_("blocked"), default=False)
    strikes = models.PositiveSmallIntegerField(_("strikes"), default=0)
    reason = models.CharField(_("reason"), max_length=12, choices=RestReason.choices)
    reply = models.TextField(_("server's reply"), blank=True)
    updated_at = models.DateTimeField(_("updated"), default=timezone.now)

    class Meta:
        verbose_name = _("organisation's rest on a server")
        verbose_name_plural = _("organisations' rests on servers")
        constraints = [models.UniqueConstraint(fields=["server", "tenant"], name="tenant_rest_unique")]

    def __str__(self) -> str:
        return f"{self.tenant} on {self.server.name}: {'blocked' if self.blocked else f'rests until {self.until}'}"

    def holds(self, now) -> bool:
        return self.blocked or bool(self.until and self.until > now)


class PlatformQuota(models.Model):
    """A tenant's own daily quota on a platform server, set by staff."""

    server = models.ForeignKey(
        SmtpServer, on_delete=models.CASCADE, related_name="quotas", verbose_name=_("sending server"), db_index=False
    )
    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, related_name="platform_quotas", verbose_name=_("organisation")
    )
    daily_quota = models.PositiveIntegerField(_("daily quota"))

    class Meta:
        verbose_name = _("platform quota")
        verbose_name_plural = _("platform quotas")
        constraints = [models.UniqueConstraint(fields=["server", "tenant"], name="platform_quota_unique")]

    def __str__(self) -> str:
        return f"{self.tenant}: {self.daily_quota}/day on {self.server.name}"

    def clean(self) -> None:
        if self.server_id and not self.server.is_platform:
            raise ValidationError({"server": gettext("Quotas apply to platform servers only.")})


class BounceMailbox(EncryptedPasswordMixin, HealthMixin, models.Model):
    """A mailbox Postroute reads for delivery reports: the tenant's bounce
    mailbox (no server; one per tenant), or a sending server's own mailbox
    (`server`), where the reports of a server that sends from its own
    address land. A server's mailbox may use the server's password: then
    its own is empty."""

    class Protocol(models.TextChoices):
        IMAP = "imap", _("IMAP")
        POP3 = "pop3", _("POP3")

    public_id = models.UUIDField(_("public ID"), default=uuid.uuid4, unique=True, editable=False)
    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, related_name="bounce_mailboxes", verbose_name=_("organisation")
    )
    server = models.OneToOneField(
        SmtpServer,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="bounce_mailbox",
        verbose_name=_("sending server"),
    )
    protocol = models.CharField(_("protocol"), max_length=6, choices=Protocol.choices, default=Protocol.IMAP)
    email = models.EmailField(_("mailbox address"), blank=True)
    host = models.CharField(_("incoming mail server"), max_length=253)
    port = models.PositiveIntegerField(_("port"), default=993, validators=port_validators)
    security = models.CharField(_("security"), max_length=10, choices=Security.choices, default=Security.SSL)
    login = models.CharField(_("login"), max_length=254)
    verify_tls = models.BooleanField(_("verify TLS certificates"), default=True)
    folder = models.CharField(_("folder"), max_length=200, default="INBOX")
    enabled = models.BooleanField(_("enabled"), default=True)
    last_checked_at = models.DateTimeField(_("last checked"), null=True, blank=True)
    last_error = models.TextField(_("last error"), blank=True)
    delete_after_processing = models.BooleanField(
        _("delete processed reports (POP3)"),
        default=False,
        help_text=_("POP3 only. Off: reports stay on the server and are remembered by their id."),
    )
    plus_addressing = models.BooleanField(
        _("tag the return address of each letter"),
        default=True,
        help_text=_(
            "Letters go out with a return address like bounces+<tag>@your-domain, which ties every "
            "report to its letter even when the report quotes nothing of it. Gmail, Yandex, Mail.ru, Outlook.com "
            "and most company servers deliver such addresses to the mailbox; turn it off if yours does not."
        ),
    )
    reports_found = models.PositiveIntegerField(_("reports found"), default=0, editable=False)
    # IMAP reading state: the UIDs seen so far in `uid_scope` (server, login
    # and folder); a new UIDVALIDITY or scope starts from the beginning again.
    uidvalidity = models.PositiveBigIntegerField(_("UIDVALIDITY"), null=True, blank=True, editable=False)
    last_uid = models.PositiveBigIntegerField(_("last UID"), default=0, editable=False)
    uid_scope = models.CharField(_("UID scope"), max_length=700, blank=True, editable=False)
    # The reader's lease: taken by a conditional UPDATE, so a crashed worker's
    # lease simply runs out and the next run takes over.
    reader_lock_until = models.DateTimeField(_("reader locked until"), null=True, blank=True, editable=False)
    reader_lock_token = models.UUIDField(_("reader lock token"), null=True, blank=True, editable=False)
    # Back-off of a mailbox that keeps failing: readings failed in a row, and
    # when the next may start. Retrying a wrong password every interval earns
    # the host's authentication penalty, which then slows the same host's
    # SMTP logins for sending.
    failures = models.PositiveSmallIntegerField(_("failures in a row"), default=0, editable=False)
    next_check_at = models.DateTimeField(_("next check"), null=True, blank=True, editable=False)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("bounce mailbox")
        verbose_name_plural = _("bounce mailboxes")
        constraints = [
            models.UniqueConstraint(
                fields=["tenant"], condition=models.Q(server__isnull=True), name="bounce_mailbox_one_per_tenant"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.login}@{self.host}"

    @property
    def address(self) -> str:
        """The address reports reach: the mailbox address, else a login
        that is one."""
        if self.email:
            return self.email
        return self.login if "@" in self.login else ""

    @property
    def shares_server_password(self) -> bool:
        return not self.password_encrypted and self.server_id is not None

    def get_password(self) -> str:
        if self.shares_server_password:
            return self.server.get_password()
        return super().get_password()

    @property
    def has_password(self) -> bool:
        return super().has_password or (self.server_id is not None and self.server.has_password)

    def clean(self) -> None:
        super().clean()
        errors = rules.mailbox_save_errors(self)
        if errors:
            raise ValidationError(errors)


class ConnectionTest(models.Model):
    """One run of "Test connection": the steps with their timings, filled
    by a Celery task while the page polls."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Waiting")
        RUNNING = "running", _("Running")
        PASSED = "passed", _("Passed")
        FAILED = "failed", _("Failed")

    public_id = models.UUIDField(_("public ID"), default=uuid.uuid4, unique=True, editable=False)
    tenant = models.ForeignKey(
        Tenant,
        on_delete=models.CASCADE,
        related_name="connection_tests",
        verbose_name=_("organisation"),
        db_index=False,
    )
    # Who asked: a user's tests are counted across all their organisations.
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
        verbose_name=_("started by"),
    )
    server = models.ForeignKey(
        SmtpServer,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="tests",
        verbose_name=_("sending server"),
    )
    mailbox = models.ForeignKey(
        BounceMailbox,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="tests",
        verbose_name=_("bounce mailbox"),
    )
    send_to = models.EmailField(_("test letter to"), blank=True)
    status = models.CharField(_("status"), max_length=8, choices=Status.choices, default=Status.PENDING)
    steps = models.JSONField(_("steps"), default=list)
    error = models.TextField(_("error"), blank=True)
    hint = models.TextField(_("hint"), blank=True)
    # The error and hint as servers.words, worded for each reader (the texts
    # above, in the organisation's language, are what rows written before
    # show). Each step keeps its own words in `steps` (probes.steps_json).
    result_words = models.JSONField(_("error and hint (words)"), default=dict, blank=True, db_default={})
    category = models.CharField(_("error category"), max_length=30, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)

    class Meta:
        verbose_name = _("connection test")
        verbose_name_plural = _("connection tests")
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["tenant", "created_at"]),
            models.Index(fields=["started_by", "created_at"], name="connection_test_user_idx"),
        ]

    def __str__(self) -> str:
        return f"test {self.public_id} ({self.status})"

    @property
    def error_message(self) -> str:
        return words.shown(self.result_words, "message", self.error)

    @property
    def error_hint(self) -> str:
        return words.shown(self.result_words, "hint", self.hint)
