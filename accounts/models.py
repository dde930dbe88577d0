import uuid

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.contrib.sessions.base_session import AbstractBaseSession
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .timezones import DEFAULT_ZONE, validate_time_zone


def normalize_email_address(email: str) -> str:
    """Lower-case the whole address: mailbox providers treat the local part
    case-insensitively in practice, and one person must not get two accounts."""
    return email.strip().lower()


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
    email = models.EmailField(unique=True)
    full_name = models.CharField(max_length=150, blank=True)
    # Empty until the user picks one: then the browser's language decides
    # (accounts.languages).
    language = models.CharField(max_length=8, blank=True, choices=settings.LANGUAGES)
    is_staff = models.BooleanField(default=False, help_text=_("May log into the staff admin."))
    is_active = models.BooleanField(default=True)
    email_verified_at = models.DateTimeField(null=True, blank=True)
    date_joined = models.DateTimeField(default=timezone.now)
    # Set by staff: how many organisations this user may create (empty: the
    # MAX_ORGANISATIONS_PER_USER setting), and whether a suspended
    # organisation the user owns or administers still stops them.
    max_organisations = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text=_("Organisations this user may create. Empty: MAX_ORGANISATIONS_PER_USER.")
    )
    suspension_block_lifted = models.BooleanField(
        default=False,
        help_text=_("May create organisations although an organisation they own or administer is suspended."),
    )

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
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

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=60, unique=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.ACTIVE)
    suspended_reason = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # For members who have chosen no language and whose browser asks for
    # none we have, and for the letters inviting people in.
    default_language = models.CharField(max_length=8, choices=settings.LANGUAGES, default=settings.LANGUAGE_CODE)
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
    )

    class Meta:
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
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "tenant"], name="membership_unique")]
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"{self.user} in {self.tenant} ({self.role})"

    @property
    def can_manage(self) -> bool:
        return self.role in MANAGER_ROLES


class Invitation(models.Model):
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    invited_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    accepted_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.email} → {self.tenant}"

    @property
    def is_pending(self) -> bool:
        return self.accepted_at is None and self.revoked_at is None


class AuthThrottle(models.Model):
    """Failed authentication attempts per key (an account or a client
    address), counted in the database so every web worker sees them."""

    key = models.CharField(max_length=128, unique=True)
    failures = models.PositiveIntegerField(default=0)
    first_failure_at = models.DateTimeField(default=timezone.now)
    locked_until = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.key


class UserSession(AbstractBaseSession):
    """Django's database session with the signed-in user's id beside it, so
    that "end every other session of this user" is one indexed DELETE
    (accounts.sessions). The id is written on every save, from the session's
    own data, so a cycled key or a logout never leaves it stale."""

    user_id = models.BigIntegerField(null=True, db_index=True)

    @classmethod
    def get_session_store_class(cls) -> type:
        from .sessions import SessionStore

        return SessionStore


class RateCounter(models.Model):
    """Events counted per key in a window that opens with the first one
    (accounts.ratelimits): the platform's own letters per address, per user
    and per client address. Keys are hashed, so no address is kept in clear."""

    key = models.CharField(max_length=64, unique=True)
    count = models.PositiveIntegerField(default=0)
    window_start = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)  # when the window closes

    def __str__(self) -> str:
        return f"{self.key[:12]}…: {self.count}"


# The webhook models live in their own package; imported here so that the
# app registers them.
from .webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookOnce  # noqa: E402, F401
