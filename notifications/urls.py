"""Webhook and alert URLs: the APIs under /api/webhooks and /api/notifications, the pages
under /webhooks/ and /notifications/."""

from django.urls import path

from . import apis, views

app_name = "notifications"

urlpatterns = [
    path("api/webhooks", apis.WebhookEndpointListCreateApi.as_view(), name="api-webhooks"),
    path("api/webhooks/<int:endpoint_id>", apis.WebhookEndpointDetailApi.as_view(), name="api-webhook"),
    path(
        "api/webhooks/<int:endpoint_id>/rotate",
        apis.WebhookEndpointRotateApi.as_view(),
        name="api-webhook-rotate",
    ),
    path(
        "api/webhooks/<int:endpoint_id>/test", apis.WebhookEndpointTestApi.as_view(), name="api-webhook-test"
    ),
    path(
        "api/webhooks/<int:endpoint_id>/deliveries",
        apis.WebhookDeliveryListApi.as_view(),
        name="api-webhook-deliveries",
    ),
    path("api/notifications/settings", apis.NotificationSettingsApi.as_view(), name="api-settings"),
    path("notifications/", views.notifications_page, name="settings-page"),
    path("webhooks/", views.webhooks_page, name="page"),
    path("webhooks/<int:endpoint_id>/test/", views.webhook_test, name="test"),
    path("webhooks/<int:endpoint_id>/rotate/", views.webhook_rotate, name="rotate"),
    path("webhooks/<int:endpoint_id>/toggle/", views.webhook_toggle, name="toggle"),
    path("webhooks/<int:endpoint_id>/delete/", views.webhook_delete, name="delete"),
]
