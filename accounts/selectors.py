"""Reads for the tenant's home page, and who may create an organisation."""

from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.conf import settings
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from .models import MANAGER_ROLES, Invitation, Membership, Role, Tenant, User

if TYPE_CHECKING:
    from mailing.selectors import FirstSteps


@dataclass(frozen=True)
class ChecklistItem:
    key: str
    title: str
    text: str
    done: bool
    url_name: str | None


def getting_started(
    tenant: Tenant, *, has_server: bool | None = None, steps: "FirstSteps | None" = None
) -> list[ChecklistItem]:
    """`has_server` and `steps` when the caller has read them already (the
    dashboard's poll, with its servers and its version stamp)."""
    # Each app answers for its own data; the items tick as that data appears.
    from mailing import selectors as mailing
    from servers import selectors as servers

    if steps is None:
        steps = mailing.first_steps(tenant)
    if has_server is None:
        has_server = servers.has_own_server(tenant)
    return [
        ChecklistItem(
            "server",
            _("Add a sending server"),
            _("Connect a mailbox you own (Yandex, Mail.ru, Gmail, your company server) with its limits."),
            has_server,
            "servers:list",
        ),
        ChecklistItem(
            "template",
            _("Create a template"),
            _("Write the subject and body, with a fixed or substituted sender."),
            steps.template,
            "templates:list",
        ),
        ChecklistItem(
            "contacts",
            _("Import contacts"),
            _("Upload a CSV of the people you write to."),
            steps.contacts,
            "contacts:import_upload",
        ),
        ChecklistItem(
            "mailing",
            _("Send a first mailing"),
            _("Pick a template and a list, check the senders, and start."),
            steps.mailing,
            "mailings:new",
        ),
    ]


# Organisations ----------------------------------------------------------------


def organisation_refusal(user: User) -> str | None:
    """Why `user` may not create another organisation now, or None. A user
    who owns or administers a suspended organisation (or created one) could
    otherwise go on under a new name; and every organisation would bring
    its own platform quota and connection tests."""
    if user.is_staff:
        return None
    if not user.suspension_block_lifted and suspended_tenants_of(user).exists():
        return _(
            "An organisation you own or administer is suspended, so you cannot create another one. Contact support."
        )
    cap = settings.MAX_ORGANISATIONS_PER_USER if user.max_organisations is None else user.max_organisations
    if Tenant.objects.filter(created_by=user).count() >= cap:
        return ngettext(
            "You have created %(cap)s organisation, the most an account may. Contact support for more.",
            "You have created %(cap)s organisations, the most an account may. Contact support for more.",
            cap,
        ) % {"cap": cap}
    return None


def suspended_tenants_of(user: User) -> QuerySet[Tenant]:
    managed = Q(memberships__user=user, memberships__role__in=MANAGER_ROLES)
    return Tenant.objects.filter(managed | Q(created_by=user), status=Tenant.Status.SUSPENDED)


def quota_group(tenant: Tenant) -> QuerySet[Tenant]:
    """The organisations that share `tenant`'s platform quotas: those its
    creator created (just itself when the creator is unknown)."""
    if tenant.created_by_id is None:
        return Tenant.objects.filter(pk=tenant.pk)
    return Tenant.objects.filter(created_by_id=tenant.created_by_id)


def standing_invitations(tenant: Tenant) -> QuerySet[Invitation]:
    """The invitations of `tenant` still waiting for an answer that could be
    accepted (invitation_stands, in one query): a lapsed one is no longer
    pending."""
    inviter = Membership.objects.filter(tenant_id=OuterRef("tenant_id"), user_id=OuterRef("invited_by_id"))
    by_owner = Q(role=Role.OWNER) & Exists(inviter.filter(role=Role.OWNER))
    by_manager = ~Q(role=Role.OWNER) & Exists(inviter.filter(role__in=MANAGER_ROLES))
    pending = Invitation.objects.filter(tenant=tenant, accepted_at=None, revoked_at=None, invited_by__isnull=False)
    return pending.filter(by_owner | by_manager)


def invitation_stands(invitation: Invitation) -> bool:
    """Whether whoever sent the invitation could still send it: an invitation
    lapses when its inviter leaves the team, is removed, or no longer holds a
    role that may invite to its role (a removed admin's invitation to a
    second address of their own was a way back in)."""
    roles = {Role.OWNER} if invitation.role == Role.OWNER else MANAGER_ROLES
    inviter = Membership.objects.filter(tenant_id=invitation.tenant_id, user_id=invitation.invited_by_id)
    return invitation.invited_by_id is not None and inviter.filter(role__in=roles).exists()
