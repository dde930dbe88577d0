"""Writes for tenants, users, memberships and two-factor devices. Each
function is keyword-only and runs in one transaction."""

import secrets

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from . import mail_limits, selectors, tasks
from .models import Invitation, Membership, Role, Tenant, User, normalize_email_address


def _unique_slug(name: str) -> str:
    base = slugify(name)[:50] or "team"
    slug = base
    while Tenant.objects.filter(slug=slug).exists():
        slug = f"{base}-{secrets.token_hex(3)}"
    return slug


@transaction.atomic
def tenant_create(*, name: str, owner: User) -> Tenant:
    """A new organisation owned by `owner`, who created it. Refused past
    the user's cap or while an organisation they manage is suspended."""
    # The user's row lock serialises their creations, so the cap is exact.
    User.objects.select_for_update().only("pk").get(pk=owner.pk)
    if (refusal := selectors.organisation_refusal(owner)) is not None:
        raise ValidationError(refusal)
    tenant = Tenant(name=name.strip(), slug=_unique_slug(name), created_by=owner)
    tenant.full_clean()
    tenant.save()
    Membership.objects.create(user=owner, tenant=tenant, role=Role.OWNER)
    return tenant


@transaction.atomic
def user_signup(*, email: str, password: str, organisation: str, full_name: str = "", base_url: str) -> User:
    user = User(email=normalize_email_address(email), full_name=full_name.strip())
    validate_password(password, user)
    user.set_password(password)
    user.full_clean()
    user.save()
    tenant_create(name=organisation, owner=user)
    email_verification_send(user=user, base_url=base_url)
    return user


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


def totp_pending_device(*, user: User) -> TOTPDevice:
    """The unconfirmed device being enrolled, created on first call."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).first()
    return device or TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=False)


@transaction.atomic
def totp_confirm(*, device: TOTPDevice, token: str) -> bool:
    if not device.verify_token(token):
        return False
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    TOTPDevice.objects.filter(user=device.user, confirmed=False).delete()
    return True


@transaction.atomic
def recovery_codes_create(*, user: User, count: int = 10) -> list[str]:
    """Replace the user's recovery codes; the plain codes are returned once."""
    device, _ = StaticDevice.objects.get_or_create(user=user, defaults={"name": "Recovery codes"})
    device.token_set.all().delete()
    codes = [StaticToken.random_token() for _ in range(count)]
    StaticToken.objects.bulk_create(StaticToken(device=device, token=c) for c in codes)
    return codes


@transaction.atomic
def two_factor_reset(*, user: User) -> None:
    TOTPDevice.objects.filter(user=user).delete()
    StaticDevice.objects.filter(user=user).delete()


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
        raise ValidationError({"email": "This person is already a member."})
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
        raise ValidationError("This invitation was already used.")
    if normalize_email_address(user.email) != invitation.email:
        raise ValidationError(f"This invitation was sent to {invitation.email}.")
    invitation.accepted_at = timezone.now()
    invitation.save(update_fields=["accepted_at"])
    if not user.is_email_verified:
        # The link reached this address, which proves the user owns it.
        email_verify(user=user)
    membership, _ = Membership.objects.get_or_create(
        user=user, tenant=invitation.tenant, defaults={"role": invitation.role}
    )
    return membership


def _owner_count(tenant: Tenant) -> int:
    return Membership.objects.select_for_update().filter(tenant=tenant, role=Role.OWNER).count()


@transaction.atomic
def membership_change_role(*, membership: Membership, role: str, by: Membership) -> None:
    _require_manager(by)
    touches_owner = Role.OWNER in (membership.role, role)
    if touches_owner and by.role != Role.OWNER:
        raise PermissionDenied("Only an owner can grant or take away the owner role.")
    if membership.role == Role.OWNER and role != Role.OWNER and _owner_count(membership.tenant) <= 1:
        raise ValidationError("The organisation needs at least one owner.")
    membership.role = role
    membership.full_clean()
    membership.save(update_fields=["role"])


@transaction.atomic
def membership_remove(*, membership: Membership, by: Membership) -> None:
    if membership.pk != by.pk:
        _require_manager(by)
        if membership.role == Role.OWNER and by.role != Role.OWNER:
            raise PermissionDenied("Only an owner can remove another owner.")
    if membership.role == Role.OWNER and _owner_count(membership.tenant) <= 1:
        raise ValidationError("The last owner cannot leave. Make someone else owner first.")
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
    user.full_clean()
    user.save()
    return user, invitation_accept(invitation=invitation, user=user)
