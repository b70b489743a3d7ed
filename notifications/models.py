"""Outgoing webhooks: a workspace's endpoints, the events it emitted, one delivery per
(endpoint, event) with its retry state.

Events are append-only (no service updates or deletes one). A delivery is retried by its
``next_attempt_at`` and the beat sweep, never by a sleeping task.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q
from encrypted_fields.fields import EncryptedTextField

from core.models import BaseModel


class WebhookEndpoint(BaseModel):
    """A URL of the customer's that receives the events it subscribed to, signed with its secret
    (Standard Webhooks). ``secret`` is Fernet-encrypted at rest and shown once; after a rotation
    the previous one keeps signing beside it until ``previous_secret_expires_at``."""

    workspace = models.ForeignKey(
        "accounts.Workspace", on_delete=models.CASCADE, related_name="webhook_endpoints"
    )
    url = models.URLField(max_length=2000)
    events = models.JSONField(default=list)  # event types, e.g. ["credits.low", "payment.failed"]
    secret = EncryptedTextField()  # "whsec_" + base64 of 24 random bytes
    previous_secret = EncryptedTextField(null=True, blank=True)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    description = models.CharField(max_length=200, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=200, blank=True)
    # The first failure of the current run of failures (None once a delivery succeeds).
    failing_since = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        indexes = [models.Index(fields=["workspace", "-created_at"], name="webhookendpoint_ws_created")]

    def __str__(self):
        return f"{self.url} ({self.workspace_id})"

    @property
    def is_enabled(self) -> bool:
        return self.disabled_at is None


class WebhookEvent(models.Model):
    """Something that happened to a workspace, as sent to its endpoints. Append-only."""

    workspace = models.ForeignKey(
        "accounts.Workspace", on_delete=models.CASCADE, related_name="webhook_events"
    )
    event_id = models.CharField(max_length=40, unique=True)  # "evt_…": the webhook-id header
    type = models.CharField(max_length=64)
    data = models.JSONField(default=dict)
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        indexes = [models.Index(fields=["workspace", "-created_at"], name="webhookevent_ws_created")]

    def __str__(self):
        return f"{self.event_id} {self.type}"


class WebhookDelivery(BaseModel):
    """One event to one endpoint: attempted until a 2xx, or given up 24 h after the event."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"  # kept for a delivery a person abandoned; retries stay "pending"
        GAVE_UP = "gave_up", "Gave up"

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    event = models.ForeignKey(WebhookEvent, on_delete=models.CASCADE, related_name="deliveries")
    attempt_count = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    next_attempt_at = models.DateTimeField(null=True, blank=True)  # None once final
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)  # never a secret, truncated
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["endpoint", "event"], name="webhookdelivery_one_per_endpoint_event"
            )
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"], condition=Q(status="pending"), name="webhookdelivery_due"
            ),
            models.Index(fields=["endpoint", "-created_at"], name="webhookdelivery_ep_created"),
        ]

    def __str__(self):
        return f"{self.event_id} → {self.endpoint_id}: {self.status}"


def _default_percents() -> list[int]:
    return [80, 100]


class NotificationSettings(BaseModel):
    """A workspace's alert thresholds, created on the first change (until then the defaults
    apply). Read on the call path when usage may cross a threshold, so it is served from the
    shared cache (``notifications.selectors.notification_settings_get``), dropped on save."""

    workspace = models.OneToOneField(
        "accounts.Workspace", on_delete=models.CASCADE, related_name="notification_settings"
    )
    # Percents (1..100, at most 5, ascending) of each plan quota, and of each key and member limit.
    quota_thresholds = models.JSONField(default=_default_percents)
    limit_thresholds = models.JSONField(default=_default_percents)
    # Credits: "low" once the available balance falls below this many credits (0: never low).
    # None follows the operator's CREDITS_LOW_THRESHOLD.
    credits_low_balance = models.PositiveIntegerField(null=True, blank=True)
    email_enabled = models.BooleanField(default=True)  # reached alerts also go to the billing contacts

    def __str__(self):
        return f"notification settings of {self.workspace_id}"


class ThresholdState(models.Model):
    """That a threshold was reached in a period, and whether it still holds.

    One row per (workspace, subject, threshold, period start): inserting it is what makes an
    alert fire once per period, whoever crosses first. ``resolved_at`` is set when it stops
    holding (a raised limit, a top-up); reaching it again in the same period re-opens the row
    and fires again. ``subject`` names what is measured: ``quota:<meter>``,
    ``key:<id>:<unit>:<window>``, ``member:<user id>:<unit>:<window>``, ``credits:low``,
    ``credits:depleted``. ``threshold`` is a percent, or credits for ``credits:low``."""

    workspace = models.ForeignKey("accounts.Workspace", on_delete=models.CASCADE, related_name="+")
    subject = models.CharField(max_length=120)
    threshold = models.PositiveIntegerField()
    period_start = models.DateTimeField()  # the epoch for what has no period (credits, "total")
    reached_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["workspace", "subject", "threshold", "period_start"], name="thresholdstate_once"
            )
        ]
        indexes = [
            models.Index(
                fields=["workspace", "subject"],
                condition=Q(resolved_at__isnull=True),
                name="thresholdstate_open",
            )
        ]

    def __str__(self):
        return f"{self.workspace_id} {self.subject} {self.threshold} {self.period_start:%Y-%m-%d}"
