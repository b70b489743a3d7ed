"""Admin: prices and routes are editable (saves go through services so caches refresh);
the usage log, rollups and daily spend are read-only records. The log and the rollups are
``BigTableAdmin`` lists (core/admin_lists.py): index-only at millions of rows."""

from django.contrib import admin

from accounts.providers import PROVIDER_CHOICES
from core.admin_lists import BigTableAdmin, RecentFilter

from . import sandbox
from .catalog import model_price_save, model_route_save
from .models import DailySpend, ModelPrice, ModelRoute, UsageDailyRollup, UsageEvent, UsageSpendHourly


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    list_display = ("provider", "model", "input_usd_per_mtok", "output_usd_per_mtok", "updated_at")
    list_filter = ("provider",)
    search_fields = ("model",)

    def save_model(self, request, obj, form, change):
        model_price_save(price=obj)


@admin.register(ModelRoute)
class ModelRouteAdmin(admin.ModelAdmin):
    list_display = ("requested_model", "provider", "upstream_model")
    list_filter = ("provider",)
    search_fields = ("requested_model", "upstream_model")

    def save_model(self, request, obj, form, change):
        model_route_save(route=obj)


class _ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ProviderFilter(admin.SimpleListFilter):
    """The known providers, not ``SELECT DISTINCT provider`` over the log."""

    title = "provider"
    parameter_name = "provider"

    def lookups(self, request, model_admin):
        return [*PROVIDER_CHOICES, (sandbox.PROVIDER, "Sandbox")]

    def queryset(self, request, queryset):
        return queryset.filter(provider=self.value()) if self.value() else queryset


class StatusClassFilter(admin.SimpleListFilter):
    """HTTP status classes, not ``SELECT DISTINCT status_code`` over the log."""

    title = "status"
    parameter_name = "status"
    CLASSES = {
        "ok": ("Success (2xx)", {"status_code__lt": 300}),
        "4xx": ("Client error (4xx)", {"status_code__gte": 400, "status_code__lt": 500}),
        "429": ("Rate limited (429)", {"status_code": 429}),
        "5xx": ("Server or upstream error (5xx)", {"status_code__gte": 500}),
    }

    def lookups(self, request, model_admin):
        return [(code, label) for code, (label, _) in self.CLASSES.items()]

    def queryset(self, request, queryset):
        chosen = self.CLASSES.get(self.value() or "")
        return queryset.filter(**chosen[1]) if chosen else queryset


@admin.register(UsageEvent)
class UsageEventAdmin(BigTableAdmin, _ReadOnlyAdmin):
    """Newest first on the ``usage_created`` index; search: an email (that user's personal
    workspace, ``usage_workspace_recent``), a request id (``usage_request_id``) or a call id
    (unique)."""

    list_display = (
        "created_at", "workspace", "endpoint", "provider", "model", "total_tokens", "emails", "cost_usd",
        "status_code", "latency_ms", "key_source", "is_fallback", "is_budget_fallback", "is_estimated",
    )  # fmt: skip
    list_filter = (
        RecentFilter,
        ProviderFilter,
        StatusClassFilter,
        "key_source",
        "is_fallback",
        "is_budget_fallback",
        "is_estimated",
    )
    ordering = ("-created_at",)
    sortable_by = ("created_at",)
    exact_search_fields = ("request_id",)
    uuid_search_fields = ("call_id",)
    user_field = "workspace__personal_owner"
    list_select_related = ("workspace",)


@admin.register(UsageDailyRollup)
class UsageDailyRollupAdmin(BigTableAdmin, _ReadOnlyAdmin):
    """Newest day first on the ``rollup_day_provider`` index; search: an email (that user's
    personal workspace)."""

    list_display = (
        "day",
        "workspace",
        "provider",
        "requests",
        "tokens",
        "emails",
        "cost_usd",
        "errors",
        "fallbacks",
    )
    list_filter = (ProviderFilter, "day")
    ordering = ("-day", "provider")
    sortable_by = ("day",)
    user_field = "workspace__personal_owner"
    list_select_related = ("workspace",)


@admin.register(UsageSpendHourly)
class UsageSpendHourlyAdmin(BigTableAdmin, _ReadOnlyAdmin):
    """The customers' spend per hour, key and model (what their Spend overview reads); newest
    rows first by id (the primary key's index), search: an email (that user's workspace)."""

    list_display = (
        "hour",
        "workspace",
        "api_key_id",
        "model",
        "requests",
        "errors",
        "charge_credits",
        "charge_micros",
        "charge_currency",
    )
    list_filter = ("charge_currency",)
    ordering = ("-id",)
    user_field = "workspace__personal_owner"
    list_select_related = ("workspace",)


@admin.register(DailySpend)
class DailySpendAdmin(_ReadOnlyAdmin):
    list_display = ("day", "spent_usd", "updated_at")
