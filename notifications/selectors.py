"""Reads for webhooks: every read takes the workspace (another workspace's id is a 404)."""

from __future__ import annotations

from django.db.models import QuerySet

from accounts.models import Workspace
from core.exceptions import ApiError

from .models import WebhookDelivery, WebhookEndpoint

DELIVERY_LOG_ROWS = 100


def webhook_endpoint_list(*, workspace: Workspace) -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.filter(workspace=workspace).order_by("-created_at", "-id")


def webhook_endpoint_get(*, workspace: Workspace, endpoint_id: int) -> WebhookEndpoint:
    endpoint = WebhookEndpoint.objects.filter(workspace=workspace, pk=endpoint_id).first()
    if endpoint is None:
        raise ApiError("not_found", "No such webhook endpoint.", param="endpoint_id")
    return endpoint


def webhook_delivery_list(*, workspace: Workspace, endpoint_id: int, limit: int = DELIVERY_LOG_ROWS):
    """The endpoint's newest deliveries, with their events (one query)."""
    endpoint = webhook_endpoint_get(workspace=workspace, endpoint_id=endpoint_id)
    return list(
        WebhookDelivery.objects.filter(endpoint=endpoint)
        .select_related("event")
        .order_by("-created_at", "-id")[:limit]
    )
