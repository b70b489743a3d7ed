"""Sending one delivery: claim it, sign, POST to the checked address, record the outcome and
the next attempt. Called by the ``notifications.deliver`` task (the on-commit queue and the
beat sweep); safe to run twice: a delivery is claimed by a conditional UPDATE that moves its
``next_attempt_at`` past the attempt's timeout, so a second runner finds nothing due.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import httpx
from django.conf import settings
from django.db.models import F
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.selectors import workspace_billing_contacts
from core.mail import mail_send_localized

from .models import WebhookDelivery, WebhookEndpoint
from .signing import payload_body, signature_header
from .ssrf import UnsafeTarget, target_resolve

logger = logging.getLogger("tollgate.notifications")

TIMEOUT_SECONDS = 10.0
# Wait after the Nth failed attempt (the last one repeats), until the event is GIVE_UP_AFTER old.
BACKOFF = (
    timedelta(seconds=30),
    timedelta(minutes=2),
    timedelta(minutes=10),
    timedelta(hours=1),
    timedelta(hours=3),
    timedelta(hours=6),
    timedelta(hours=12),
)
GIVE_UP_AFTER = timedelta(hours=24)
DISABLE_AFTER = timedelta(hours=24)  # of continuous failures of an endpoint
CLAIM_LEASE = timedelta(seconds=120)  # > TIMEOUT_SECONDS: a crashed attempt is retried after it
ERROR_MAX = 300
USER_AGENT = "Tollgate-Webhooks/1"


def deliveries_due_ids(*, now: datetime | None = None, limit: int = 500) -> list[int]:
    """Pending deliveries whose next attempt is due (the beat sweep queues them)."""
    now = now or timezone.now()
    return list(
        WebhookDelivery.objects.filter(
            status=WebhookDelivery.Status.PENDING,
            next_attempt_at__lte=now,
            endpoint__disabled_at__isnull=True,
        )
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )


def _signing_secrets(endpoint: WebhookEndpoint, now: datetime) -> list[str]:
    found = [endpoint.secret]
    if (
        endpoint.previous_secret
        and endpoint.previous_secret_expires_at is not None
        and endpoint.previous_secret_expires_at > now
    ):
        found.append(endpoint.previous_secret)
    return found


def _post(*, endpoint: WebhookEndpoint, event, now: datetime) -> tuple[int | None, str]:
    """(status code or None, error text without secrets)."""
    try:
        target = target_resolve(endpoint.url)
    except UnsafeTarget as error:
        return None, f"refused: {error}"
    body = payload_body(event=event)
    timestamp = int(now.timestamp())
    try:
        signed = signature_header(
            secrets_=_signing_secrets(endpoint, now), msg_id=event.event_id, timestamp=timestamp, body=body
        )
    except ValueError as error:
        return None, f"cannot sign: {error}"
    url = httpx.URL(endpoint.url)
    host_header = url.netloc.decode("ascii")
    pinned = url.copy_with(host=target.address)  # the address that was checked, not a new lookup
    headers = {
        "Host": host_header,
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": event.event_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signed,
    }
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    try:
        with (
            httpx.Client(timeout=TIMEOUT_SECONDS, follow_redirects=False, trust_env=False) as client,
            client.stream(
                "POST", pinned, content=body.encode(), headers=headers, extensions=extensions
            ) as response,
        ):
            return response.status_code, "" if response.is_success else f"HTTP {response.status_code}"
    except httpx.HTTPError as error:
        return None, f"{type(error).__name__}: {error}"


def _next_attempt(*, attempt: int, event_at: datetime, now: datetime) -> datetime | None:
    deadline = event_at + GIVE_UP_AFTER
    if now >= deadline:
        return None
    return min(now + BACKOFF[min(attempt, len(BACKOFF)) - 1], deadline)


def webhook_delivery_attempt(*, delivery_id: int, now: datetime | None = None) -> str | None:
    """Attempt the delivery if it is due; its status afterwards, or None when it was not due
    (already done, claimed by another runner, not yet time, or its endpoint is disabled)."""
    now = now or timezone.now()
    claimed = WebhookDelivery.objects.filter(
        pk=delivery_id,
        status=WebhookDelivery.Status.PENDING,
        next_attempt_at__lte=now,
        endpoint__disabled_at__isnull=True,
    ).update(
        next_attempt_at=now + CLAIM_LEASE,
        attempt_count=F("attempt_count") + 1,
        last_attempt_at=now,
        updated_at=now,
    )
    if not claimed:
        return None
    delivery = WebhookDelivery.objects.select_related("endpoint", "event").get(pk=delivery_id)
    endpoint = delivery.endpoint
    code, error = _post(endpoint=endpoint, event=delivery.event, now=now)
    if code is not None and 200 <= code < 300:
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            status=WebhookDelivery.Status.SUCCEEDED,
            last_status_code=code,
            last_error="",
            delivered_at=now,
            next_attempt_at=None,
            updated_at=now,
        )
        WebhookEndpoint.objects.filter(pk=endpoint.pk, failing_since__isnull=False).update(failing_since=None)
        return WebhookDelivery.Status.SUCCEEDED
    next_at = _next_attempt(attempt=delivery.attempt_count, event_at=delivery.event.created_at, now=now)
    status = WebhookDelivery.Status.PENDING if next_at else WebhookDelivery.Status.GAVE_UP
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status=status,
        last_status_code=code,
        last_error=error[:ERROR_MAX],
        next_attempt_at=next_at,
        updated_at=now,
    )
    logger.info(
        "webhook delivery failed",
        extra={
            "delivery_id": delivery.pk,
            "endpoint_id": endpoint.pk,
            "status_code": code,
            "gave_up": not next_at,
        },
    )
    _endpoint_failure_note(endpoint=endpoint, now=now)
    return status


def _endpoint_failure_note(*, endpoint: WebhookEndpoint, now: datetime) -> None:
    WebhookEndpoint.objects.filter(pk=endpoint.pk, failing_since__isnull=True).update(failing_since=now)
    since = WebhookEndpoint.objects.filter(pk=endpoint.pk).values_list("failing_since", flat=True).first()
    if (
        since is not None
        and now - since >= DISABLE_AFTER
        and webhook_endpoint_disable(endpoint=endpoint, reason="Every delivery failed for 24 hours.", now=now)
    ):
        _endpoint_disabled_email(endpoint=endpoint)


def webhook_endpoint_disable(*, endpoint: WebhookEndpoint, reason: str, now: datetime | None = None) -> bool:
    """Disable the endpoint (once: False when it already was) and give up its pending deliveries."""
    now = now or timezone.now()
    if not WebhookEndpoint.objects.filter(pk=endpoint.pk, disabled_at__isnull=True).update(
        disabled_at=now, disabled_reason=reason[:200], updated_at=now
    ):
        return False
    WebhookDelivery.objects.filter(endpoint_id=endpoint.pk, status=WebhookDelivery.Status.PENDING).update(
        status=WebhookDelivery.Status.GAVE_UP,
        next_attempt_at=None,
        last_error="endpoint disabled",
        updated_at=now,
    )
    return True


def _endpoint_disabled_email(*, endpoint: WebhookEndpoint) -> None:
    recipients = workspace_billing_contacts(workspace=endpoint.workspace)
    values = {
        "url": endpoint.url,
        "workspace": endpoint.workspace.name,
        "page_url": f"{settings.SITE_URL}{reverse('notifications:page')}",
    }

    def build() -> tuple[str, str]:
        body = (
            _(
                "Every delivery to your webhook endpoint %(url)s in %(workspace)s failed for 24 hours, "
                "so Tollgate disabled it and stopped sending events there."
            )
            % values
            + "\n\n"
            + _("Fix the receiver, then enable the endpoint again (and send a test event): %(page_url)s")
            % values
            + "\n"
        )
        return _("Tollgate: a webhook endpoint was disabled"), body

    mail_send_localized(recipients=recipients, build=build)
