import unicodedata
import uuid

import idna
from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.contrib.sessions.base_session import AbstractBaseSession
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from servers.wire import idna_name

from .timezones import DEFAULT_ZONE, validate_time_zone


def normalize_email_address(email: str) -> str:
    """Lower-case the whole address: mailbox providers treat the local part
    case-insensitively in practice, and one person must not get two accounts.
    An internationalised domain is kept in Unicode (NFC): its ASCII spelling
    (xn--bcher-kva.de for bücher.de) is the same mailbox, and was a second
    account, a second reset address and a second count of the mail limits."""
    local, at, domain = email.strip().lower().rpartition("@")
    if not at:
        return domain
    return f"{local}@{_unicode_domain(unicodedata.normalize('NFC', domain))}"


def _unicode_domain(domain: str) -> str:
    """The domain as IDNA 2008 reads it after UTS 46 mapping, as the letters
    go (servers.wire): full-width letters, a soft hyphen or a zero-width
    space in it are the same domain, and were another account and another
    count of the limits for the same mailbox."""
    # A joiner IDNA 2008 refuses where it stands (ac<U+200D>me.test) is
    # dropped, as the IDNA 2003 that Django's mail sends such an address
    # with drops it (to acme.test).
    for spelling in (domain, domain.replace("\u200c", "").replace("\u200d", "")):
        try:
            return idna.decode(idna_name(spelling))
        except idna.IDNAError:
            continue
    # No IDNA name (an address literal): label by label.
    return ".".join(_unicode_label(label) for label in domain.split("."))


def _unicode_label(label: str) -> str:
    if not label.startswith("xn--"):
        return label
    try:
        return idna.decode(label)
    except UnicodeError:  # no valid A-label: as typed
        return label


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def _create(self, email: str, password: str | None, **extra: object) -> "User":
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=normalize_email_address(email), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra: object) -> "User":
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra: object) -> "User":
        extra.setdefault("email_verified_at", timezone.now())
        return self._create(email, password, is_staff=True, is_superuser=True, **extra)

    def get_by_natural_key(self, username: str | None) -> "User":
        return self.get(email=normalize_email_address(username or ""))


class User(AbstractBaseUser, PermissionsMixin):
    email = models.EmailField(_("email address"), unique=True)
    full_name = models.CharField(_("full name"), max_length=150, blank=True)
    # Empty until the user picks one: then the browser's language decides
    # (accounts.languages).
    language = models.CharField(_("language"), max_length=8, blank=True, choices=settings.LANGUAGES)
    is_staff = models.BooleanField(_("staff"), default=False, help_text=_("May log into the staff admin."))
    is_active = models.BooleanField(_("active"), default=True)
    email_verified_at = models.DateTimeField(_("email verified"), null=True, blank=True)
    date_joined = models.DateTimeField(_("joined"), default=timezone.now)
    # Set by staff: how many organisations this user may create (empty: the
    # MAX_ORGANISATIONS_PER_USER setting), and whether a suspended
    # organisation the user owns or administers still stops them.
    max_organisations = models.PositiveSmallIntegerField(
        _("max organisations"),
        null=True,
        blank=True,
        help_text=_("Organisations this user may create. Empty: MAX_ORGANISATIONS_PER_USER."),
    )
    suspension_block_lifted = models.BooleanField(
        _("suspension block lifted"),
        default=False,
        help_text=_("May create organisations although an organisation they own or administer is suspended."),
    )

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        verbose_name = _("user")
        verbose_name_plural = _("users")
        constraints = [models.UniqueConstraint(Lower("email"), name="user_email_ci_unique")]

    def __str__(self) -> str:
        return self.email

    def clean(self) -> None:
        super().clean()
        self.email = normalize_email_address(self.email)

    @property
    def is_email_verified(self) -> bool:
        return self.email_verified_at is not None


class Tenant(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", _("Active")
        SUSPENDED = "suspended", _("Suspended")

    public_id = models.UUIDField(_("public ID"), default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(_("name"), max_length=120)
    slug = models.SlugField(_("slug"), max_length=60, unique=True)
    status = models.CharField(_("status"), max_length=12, choices=Status.choices, default=Status.ACTIVE)
    suspended_reason = models.CharField(_("reason for suspension"), max_length=200, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    # For members who have chosen no language and whose browser asks for
    # none we have, and for the letters inviting people in.
    default_language = models.CharField(
        _("default language"), max_length=8, choices=settings.LANGUAGES, default=settings.LANGUAGE_CODE
    )
    # Every time the tenant reads or types is in this zone (accounts.timezones).
    time_zone = models.CharField(
        _("time zone"),
        max_length=64,
        default=DEFAULT_ZONE,
        validators=[validate_time_zone],
        help_text=_("Times are shown, and mailings scheduled, in this zone."),
    )
    # The account that created the organisation. Its organisations share
    # one daily quota on each platform server (mailing.limits) and count
    # against its cap (accounts.selectors.organisation_refusal), whoever
    # owns them later.
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="created_tenants",
        help_text=_("The account that created it: its organisations share their platform quotas."),
        verbose_name=_("created by"),
    )

    class Meta:
        verbose_name = _("organisation")
        verbose_name_plural = _("organisations")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE


class Role(models.TextChoices):
    OWNER = "owner", _("Owner")
    ADMIN = "admin", _("Admin")
    MEMBER = "member", _("Member")


# Roles that manage servers and the team; members work with content.
MANAGER_ROLES = frozenset({Role.OWNER, Role.ADMIN})


class Membership(models.Model):
    public_id = models.UUIDField(_("public ID"), default=uuid.uuid4, unique=True, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="memberships",
        verbose_name=_("user"),
        db_index=False,
    )
    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, related_name="memberships", verbose_name=_("organisation")
    )
    role = models.CharField(_("role"), max_length=10, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    class Meta:
        verbose_name = _("membership")
        verbose_name_plural = _("memberships")
        constraints = [models.UniqueConstraint(fields=["user", "tenant"], name="membership_unique")]
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"{self.user} in {self.tenant} ({self.role})"

    @property
    def can_manage(self) -> bool:
        return self.role in MANAGER_ROLES


class Invitation(models.Model):
    public_id = models.UUIDField(_("public ID"), default=uuid.uuid4, unique=True, editable=False)
    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, related_name="invitations", verbose_name=_("organisation")
    )
    email = models.EmailField(_("email address"))
    role = models.CharField(_("role"), max_length=10, choices=Role.choices, default=Role.MEMBER)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+", verbose_name=_("invited by")
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    accepted_at = models.DateTimeField(_("accepted"), null=True, blank=True)
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True)

    class Meta:
        verbose_name = _("invitation")
        verbose_name_plural = _("invitations")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.email} → {self.tenant}"

    @property
    def is_pending(self) -> bool:
        return self.accepted_at is None and self.revoked_at is None


class AuthThrottle(models.Model):
    """Failed authentication attempts per key (an account or a client
    address), counted in the database so every web worker sees them."""

    key = models.CharField(_("key"), max_length=128, unique=True)
    failures = models.PositiveIntegerField(_("failures"), default=0)
    first_failure_at = models.DateTimeField(_("first failure"), default=timezone.now)
    locked_until = models.DateTimeField(_("locked until"), null=True, blank=True)

    class Meta:
        verbose_name = _("failed sign-in counter")
        verbose_name_plural = _("failed sign-in counters")

    def __str__(self) -> str:
        return self.key


class UserSession(AbstractBaseSession):
    """Django's database session with the signed-in user's id beside it, so
    that "end every other session of this user" is one indexed DELETE
    (accounts.sessions). The id is written on every save, from the session's
    own data, so a cycled key or a logout never leaves it stale."""

    user_id = models.BigIntegerField(_("user ID"), null=True, db_index=True)

    @classmethod
    def get_session_store_class(cls) -> type:
        from .sessions import SessionStore

        return SessionStore


class RateCounter(models.Model):
    """Events counted per key in a window that opens with the first one
    (accounts.ratelimits): the platform's own letters per address, per user
    and per client address. Keys are hashed, so no address is kept in clear."""

    key = models.CharField(_("key"), max_length=64, unique=True)
    count = models.PositiveIntegerField(_("count"), default=0)
    window_start = models.DateTimeField(_("window opened"), default=timezone.now)
    expires_at = models.DateTimeField(_("expires"), db_index=True)  # when the window closes

    class Meta:
        verbose_name = _("rate counter")
        verbose_name_plural = _("rate counters")

    def __str__(self) -> str:
        return f"{self.key[:12]}…: {self.count}"


class ApiScope(models.TextChoices):
    """What an API key may do (mailing.api.permissions)."""

    READ = "read", _("Read contacts, lists, templates, mailings, bounces and unsubscribes")
    CONTACTS = "contacts", _("Change contacts, lists and suppressions")
    MAILINGS = "mailings", _("Create, start, pause, resume and cancel mailings")
    SERVERS_READ = "servers-read", _("Read servers: limits, what is left, health")


class ApiKey(models.Model):
    """A key a tenant's integration (a CRM) calls the API with. Only the
    SHA-256 of the secret is kept: the secret is 256 random bits, so a slow
    hash would add nothing but cost on every request. `prefix` is the
    secret's visible start, to tell keys apart on the page."""

    public_id = models.UUIDField(_("public ID"), default=uuid.uuid4, unique=True, editable=False)
    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, related_name="api_keys", verbose_name=_("organisation")
    )
    name = models.CharField(_("name"), max_length=100)
    scopes = models.JSONField(_("scopes"), default=list)  # ApiScope values
    prefix = models.CharField(_("prefix"), max_length=16)
    secret_hash = models.CharField(_("secret hash"), max_length=64, unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("created by"),
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    last_used_at = models.DateTimeField(_("last used at"), null=True, blank=True)
    revoked_at = models.DateTimeField(_("revoked at"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("API key")
        verbose_name_plural = _("API keys")

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def scope_labels(self) -> list[str]:
        return [str(ApiScope(s).label) for s in self.scopes if s in ApiScope.values]


class ApiIdempotency(models.Model):
    """The answer to a POST sent with an Idempotency-Key, kept for a day
    (API_IDEMPOTENCY_HOURS): the same key again replays it. Per key and
    tenant: two integrations never see each other's answers."""

    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, related_name="+", verbose_name=_("organisation"), db_index=False
    )
    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="+", verbose_name=_("API key"))
    key = models.CharField(_("idempotency key"), max_length=255)
    fingerprint = models.CharField(_("fingerprint"), max_length=64)  # SHA-256 of the method, the path and the body
    status = models.PositiveSmallIntegerField(_("response status"), null=True)  # None while the first request runs
    body = models.JSONField(_("response body"), null=True, encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    expires_at = models.DateTimeField(_("expires at"), db_index=True)

    class Meta:
        verbose_name = _("API idempotency key")
        verbose_name_plural = _("API idempotency keys")
        constraints = [
            models.UniqueConstraint(fields=["tenant", "api_key", "key"], name="api_idempotency_unique"),
        ]

    def __str__(self) -> str:
        return self.key


# The webhook models live in their own package; imported here so that the
# app registers them.
from .webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookOnce  # noqa: E402, F401
