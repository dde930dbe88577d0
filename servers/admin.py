from django import forms
from django.contrib import admin

from .models import BounceMailbox, ConnectionTest, PlatformQuota, SmtpServer


class PasswordAdminForm(forms.ModelForm):
    """The admin, like the tenant's pages, never shows a stored password."""

    new_password = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Leave empty to keep the stored password.",
    )

    def save(self, commit: bool = True):
        if self.cleaned_data.get("new_password"):
            self.instance.set_password(self.cleaned_data["new_password"])
        return super().save(commit)


class SmtpServerAdminForm(PasswordAdminForm):
    class Meta:
        model = SmtpServer
        fields = "__all__"  # noqa: DJ007 - the ModelAdmin picks the fields


class PlatformQuotaInline(admin.TabularInline):
    model = PlatformQuota
    extra = 0
    autocomplete_fields = ("tenant",)
    verbose_name = "per-tenant daily quota"


@admin.register(SmtpServer)
class SmtpServerAdmin(admin.ModelAdmin):
    form = SmtpServerAdminForm
    list_display = ("name", "tenant_or_platform", "host", "port", "security", "enabled", "health", "priority")
    list_filter = ("health", "enabled", "security", "kind", ("tenant", admin.EmptyFieldListFilter))
    search_fields = ("name", "host", "sender_email", "tenant__name", "tenant__slug")
    readonly_fields = ("public_id", "health", "health_error", "health_hint", "health_checked_at", "created_at")
    autocomplete_fields = ("tenant",)
    inlines = [PlatformQuotaInline]
    fieldsets = (
        (None, {"fields": ("tenant", "name", "kind", "enabled", "priority")}),
        ("Sender", {"fields": ("sender_email", "sender_name", "allow_sender_substitution")}),
        ("Connection", {"fields": ("host", "port", "security", "verify_tls", "login", "new_password")}),
        ("Limits", {"fields": ("max_per_hour", "max_per_day", "tenant_daily_quota")}),
        ("Health", {"fields": ("health", "health_error", "health_hint", "health_checked_at")}),
    )

    @admin.display(description="Tenant", ordering="tenant__name")
    def tenant_or_platform(self, server: SmtpServer) -> str:
        return server.tenant.name if server.tenant else "— platform server —"

    def get_inlines(self, request, obj):
        return self.inlines if obj is None or obj.is_platform else []


class BounceMailboxAdminForm(PasswordAdminForm):
    class Meta:
        model = BounceMailbox
        fields = "__all__"  # noqa: DJ007 - the ModelAdmin picks the fields


@admin.register(BounceMailbox)
class BounceMailboxAdmin(admin.ModelAdmin):
    form = BounceMailboxAdminForm
    list_display = ("tenant", "host", "port", "security", "enabled", "health", "last_checked_at")
    list_filter = ("health", "enabled")
    search_fields = ("tenant__name", "host", "login")
    readonly_fields = ("public_id", "health", "health_error", "health_hint", "health_checked_at", "last_checked_at")
    autocomplete_fields = ("tenant",)


@admin.register(ConnectionTest)
class ConnectionTestAdmin(admin.ModelAdmin):
    list_display = ("created_at", "tenant", "server", "mailbox", "status", "category")
    list_filter = ("status", "category")
    search_fields = ("tenant__name",)
    readonly_fields = [f.name for f in ConnectionTest._meta.fields]
