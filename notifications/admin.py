"""Webhooks in the admin: read-only (endpoints are the customer's; changes go through the API
or the page, which audit them). The secret is never shown."""

from django.contrib import admin

from .models import WebhookDelivery, WebhookEndpoint, WebhookEvent


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
