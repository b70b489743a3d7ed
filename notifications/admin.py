"""Webhooks and alert thresholds in the admin: read-only (they are the customer's; changes go
through the API or the pages, which audit them). The secret is never shown."""

from django.contrib import admin

from .models import NotificationSettings, ThresholdState, WebhookDelivery, WebhookEndpoint, WebhookEvent


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(ReadOnlyAdmin):
    list_display = ("id", "workspace", "url", "disabled_at", "failing_since", "created_at")
    list_filter = ("disabled_at",)
    search_fields = ("url", "workspace__name", "workspace__slug")
    exclude = ("secret", "previous_secret")


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyAdmin):
    list_display = ("event_id", "workspace", "type", "created_at")
    list_filter = ("type",)
    search_fields = ("event_id",)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "endpoint",
        "event",
        "status",
        "attempt_count",
        "last_status_code",
        "next_attempt_at",
    )
    list_filter = ("status",)


@admin.register(NotificationSettings)
class NotificationSettingsAdmin(ReadOnlyAdmin):
    list_display = (
        "workspace",
        "quota_thresholds",
        "limit_thresholds",
        "credits_low_balance",
        "email_enabled",
    )
    search_fields = ("workspace__name", "workspace__slug")


@admin.register(ThresholdState)
class ThresholdStateAdmin(ReadOnlyAdmin):
    list_display = ("workspace", "subject", "threshold", "period_start", "reached_at", "resolved_at")
    search_fields = ("subject", "workspace__name", "workspace__slug")
