"""Reads for webhooks and alert thresholds: every read takes the workspace (another
workspace's id is a 404)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.db.models import QuerySet

from accounts.models import Workspace
from core.exceptions import ApiError

from .models import NotificationSettings, ThresholdState, WebhookDelivery, WebhookEndpoint

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


# --- alert thresholds ---------------------------------------------------------------------------

DEFAULT_PERCENTS = (80, 100)
SETTINGS_CACHE_SECONDS = 24 * 3600  # dropped on save; the TTL only bounds a lost delete
# Each process keeps what it read for this long, so a call that settles near a threshold costs no
# round trip for it; a change reaches the other workers within this delay.
SETTINGS_LOCAL_SECONDS = 30.0
_LOCAL_MAX = 10_000
_local: dict[int, tuple[float, AlertThresholds]] = {}
_local_lock = threading.Lock()


@dataclass(frozen=True)
class AlertThresholds:
    """A workspace's thresholds as the alert checks use them (defaults filled in)."""

    quota: tuple[int, ...]  # percents of each plan quota, ascending
    limits: tuple[int, ...]  # percents of each key and member limit, ascending
    credits_low_balance: int  # credits; "low" below it (0: never)
    credits_low_balance_is_default: bool  # follows the operator's CREDITS_LOW_THRESHOLD
    email_enabled: bool


def notification_settings_cache_key(workspace_id: int) -> str:
    return f"notifications:settings:v1:{workspace_id}"


def _thresholds_from(entry: dict | None) -> AlertThresholds:
    entry = entry or {}
    low = entry.get("credits_low_balance")
    return AlertThresholds(
        quota=tuple(entry.get("quota") or DEFAULT_PERCENTS),
        limits=tuple(entry.get("limits") or DEFAULT_PERCENTS),
        credits_low_balance=settings.CREDITS_LOW_THRESHOLD if low is None else int(low),
        credits_low_balance_is_default=low is None,
        email_enabled=entry.get("email_enabled", True),
    )


def notification_settings_from_row(row: NotificationSettings) -> AlertThresholds:
    """The thresholds a row says (a write's answer, before the cache is refreshed)."""
    return _thresholds_from(
        {
            "quota": row.quota_thresholds,
            "limits": row.limit_thresholds,
            "credits_low_balance": row.credits_low_balance,
            "email_enabled": row.email_enabled,
        }
    )


def notification_settings_cached(*, workspace_id: int, stale_ok: bool = False) -> AlertThresholds | None:
    """What this process read lately (no I/O): None when it must be fetched (with
    ``stale_ok``, only when it never read it)."""
    held = _local.get(workspace_id)
    if held is None or (held[0] < time.monotonic() and not stale_ok):
        return None
    return held[1]


def notification_settings_get(*, workspace_id: int) -> AlertThresholds:
    """The workspace's thresholds: this process's copy, else the shared cache, else the row
    (or the defaults when it has none, without creating it)."""
    local = notification_settings_cached(workspace_id=workspace_id)
    if local is not None:
        return local
    key = notification_settings_cache_key(workspace_id)
    entry = cache.get(key)
    if entry is None:
        row = (
            NotificationSettings.objects.filter(workspace_id=workspace_id)
            .values("quota_thresholds", "limit_thresholds", "credits_low_balance", "email_enabled")
            .first()
        )
        entry = {
            "quota": (row or {}).get("quota_thresholds"),
            "limits": (row or {}).get("limit_thresholds"),
            "credits_low_balance": (row or {}).get("credits_low_balance"),
            "email_enabled": (row or {}).get("email_enabled", True),
        }
        cache.set(key, entry, SETTINGS_CACHE_SECONDS)
    thresholds = _thresholds_from(entry)
    with _local_lock:
        if len(_local) >= _LOCAL_MAX:
            _local.clear()
        _local[workspace_id] = (time.monotonic() + SETTINGS_LOCAL_SECONDS, thresholds)
    return thresholds


def notification_settings_forget(*, workspace_id: int) -> None:
    """Drop the cached thresholds (after a change commits)."""
    cache.delete(notification_settings_cache_key(workspace_id))
    with _local_lock:
        _local.pop(workspace_id, None)


def notification_settings_local_clear() -> None:
    """Forget every process-local copy (tests; the shared cache is the source)."""
    with _local_lock:
        _local.clear()


def threshold_state_open_list(*, workspace: Workspace, limit: int = 50) -> list[ThresholdState]:
    """The thresholds that hold now (reached and not resolved), newest first."""
    return list(
        ThresholdState.objects.filter(workspace=workspace, resolved_at__isnull=True).order_by(
            "-reached_at", "-id"
        )[:limit]
    )
