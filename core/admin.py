"""Operator view of reconciliation drift: an alert list, read-only except for "resolve"."""

from django.contrib import admin, messages

from . import services
from .models import ReconciliationDrift


class OpenDriftFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return (("open", "Open"), ("resolved", "Resolved"))

    def queryset(self, request, queryset):
        if self.value() == "open":
            return queryset.filter(resolved_at__isnull=True)
        if self.value() == "resolved":
            return queryset.filter(resolved_at__isnull=False)
        return queryset


@admin.register(ReconciliationDrift)
class ReconciliationDriftAdmin(admin.ModelAdmin):
    list_display = ("source", "subject", "expected", "actual", "detected_at", "last_seen_at", "resolved_at")
    list_filter = (OpenDriftFilter, "source")
    search_fields = ("subject",)
    readonly_fields = (
        "source",
        "subject",
        "expected",
        "actual",
        "detail",
        "detected_at",
        "last_seen_at",
        "resolved_at",
        "resolved_note",
    )
    actions = ["resolve"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Mark selected drift resolved (after fixing the data)")
    def resolve(self, request, queryset):
        done = sum(
            services.reconciliation_drift_resolve(drift=drift, note=f"resolved by {request.user}")
            for drift in queryset.filter(resolved_at__isnull=True)
        )
        self.message_user(request, f"Resolved {done} drift record(s).", messages.SUCCESS)
