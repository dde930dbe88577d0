from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm
from django.contrib.auth.forms import UserChangeForm as BaseUserChangeForm
from django.db.models import Count, Exists, F, OuterRef, Prefetch, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from . import services
from .models import Invitation, Membership, Role, Tenant, User


def _unregister_otp_devices() -> None:
    """django-otp registers its devices in the admin (its admin modules are
    imported before this one, see INSTALLED_APPS): an app's key with its QR
    code, the recovery codes in plain text, and forms to add either.
    Whoever reads them has the user's second factor; whoever adds one signs
    in as the user. Staff only ever reset the two-factor login (UserAdmin's
    action), so the pages go."""
    for device in (TOTPDevice, StaticDevice):
        if admin.site.is_registered(device):
            admin.site.unregister(device)


_unregister_otp_devices()


class UserCreationForm(AdminUserCreationForm):
    class Meta:
        model = User
        fields = ("email",)
        field_classes: dict = {}


class UserChangeForm(BaseUserChangeForm):
    class Meta:
        model = User
        fields = "__all__"
        field_classes: dict = {}


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    fields = ("user", "role", "created_at")
    readonly_fields = ("created_at",)
    autocomplete_fields = ("user",)


class UserMembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    fields = ("tenant", "role", "created_at")
    readonly_fields = ("created_at",)
    autocomplete_fields = ("tenant",)


class SharedOwnerFilter(admin.SimpleListFilter):
    """Organisations that one person runs together: one of its owners owns
    another organisation, or its creator created another (they share the
    platform quotas)."""

    title = _("shares an owner")
    parameter_name = "shared"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("yes", _("With another organisation")), ("no", _("With none"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> QuerySet[Tenant]:
        if self.value() not in ("yes", "no"):
            return queryset
        owners = Membership.objects.filter(tenant=OuterRef(OuterRef("pk")), role=Role.OWNER).values("user_id")
        owner_elsewhere = Membership.objects.filter(role=Role.OWNER, user_id__in=owners).exclude(tenant=OuterRef("pk"))
        creator_elsewhere = Tenant.objects.filter(created_by=OuterRef("created_by")).exclude(pk=OuterRef("pk"))
        shared = Exists(owner_elsewhere) | Exists(creator_elsewhere)
        return queryset.filter(shared) if self.value() == "yes" else queryset.exclude(shared)


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "status", "member_count", "owners", "creator", "created_at")
    list_filter = ("status", SharedOwnerFilter, "created_at")
    search_fields = ("name", "slug", "memberships__user__email", "created_by__email")
    readonly_fields = ("public_id", "created_at")
    autocomplete_fields = ("created_by",)
    inlines = [MembershipInline]
    actions = ["suspend", "reactivate"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Tenant]:
        created_together = (
            Tenant.objects.filter(created_by=OuterRef("created_by"))
            .order_by()
            .values("created_by")
            .annotate(n=Count("pk"))
            .values("n")
        )
        owner_memberships = Membership.objects.filter(role=Role.OWNER).select_related("user").order_by("user__email")
        return (
            super()
            .get_queryset(request)
            .select_related("created_by")
            .prefetch_related(Prefetch("memberships", queryset=owner_memberships, to_attr="owner_memberships"))
            # distinct: a search by member email joins the memberships again.
            .annotate(
                member_total=Count("memberships", distinct=True),
                group_size=Coalesce(Subquery(created_together), 1),
            )
        )

    @admin.display(description=_("Members"), ordering="member_total")
    def member_count(self, tenant: Tenant) -> int:
        return tenant.member_total

    @admin.display(description=_("Owners"))
    def owners(self, tenant: Tenant) -> str:
        return format_html_join(", ", "{}", ((m.user.email,) for m in tenant.owner_memberships))

    @admin.display(description=_("Created by (shares platform quotas)"), ordering=F("created_by__email").asc())
    def creator(self, tenant: Tenant) -> str:
        if tenant.created_by is None:
            return "—"
        if tenant.group_size <= 1:
            return tenant.created_by.email
        url = reverse("admin:accounts_tenant_changelist") + f"?created_by__id__exact={tenant.created_by_id}"
        together = ngettext("%(count)d organisation", "%(count)d organisations", tenant.group_size) % {
            "count": tenant.group_size
        }
        return format_html('{} · <a href="{}">{}</a>', tenant.created_by.email, url, together)

    @admin.action(description=_("Suspend selected tenants"))
    def suspend(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        for tenant in queryset:
            services.tenant_suspend(tenant=tenant, reason=_("Suspended by staff"))
        count = queryset.count()
        done = ngettext("Suspended %(count)d organisation.", "Suspended %(count)d organisations.", count)
        self.message_user(request, done % {"count": count}, messages.SUCCESS)

    @admin.action(description=_("Reactivate selected tenants"))
    def reactivate(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        for tenant in queryset:
            services.tenant_reactivate(tenant=tenant)
        count = queryset.count()
        done = ngettext("Reactivated %(count)d organisation.", "Reactivated %(count)d organisations.", count)
        self.message_user(request, done % {"count": count}, messages.SUCCESS)


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    ordering = ("email",)
    list_display = ("email", "full_name", "is_staff", "is_active", "email_verified_at", "date_joined")
    list_filter = ("is_staff", "is_superuser", "is_active")
    search_fields = ("email", "full_name")
    readonly_fields = ("last_login", "date_joined")
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        (_("Profile"), {"fields": ("full_name", "email_verified_at")}),
        (_("Permissions"), {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        (_("Organisations"), {"fields": ("max_organisations", "suspension_block_lifted")}),
        (_("Dates"), {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)
    inlines = [UserMembershipInline]
    form = UserChangeForm
    add_form = UserCreationForm
    actions = ["resend_verification", "reset_two_factor"]

    @admin.action(description=_("Send the verification email again (unverified users)"))
    def resend_verification(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        users = list(queryset.filter(email_verified_at=None, is_active=True))
        for user in users:
            services.email_verification_send(user=user, base_url=settings.SITE_URL)
        self.message_user(request, _("Verification emails queued: %d.") % len(users), messages.SUCCESS)

    @admin.action(description=_("Reset two-factor login (the user enrols again; all their sessions end)"))
    def reset_two_factor(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        users = list(queryset)
        for user in users:
            services.two_factor_reset_by_staff(user=user)
        self.message_user(
            request,
            ngettext("Two-factor login reset for %d user.", "Two-factor login reset for %d users.", len(users))
            % len(users),
            messages.SUCCESS,
        )


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = ("email", "tenant", "role", "created_at", "accepted_at", "revoked_at")
    list_filter = ("role",)
    search_fields = ("email", "tenant__name")
    readonly_fields = ("public_id", "created_at")
