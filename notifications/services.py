"""Writes for webhooks: endpoints (create, change, rotate, delete, test) and ``event_emit``,
the one door other apps call when something happened to a workspace.

``event_emit`` is an outbox: inside the caller's transaction it stores the event and one
pending delivery per subscribed, enabled endpoint, so they commit (or roll back) with the change
they describe; the deliveries are queued once it commits, and the beat sweep finds any whose
queueing was lost. Secrets are shown once (the create and rotate answers) and never logged.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from accounts.models import User, Workspace
from accounts.services import audit_record
from core.exceptions import ApiError

from .delivery import webhook_endpoint_disable
from .models import NotificationSettings, WebhookDelivery, WebhookEndpoint, WebhookEvent
from .selectors import notification_settings_forget, webhook_endpoint_get
from .signing import webhook_secret_generate
from .ssrf import webhook_url_validate
from .tasks import webhook_deliver_task

EVENT_TYPES = (
    "quota.threshold_reached",
    "quota.threshold_resolved",
    "key.limit_reached",
    "key.limit_resolved",
    "member.limit_reached",
    "member.limit_resolved",
    "credits.low",
    "credits.low_resolved",
    "credits.depleted",
    "credits.depleted_resolved",
    "credits.granted",
    "subscription.updated",
    "payment.succeeded",
    "payment.failed",
    "webhook.test",
)
ROTATION_OVERLAP = timedelta(hours=24)
ENDPOINTS_PER_WORKSPACE = 20


def _events_clean(events) -> list[str]:
    if not isinstance(events, list) or not events:
        raise ApiError("invalid_request", "Subscribe to at least one event type.", param="events")
    unknown = sorted({str(e) for e in events} - set(EVENT_TYPES))
    if unknown:
        raise ApiError(
            "invalid_request",
            f"Unknown event types: {', '.join(unknown)}.",
            param="events",
            allowed=list(EVENT_TYPES),
        )
    return [e for e in EVENT_TYPES if e in events]  # one each, in a stable order


def _target(endpoint: WebhookEndpoint) -> str:
    return f"webhook_endpoint:{endpoint.pk}"


def webhook_endpoint_create(
    *, workspace: Workspace, actor: User, url: str, events: list[str], description: str = "", request=None
) -> tuple[WebhookEndpoint, str]:
    """A new endpoint and its secret (the only time the secret is returned)."""
    events = _events_clean(events)
    webhook_url_validate(url)
    if WebhookEndpoint.objects.filter(workspace=workspace).count() >= ENDPOINTS_PER_WORKSPACE:
        raise ApiError("conflict", f"A workspace has at most {ENDPOINTS_PER_WORKSPACE} webhook endpoints.")
    secret = webhook_secret_generate()
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.create(
            workspace=workspace,
            url=url,
            events=events,
            secret=secret,
            description=description[:200],
            created_by=actor,
        )
        audit_record(
            action="webhook.created",
            actor=actor,
            workspace=workspace,
            target=_target(endpoint),
            details={"url": url, "events": events},
            request=request,
        )
    return endpoint, secret


_UNSET = object()


def webhook_endpoint_update(
    *,
    workspace: Workspace,
    endpoint_id: int,
    actor: User,
    url=_UNSET,
    events=_UNSET,
    description=_UNSET,
    enabled=_UNSET,
    request=None,
) -> WebhookEndpoint:
    """Change what is given; disabling gives up the pending deliveries, enabling starts afresh."""
    endpoint = webhook_endpoint_get(workspace=workspace, endpoint_id=endpoint_id)
    changes: dict = {}
    if url is not _UNSET and url != endpoint.url:
        webhook_url_validate(url)
        changes["url"] = url
    if events is not _UNSET:
        events = _events_clean(events)
        if events != endpoint.events:
            changes["events"] = events
    if description is not _UNSET and description != endpoint.description:
        changes["description"] = description[:200]
    now = timezone.now()
    with transaction.atomic():
        if changes:
            for field, value in changes.items():
                setattr(endpoint, field, value)
            endpoint.save(update_fields=[*changes, "updated_at"])
        if enabled is not _UNSET and bool(enabled) != endpoint.is_enabled:
            changes["enabled"] = bool(enabled)
            if enabled:
                WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
                    disabled_at=None, disabled_reason="", failing_since=None, updated_at=now
                )
            else:
                webhook_endpoint_disable(endpoint=endpoint, reason=f"Disabled by {actor.email}.", now=now)
            endpoint.refresh_from_db()
        if changes:
            audit_record(
                action="webhook.updated",
                actor=actor,
                workspace=workspace,
                target=_target(endpoint),
                details={key: value for key, value in changes.items()},
                request=request,
            )
    return endpoint


def webhook_endpoint_delete(*, workspace: Workspace, endpoint_id: int, actor: User, request=None) -> None:
    endpoint = webhook_endpoint_get(workspace=workspace, endpoint_id=endpoint_id)
    with transaction.atomic():
        audit_record(
            action="webhook.deleted",
            actor=actor,
            workspace=workspace,
            target=_target(endpoint),
            details={"url": endpoint.url},
            request=request,
        )
        endpoint.delete()


def webhook_endpoint_rotate(
    *, workspace: Workspace, endpoint_id: int, actor: User, now: datetime | None = None, request=None
) -> tuple[WebhookEndpoint, str]:
    """A new secret (returned once); the current one keeps signing beside it for 24 hours."""
    now = now or timezone.now()
    endpoint = webhook_endpoint_get(workspace=workspace, endpoint_id=endpoint_id)
    secret = webhook_secret_generate()
    with transaction.atomic():
        endpoint.previous_secret = endpoint.secret
        endpoint.previous_secret_expires_at = now + ROTATION_OVERLAP
        endpoint.secret = secret
        endpoint.save(update_fields=["previous_secret", "previous_secret_expires_at", "secret", "updated_at"])
        audit_record(
            action="webhook.secret_rotated",
            actor=actor,
            workspace=workspace,
            target=_target(endpoint),
            details={"previous_valid_until": endpoint.previous_secret_expires_at.isoformat()},
            request=request,
        )
    return endpoint, secret


def _event_id() -> str:
    return "evt_" + secrets.token_hex(16)


def _deliveries_queue(delivery_ids: list[int]) -> None:
    # robust: a broker that is down must not fail the caller's request; the sweep queues them.
    for delivery_id in delivery_ids:
        transaction.on_commit(lambda d=delivery_id: webhook_deliver_task.delay(d), robust=True)


def webhook_endpoint_test(*, workspace: Workspace, endpoint_id: int, actor: User) -> WebhookDelivery:
    """Send a ``webhook.test`` event to this endpoint only (whatever it subscribed to)."""
    endpoint = webhook_endpoint_get(workspace=workspace, endpoint_id=endpoint_id)
    if not endpoint.is_enabled:
        raise ApiError("conflict", "This endpoint is disabled: enable it before sending a test event.")
    now = timezone.now()
    with transaction.atomic():
        event = WebhookEvent.objects.create(
            workspace=workspace,
            event_id=_event_id(),
            type="webhook.test",
            data={"message": "A test event sent from Tollgate.", "sent_by": actor.email},
            created_at=now,
        )
        delivery = WebhookDelivery.objects.create(endpoint=endpoint, event=event, next_attempt_at=now)
        _deliveries_queue([delivery.pk])
    return delivery


def event_emit(
    *, workspace: Workspace | int, type: str, data: dict, now: datetime | None = None
) -> WebhookEvent | None:
    """Record that ``type`` happened to the workspace and queue it, after commit, to every
    enabled endpoint subscribed to it. Nothing is stored when no endpoint listens.
    ``workspace`` may be the id (callers on a hot path hold only that)."""
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event type {type!r}")
    workspace_id = workspace if isinstance(workspace, int) else workspace.pk
    endpoint_ids = list(
        WebhookEndpoint.objects.filter(
            workspace_id=workspace_id, disabled_at__isnull=True, events__contains=[type]
        ).values_list("pk", flat=True)
    )
    if not endpoint_ids:
        return None
    now = now or timezone.now()
    with transaction.atomic():
        event = WebhookEvent.objects.create(
            workspace_id=workspace_id, event_id=_event_id(), type=type, data=data, created_at=now
        )
        deliveries = WebhookDelivery.objects.bulk_create(
            [WebhookDelivery(endpoint_id=pk, event=event, next_attempt_at=now) for pk in endpoint_ids]
        )
        _deliveries_queue([delivery.pk for delivery in deliveries])
    return event


# --- alert thresholds ---------------------------------------------------------------------------

MAX_THRESHOLDS = 5


def _percents_clean(value, *, param: str) -> list[int]:
    """1..100, integers (not booleans), unique, at most five; stored ascending."""
    if not isinstance(value, list) or not value:
        raise ApiError("invalid_request", "Give a list of 1 to 5 percents.", param=param)
    if any(isinstance(item, bool) or not isinstance(item, int) for item in value):
        raise ApiError("invalid_request", "Percents are whole numbers.", param=param)
    if len(value) > MAX_THRESHOLDS:
        raise ApiError("invalid_request", f"At most {MAX_THRESHOLDS} thresholds.", param=param)
    if len(set(value)) != len(value):
        raise ApiError("invalid_request", "Each threshold once.", param=param)
    if any(not 1 <= item <= 100 for item in value):
        raise ApiError("invalid_request", "Percents go from 1 to 100.", param=param)
    return sorted(value)


def _balance_clean(value) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ApiError(
            "invalid_request",
            "The low-balance threshold is a whole number of credits, 0 or more.",
            param="credits_low_balance",
        )
    return value


def notification_settings_update(
    *,
    workspace: Workspace,
    actor: User,
    quota_thresholds=_UNSET,
    limit_thresholds=_UNSET,
    credits_low_balance=_UNSET,
    email_enabled=_UNSET,
    request=None,
) -> NotificationSettings:
    """Change what is given (the row is created on the first change). ``credits_low_balance``
    None goes back to the operator's default; 0 turns the low-balance alert off. Every check
    runs before anything is written, so a bad field changes nothing."""
    changes: dict = {}
    if quota_thresholds is not _UNSET:
        changes["quota_thresholds"] = _percents_clean(quota_thresholds, param="quota_thresholds")
    if limit_thresholds is not _UNSET:
        changes["limit_thresholds"] = _percents_clean(limit_thresholds, param="limit_thresholds")
    if credits_low_balance is not _UNSET:
        changes["credits_low_balance"] = _balance_clean(credits_low_balance)
    if email_enabled is not _UNSET:
        if not isinstance(email_enabled, bool):
            raise ApiError("invalid_request", "email_enabled is true or false.", param="email_enabled")
        changes["email_enabled"] = email_enabled
    with transaction.atomic():
        NotificationSettings.objects.get_or_create(workspace=workspace)  # survives a concurrent create
        row = NotificationSettings.objects.select_for_update().get(workspace=workspace)
        changed = {field: value for field, value in changes.items() if getattr(row, field) != value}
        if changed:
            for field, value in changed.items():
                setattr(row, field, value)
            row.save(update_fields=[*changed, "updated_at"])
            audit_record(
                action="notifications.settings_updated",
                actor=actor,
                workspace=workspace,
                target=f"notification_settings:{row.pk}",
                details=changed,
                request=request,
            )
            # Now (this request reads its own change) and after commit (a reader in between
            # may have cached the old row again).
            workspace_id = workspace.pk
            notification_settings_forget(workspace_id=workspace_id)
            transaction.on_commit(lambda: notification_settings_forget(workspace_id=workspace_id))
    return row
