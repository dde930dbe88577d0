"""The staff's view of the mailing side: mailings (with pause and cancel,
for abuse of the platform server), their letters, suppressions and bounce
reports, read-only; and each tenant's use of the platform servers. Lists
load their related rows in the same query (no query per row)."""

from datetime import timedelta

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet, Sum
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from . import mailings
from .models import BounceReport, Letter, Mailing, Suppression, UsageBucket


class ReadOnlyAdmin(admin.ModelAdmin):
    """Shown, never added or edited here. Deleting stays possible (a tenant
    deleted in the admin takes its mailings and letters with it), but not
    in bulk from these lists."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def get_actions(self, request: HttpRequest) -> dict:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions


@admin.register(Mailing)
class MailingAdmin(ReadOnlyAdmin):
    list_display = ("name", "tenant", "status", "letters_link", "created_at", "started_at", "finished_at")
    list_filter = ("status",)
    search_fields = ("name", "tenant__name", "tenant__slug")
    list_select_related = ("tenant",)
    ordering = ("-created_at",)
    actions = ["pause", "cancel"]

    @admin.display(description=_("Letters"))
    def letters_link(self, mailing: Mailing) -> str:
        url = reverse("admin:mailing_letter_changelist") + f"?mailing__id__exact={mailing.pk}"
        return format_html('<a href="{}">{}</a>', url, _("letters"))

    @admin.action(description=_("Pause the selected mailings"))
    def pause(self, request: HttpRequest, queryset: QuerySet[Mailing]) -> None:
        self._move(request, queryset, "pause")

    @admin.action(description=_("Cancel the selected mailings"))
    def cancel(self, request: HttpRequest, queryset: QuerySet[Mailing]) -> None:
        self._move(request, queryset, "cancel")

    def _move(self, request: HttpRequest, queryset: QuerySet[Mailing], action: str) -> None:
        moved, refused = 0, []
        for mailing in queryset:
            try:
                mailings.transition(mailing=mailing, action=action, by=request.user, note=_("By staff"))
            except ValidationError as exc:
                refused.append(f"{mailing.name}: {' '.join(exc.messages)}")
            else:
                moved += 1
        self.message_user(request, ngettext("%d mailing changed.", "%d mailings changed.", moved) % moved)
        for line in refused:
            self.message_user(request, line, messages.WARNING)

    def get_urls(self) -> list:
        usage = self.admin_site.admin_view(self.platform_usage_view)
        return [path("platform-usage/", usage, name="mailing_platform_usage"), *super().get_urls()]

    def platform_usage_view(self, request: HttpRequest) -> HttpResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": _("Use of the platform servers"),
            "rows": platform_usage(),
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/mailing/platform_usage.html", context)


def platform_usage(now: timezone.datetime | None = None, limit: int = 200) -> list[dict]:
    """Letters each tenant handed to platform servers in the last hour and
    day, the busiest first: one grouped query over the minute buckets."""
    now = now or timezone.now()
    platform = UsageBucket.objects.filter(server__tenant__isnull=True, minute__gte=now - timedelta(days=1))
    rows = (
        platform.values("tenant_id", "tenant__name", "tenant__slug")
        .annotate(day=Sum("count"), hour=Sum("count", filter=Q(minute__gte=now - timedelta(hours=1))))
        .order_by("-day")[:limit]
    )
    return [{**row, "hour": row["hour"] or 0} for row in rows]


@admin.register(Letter)
class LetterAdmin(ReadOnlyAdmin):
    list_display = ("email", "mailing", "tenant", "status", "attempts", "server", "sent_at", "last_reply")
    list_filter = ("status",)
    search_fields = ("email",)
    list_select_related = ("mailing", "tenant", "server")
    # A count over millions of letters on every page is not worth it.
    show_full_result_count = False
    exclude = ("claim_token",)


@admin.register(Suppression)
class SuppressionAdmin(ReadOnlyAdmin):
    list_display = ("email", "tenant", "reason", "note", "created_at")
    list_filter = ("reason",)
    search_fields = ("email", "tenant__name", "tenant__slug")
    list_select_related = ("tenant",)


@admin.register(BounceReport)
class BounceReportAdmin(ReadOnlyAdmin):
    list_display = ("recipient", "tenant", "kind", "matched_by", "status", "letter", "received_at")
    list_filter = ("kind", "matched_by")
    search_fields = ("recipient", "tenant__name", "tenant__slug")
    list_select_related = ("tenant", "letter")
    show_full_result_count = False
