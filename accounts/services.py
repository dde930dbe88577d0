"""Writes for tenants, users, memberships and two-factor devices. Each
function is keyword-only and runs in one transaction."""

import secrets
import time

from anyascii import anyascii
from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify
from django.utils.translation import gettext as _
from django_otp.oath import TOTP
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice, default_key

from . import mail_limits, recovery, selectors, tasks
from .models import Invitation, Membership, Role, Tenant, User, normalize_email_address
from .sessions import end_sessions
from .timezones import DEFAULT_ZONE


def _unique_slug(name: str) -> str:
    # Transliterated first: "Ромашка" is romashka, not a random team-xxxxxx.
    base = slugify(anyascii(name))[:50] or "team"
    slug = base
    while Tenant.objects.filter(slug=slug).exists():
        slug = f"{base}-{secrets.token_hex(3)}"
    return slug


@transaction.atomic
def tenant_create(
    *, name: str, owner: User, time_zone: str = DEFAULT_ZONE, language: str = settings.LANGUAGE_CODE
) -> Tenant:
    """A new organisation owned by `owner`, who created it. Refused past
    the user's cap or while an organisation they manage is suspended."""
    # The user's row lock serialises their creations, so the cap is exact.
    User.objects.select_for_update().only("pk").get(pk=owner.pk)
    if (refusal := selectors.organisation_refusal(owner)) is not None:
        raise ValidationError(refusal)
    tenant = Tenant(
        name=name.strip(), slug=_unique_slug(name), created_by=owner, time_zone=time_zone, default_language=language
    )
    tenant.full_clean()
    tenant.save()
    Membership.objects.create(user=owner, tenant=tenant, role=Role.OWNER)
    return tenant


@transaction.atomic
def tenant_settings_update(*, tenant: Tenant, time_zone: str) -> Tenant:
    """The organisation's settings, as owners and admins change them."""
    tenant.time_zone = time_zone
    tenant.full_clean(validate_unique=False, validate_constraints=False)
    tenant.save(update_fields=["time_zone"])
    return tenant


@transaction.atomic
def user_signup(
    *,
    email: str,
    password: str,
    organisation: str,
    full_name: str = "",
    base_url: str,
    time_zone: str = DEFAULT_ZONE,
    language: str = settings.LANGUAGE_CODE,
) -> User | None:
    """A new account and its organisation, whose default language is the
    one the sign-up page was in (the verification letter's, too); None when
    the address has an account already. Then nothing is made and its owner
    is sent a letter instead (links to log in and to reset the password),
    so that the caller answers alike and the page tells nobody whether the
    address has an account (an account not yet confirmed gets its link
    again). Either way the password is hashed and one letter is queued, so
    neither does the time taken."""
    user = User(email=normalize_email_address(email), full_name=full_name.strip())
    validate_password(password, user)
    user.set_password(password)
    if not _saved_new(user):  # an account, or a double click's first request made it meanwhile
        existing = User.objects.get(email=user.email)
        if not existing.is_email_verified:  # its owner cannot log in before the link: a new one
            email_verification_send(user=existing, base_url=base_url)
        else:
            transaction.on_commit(lambda: tasks.send_signup_attempt_email.delay(existing.pk, base_url))
        return None
    tenant_create(name=organisation, owner=user, time_zone=time_zone, language=language)
    email_verification_send(user=user, base_url=base_url)
    return user


def _saved_new(user: User) -> bool:
    """Checked and saved; False when the address has an account already: a
    double click, the first request having made it while this one hashed
    the password. The address's uniqueness is the database's to say."""
    user.full_clean(validate_unique=False, validate_constraints=False)
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError:
        return False
    return True


def email_verification_send(*, user: User, base_url: str) -> None:
    transaction.on_commit(lambda: tasks.send_verification_email.delay(user.pk, base_url))


def password_reset_send(*, user: User, base_url: str) -> None:
    """The reset letter goes from the `mail` queue: the request neither
    waits for the mail server nor shows, by how long it takes, whether the
    address has an account."""
    transaction.on_commit(lambda: tasks.send_password_reset_email.delay(user.pk, base_url))


def email_verify(*, user: User) -> None:
    user.email_verified_at = timezone.now()
    user.save(update_fields=["email_verified_at"])


# Two-factor ---------------------------------------------------------------
#
# The secret being enrolled lives in the session that asked for it
# (accounts.views.two_factor), never in a row another session could read: a
# device exists only once its code is confirmed. Replacing the app keeps the
# old device and recovery codes until the new app is confirmed, so the
# account is never without a second factor and a password alone never
# reaches the enrolment page of an account that had one.


class AccountExists(Exception):
    """The invited address made its account while this one was being made
    (a double click on the invitation's sign-up)."""


class EnrolmentTaken(Exception):
    """Another session confirmed an app first (the first enrolment)."""


def totp_new_key() -> str:
    return default_key()


def totp_device_for(*, user: User, key: str) -> TOTPDevice:
    """The unsaved device of a pending key, for its QR code and setup key."""
    return TOTPDevice(user=user, key=key, name=_("Authenticator app"))


@transaction.atomic
def totp_enrol(*, user: User, key: str, token: str, replacing: bool) -> TOTPDevice | None:
    """Confirm the pending key with a code of the app; the new device replaces
    every earlier device and recovery code. None when the code is wrong.
    Without `replacing` (a session that has not passed a second factor), an
    account that already has an app is refused."""
    User.objects.select_for_update().filter(pk=user.pk).get()  # one enrolment at a time per user
    if not replacing and has_confirmed_totp(user):
        raise EnrolmentTaken
    device = totp_device_for(user=user, key=key)
    device.confirmed = True
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time()
    if not (token.isdigit() and totp.verify(int(token), device.tolerance)):
        return None
    device.last_t, device.drift = totp.t(), totp.drift  # the enrolment code may not log in again
    TOTPDevice.objects.filter(user=user).delete()
    StaticDevice.objects.filter(user=user).delete()
    device.save()
    return device


@transaction.atomic
def recovery_codes_create(*, user: User, count: int = 10) -> list[str]:
    """Replace the user's recovery codes (kept as digests, accounts.recovery);
    the plain codes are returned once."""
    device, _created = StaticDevice.objects.get_or_create(user=user, defaults={"name": _("Recovery codes")})
    return recovery.make(device=device, count=count)


def has_confirmed_totp(user: User) -> bool:
    return TOTPDevice.objects.filter(user=user, confirmed=True).exists()


# Team -----------------------------------------------------------------------


def _require_manager(membership: Membership) -> None:
    if not membership.can_manage:
        raise PermissionDenied("Only owners and admins manage the team.")


@transaction.atomic
def invitation_create(
    *, tenant: Tenant, email: str, role: str, by: Membership, base_url: str, client: str = ""
) -> Invitation:
    """Invite `email` (a new invitation replaces a pending one). Raises
    MailLimited past the platform mail limits for the address, the inviting
    user or the client address."""
    _require_manager(by)
    if role == Role.OWNER and by.role != Role.OWNER:
        raise PermissionDenied("Only an owner can invite another owner.")
    email = normalize_email_address(email)
    if Membership.objects.filter(tenant=tenant, user__email=email).exists():
        raise ValidationError({"email": _("This person is already a member.")})
    mail_limits.allow(mail_limits.Kind.INVITATION, to=email, user=by.user, client=client)
    Invitation.objects.filter(tenant=tenant, email=email, accepted_at=None, revoked_at=None).update(
        revoked_at=timezone.now()
    )
    invitation = Invitation(tenant=tenant, email=email, role=role, invited_by=by.user)
    invitation.full_clean()
    invitation.save()
    transaction.on_commit(lambda: tasks.send_invitation_email.delay(invitation.pk, base_url))
    return invitation


def invitation_revoke(*, invitation: Invitation, by: Membership) -> None:
    _require_manager(by)
    invitation.revoked_at = timezone.now()
    invitation.save(update_fields=["revoked_at"])


@transaction.atomic
def invitation_accept(*, invitation: Invitation, user: User) -> Membership:
    invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
    if not invitation.is_pending:
        raise ValidationError(_("This invitation was already used."))
    if not selectors.invitation_stands(invitation):  # its inviter left a moment ago
        raise ValidationError(_("This invitation is no longer valid."))
    if normalize_email_address(user.email) != normalize_email_address(invitation.email):
        raise ValidationError(_("This invitation was sent to %(email)s.") % {"email": invitation.email})
    invitation.accepted_at = timezone.now()
    invitation.save(update_fields=["accepted_at"])
    if not user.is_email_verified:
        # The link reached this address, which proves the user owns it.
        email_verify(user=user)
    membership, _created = Membership.objects.get_or_create(
        user=user, tenant=invitation.tenant, defaults={"role": invitation.role}
    )
    return membership


def _lock_owners(*, membership: Membership, by: Membership) -> list[int]:
    """Locks the tenant's owner memberships until the transaction ends and
    returns their ids; then reads both roles afresh. Two owners leaving or
    demoting each other at once thus take turns, and the second sees the
    first one's change (a COUNT ... FOR UPDATE would lock nothing). Every
    change of the team locks the same rows in the same order first, so
    they cannot deadlock."""
    owners = list(
        Membership.objects.select_for_update()
        .filter(tenant_id=membership.tenant_id, role=Role.OWNER)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    roles = dict(Membership.objects.filter(pk__in=[membership.pk, by.pk]).values_list("pk", "role"))
    if by.pk not in roles:
        raise PermissionDenied("You are no longer a member of this organisation.")
    if membership.pk not in roles:
        raise ValidationError(_("This person is no longer a member."))
    membership.role, by.role = roles[membership.pk], roles[by.pk]
    return owners


@transaction.atomic
def membership_change_role(*, membership: Membership, role: str, by: Membership) -> None:
    owners = _lock_owners(membership=membership, by=by)
    _require_manager(by)
    touches_owner = Role.OWNER in (membership.role, role)
    if touches_owner and by.role != Role.OWNER:
        raise PermissionDenied("Only an owner can grant or take away the owner role.")
    if membership.role == Role.OWNER and role != Role.OWNER and len(owners) <= 1:
        raise ValidationError(_("The organisation needs at least one owner."))
    membership.role = role
    membership.full_clean()
    membership.save(update_fields=["role"])


@transaction.atomic
def membership_remove(*, membership: Membership, by: Membership) -> None:
    owners = _lock_owners(membership=membership, by=by)
    if membership.pk != by.pk:
        _require_manager(by)
        if membership.role == Role.OWNER and by.role != Role.OWNER:
            raise PermissionDenied("Only an owner can remove another owner.")
    if membership.role == Role.OWNER and len(owners) <= 1:
        raise ValidationError(_("The last owner cannot leave. Make someone else owner first."))
    membership.delete()


# Staff ----------------------------------------------------------------------


def tenant_suspend(*, tenant: Tenant, reason: str = "") -> None:
    tenant.status = Tenant.Status.SUSPENDED
    tenant.suspended_reason = reason
    tenant.save(update_fields=["status", "suspended_reason"])


def tenant_reactivate(*, tenant: Tenant) -> None:
    tenant.status = Tenant.Status.ACTIVE
    tenant.suspended_reason = ""
    tenant.save(update_fields=["status", "suspended_reason"])


@transaction.atomic
def user_signup_invited(*, invitation: Invitation, password: str, full_name: str = "") -> tuple[User, Membership]:
    """An invited person creates an account and joins in one step; the
    invitation link proves the address, so it counts as verified."""
    user = User(email=invitation.email, full_name=full_name.strip())
    validate_password(password, user)
    user.set_password(password)
    if not _saved_new(user):
        raise AccountExists
    return user, invitation_accept(invitation=invitation, user=user)


@transaction.atomic
def two_factor_reset_by_staff(*, user: User) -> None:
    """A user who lost both the app and the recovery codes: staff remove
    their devices and end their sessions; the next login asks them to enrol
    a new app."""
    TOTPDevice.objects.filter(user=user).delete()
    StaticDevice.objects.filter(user=user).delete()
    end_sessions(user=user)
