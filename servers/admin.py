from django import forms
from django.contrib import admin, messages
from django.utils.decorators import method_decorator
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.debug import sensitive_post_parameters

from . import services
from .forms import PASSWORD_MAX_LENGTH
from .models import BounceMailbox, ConnectionTest, PlatformQuota, SmtpServer, TenantRest
from .validators import no_line_breaks


class PasswordAdminForm(forms.ModelForm):
    """The admin, like the tenant's pages, never shows a stored password."""

    new_password = forms.CharField(
        label=_("New password"),
        required=False,
        strip=False,
        max_length=PASSWORD_MAX_LENGTH,
        validators=[no_line_breaks],
        widget=forms.PasswordInput(render_value=False),
        help_text=_("Leave empty to keep the stored password."),
    )

    def save(self, commit: bool = True):
        if self.cleaned_data.get("new_password"):
            self.instance.set_password(self.cleaned_data["new_password"])
        return super().save(commit)


class PasswordAdmin(admin.ModelAdmin):
    """The add and change pages take a password: error reports show stars."""

    @method_decorator(sensitive_post_parameters("new_password"))
    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        return super().changeform_view(request, object_id, form_url, extra_context)

    # Why a server or mailbox fails, and how to fix it, in the staff
    # member's language (servers.words): a platform server's are stored in
    # the platform's.
    @admin.display(description=_("health error"))
    def health_message(self, record: SmtpServer | BounceMailbox) -> str:
        return record.health_message

    @admin.display(description=_("health hint"))
    def health_fix(self, record: SmtpServer | BounceMailbox) -> str:
        return record.health_fix


class SmtpServerAdminForm(PasswordAdminForm):
    class Meta:
        model = SmtpServer
        fields = "__all__"  # noqa: DJ007 - the ModelAdmin picks the fields


class PlatformQuotaInline(admin.TabularInline):
    model = PlatformQuota
    extra = 0
    autocomplete_fields = ("tenant",)
    verbose_name = _("per-tenant daily quota")
    verbose_name_plural = _("per-tenant daily quotas")


# What the dispatcher and the connection test write: shown, never edited;
# why it fails and how to fix it in the staff member's language.
HEALTH_FIELDS = (
    "health",
    "health_message",
    "health_fix",
    "health_checked_at",
    "backoff_until",
    "rest_reason",
    "rest_reply",
)


@admin.register(SmtpServer)
class SmtpServerAdmin(PasswordAdmin):
    form = SmtpServerAdminForm
    list_display = (
        "name",
        "tenant_or_platform",
        "host",
        "port",
        "security",
        "enabled",
        "health",
        "resting_until",
        "tenants_held",
        "priority",
    )
    actions = ["reset_health"]
    list_filter = ("health", "enabled", "security", "kind", ("tenant", admin.EmptyFieldListFilter))
    search_fields = ("name", "host", "sender_email", "tenant__name", "tenant__slug")
    readonly_fields = ("public_id", *HEALTH_FIELDS, "created_at")
    autocomplete_fields = ("tenant",)
    inlines = [PlatformQuotaInline]
    fieldsets = (
        (None, {"fields": ("tenant", "name", "kind", "enabled", "priority")}),
        (_("Sender"), {"fields": ("sender_email", "sender_name", "allow_sender_substitution")}),
        (_("Connection"), {"fields": ("host", "port", "security", "verify_tls", "login", "new_password")}),
        (_("Limits"), {"fields": ("max_per_minute", "max_per_hour", "max_per_day", "tenant_daily_quota")}),
        (_("Health"), {"fields": HEALTH_FIELDS}),
    )

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("tenant").prefetch_related("tenant_rests")

    @admin.display(description=_("Resting until"))
    def resting_until(self, server: SmtpServer):
        return server.backoff_until

    @admin.display(description=_("Tenants held back"))
    def tenants_held(self, server: SmtpServer) -> str:
        """On a platform server: tenants whose own letters made it rest or
        block them (staff decide whether to lift it)."""
        rests = list(server.tenant_rests.all())
        blocked = sum(r.blocked for r in rests)
        if not rests:
            return "—"
        return ngettext("%(count)d (%(blocked)d blocked)", "%(count)d (%(blocked)d blocked)", len(rests)) % {
            "count": len(rests),
            "blocked": blocked,
        }

    @admin.action(description=_("Reset health: not tested, no rest, tenants' rests and blocks lifted"))
    def reset_health(self, request, queryset) -> None:
        count = services.reset_health(server_ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, ngettext("%d server reset.", "%d servers reset.", count) % count, messages.SUCCESS)

    @admin.display(description=_("Tenant"), ordering="tenant__name")
    def tenant_or_platform(self, server: SmtpServer) -> str:
        return server.tenant.name if server.tenant else gettext("— platform server —")

    def get_inlines(self, request, obj):
        return self.inlines if obj is None or obj.is_platform else []


class BounceMailboxAdminForm(PasswordAdminForm):
    class Meta:
        model = BounceMailbox
        fields = "__all__"  # noqa: DJ007 - the ModelAdmin picks the fields


@admin.register(BounceMailbox)
class BounceMailboxAdmin(PasswordAdmin):
    form = BounceMailboxAdminForm
    list_display = ("tenant", "server", "host", "port", "security", "enabled", "health", "last_checked_at")
    list_filter = ("health", "enabled")
    search_fields = ("tenant__name", "host", "login")
    readonly_fields = ("public_id", "health", "health_message", "health_fix", "health_checked_at", "last_checked_at")
    exclude = ("health_error", "health_hint", "health_words")  # said in the reader's language above
    autocomplete_fields = ("tenant",)
    raw_id_fields = ("server",)  # a sending server's own mailbox; empty: the tenant's bounce mailbox


@admin.register(ConnectionTest)
class ConnectionTestAdmin(admin.ModelAdmin):
    list_display = ("created_at", "tenant", "server", "mailbox", "status", "category")
    list_filter = ("status", "category")
    search_fields = ("tenant__name",)
    readonly_fields = [f.name for f in ConnectionTest._meta.fields]


@admin.register(TenantRest)
class TenantRestAdmin(admin.ModelAdmin):
    """What one tenant's letters caused on a platform server: a rest that
    ends by itself, or a block (a blacklisting seen on that tenant's
    letters) that waits for staff."""

    list_display = ("tenant", "server", "blocked", "until", "strikes", "reason", "reply", "updated_at")
    list_filter = ("blocked", "reason")
    search_fields = ("tenant__name", "tenant__slug", "server__name", "reply")
    readonly_fields = ("server", "tenant", "until", "blocked", "strikes", "reason", "reply", "updated_at")
    actions = ["lift"]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(description=_("Lift: let these tenants send through the server again"))
    def lift(self, request, queryset) -> None:
        count = services.tenant_rests_lift(rest_ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, ngettext("%d lifted.", "%d lifted.", count) % count, messages.SUCCESS)
