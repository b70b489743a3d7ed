"""Admin: prices and routes are editable (saves go through services so caches refresh);
the usage log, rollups and daily spend are read-only records."""

from django.contrib import admin

from .catalog import model_price_save, model_route_save
from .models import DailySpend, ModelPrice, ModelRoute, UsageDailyRollup, UsageEvent


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


@admin.register(UsageEvent)
class UsageEventAdmin(_ReadOnlyAdmin):
    list_display = (
        "created_at", "user", "endpoint", "provider", "model", "total_tokens", "emails", "cost_usd",
        "status_code", "latency_ms", "key_source", "is_fallback", "is_budget_fallback", "is_estimated",
    )  # fmt: skip
    list_filter = (
        "provider",
        "status_code",
        "key_source",
        "is_fallback",
        "is_budget_fallback",
        "is_estimated",
    )
    search_fields = ("user__email", "request_id", "call_id")
    date_hierarchy = "created_at"
    list_select_related = ("user",)
    show_full_result_count = False  # no COUNT(*) over the whole log


@admin.register(UsageDailyRollup)
class UsageDailyRollupAdmin(_ReadOnlyAdmin):
    list_display = (
        "day",
        "user",
        "provider",
        "requests",
        "tokens",
        "emails",
        "cost_usd",
        "errors",
        "fallbacks",
    )
    list_filter = ("provider", "day")
    search_fields = ("user__email",)
    list_select_related = ("user",)


@admin.register(DailySpend)
class DailySpendAdmin(_ReadOnlyAdmin):
    list_display = ("day", "spent_usd", "updated_at")
