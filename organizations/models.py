"""Self-hosted VaultAI instances (one instance = one organization = one billed customer) and
the daily usage reports they post."""

import uuid

from django.db import models

from core.models import BaseModel

# A report whose user_count is more than this many times the last accepted one is held for the
# operator's review instead of being billed (per organization, editable in the admin).
DEFAULT_USER_COUNT_JUMP_FACTOR = 10


class Organization(BaseModel):
    """An instance's organization. The primary key is the UUID the instance sends, so the
    instance needs no registration step; the operator links it to Stripe later."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending (not linked)"
        TRIAL = "trial", "Trial"
        ACTIVE = "active", "Active"
        PAST_DUE = "past_due", "Past due"
        CANCELED = "canceled", "Canceled"

    class DeploymentType(models.TextChoices):
        ON_PREMISE = "on-premise", "On-premise"
        MANAGED_CLOUD = "managed-cloud", "Managed cloud"

    class PlanType(models.TextChoices):
        MANAGED_CLOUD = "managed-cloud", "Managed cloud"
        SELF_HOSTED = "self-hosted", "Self-hosted"

    id = models.UUIDField(primary_key=True, editable=False)
    name = models.CharField(max_length=200)
    instance_url = models.CharField(max_length=500, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    latest_user_count = models.PositiveIntegerField(default=0)
    first_seen_at = models.DateTimeField()
    last_report_at = models.DateTimeField(null=True, blank=True)

    # Set by the operator when linking.
    admin_email = models.EmailField(blank=True)
    deployment_type = models.CharField(max_length=16, choices=DeploymentType.choices, blank=True)
    plan_type = models.CharField(max_length=16, choices=PlanType.choices, blank=True)
    stripe_price_id = models.CharField(max_length=255, blank=True)
    stripe_customer_id = models.CharField(max_length=255, null=True, blank=True, unique=True)
    stripe_subscription_id = models.CharField(max_length=255, null=True, blank=True, unique=True)
    trial_end = models.DateTimeField(null=True, blank=True)
    linked_at = models.DateTimeField(null=True, blank=True)
    # Last linking failure, shown to the operator until a link succeeds.
    link_error = models.TextField(blank=True)
    # Bumped only after Stripe definitively refused a create (nothing was created), so the next
    # attempt may send different parameters under a fresh idempotency key.
    link_attempt = models.PositiveSmallIntegerField(default=0)
    # Creation time of the newest subscription event applied: older events arrive late and
    # must not roll the status back.
    subscription_event_at = models.DateTimeField(null=True, blank=True)

    # A linked organization's name and URL are what its invoices show, so a report cannot change
    # them: the newest differing values wait here until the operator accepts or discards them.
    pending_name = models.CharField(max_length=200, blank=True)
    pending_instance_url = models.CharField(max_length=500, blank=True)
    pending_identity_at = models.DateTimeField(null=True, blank=True)  # null: nothing pending

    # Issued by the operator; once set, only this token may report for the organization (the
    # shared BILLING_API_TOKEN is refused). SHA-256 of the token; the plaintext is shown once.
    ingestion_token_hash = models.CharField(max_length=64, null=True, blank=True, unique=True)
    ingestion_token_prefix = models.CharField(max_length=32, blank=True)  # for recognition only
    ingestion_token_issued_at = models.DateTimeField(null=True, blank=True)

    # Reports above this multiple of the last accepted user count are held; 0 holds nothing.
    user_count_jump_factor = models.PositiveSmallIntegerField(
        default=DEFAULT_USER_COUNT_JUMP_FACTOR,
        help_text=(
            "A report whose user count exceeds this many times the last accepted count is held "
            "for review instead of billed. 0 = never hold."
        ),
    )

    class Meta:
        ordering = ["name"]
        indexes = [models.Index(fields=["stripe_subscription_id", "status"], name="org_linked_status_idx")]

    def __str__(self):
        return f"{self.name} ({self.id})"

    @property
    def is_linked(self) -> bool:
        return bool(self.stripe_subscription_id)

    @property
    def has_pending_identity(self) -> bool:
        return self.pending_identity_at is not None

    @property
    def has_ingestion_token(self) -> bool:
        return bool(self.ingestion_token_hash)


class UsageReport(BaseModel):
    """One accepted report per organization per UTC day; its billing state tracks the Stripe
    meter event.

    ``unbilled`` reports arrived before linking; ``pending`` ones wait for a worker; a worker
    claims one by moving it to ``sending`` (conditional UPDATE, with a lease) so two workers
    never send it twice; ``sent`` is final; ``failed`` waits for the operator. A ``held`` report
    (user count jumped past the organization's factor) changes nothing until the operator
    releases it (then it goes the accepted way) or rejects it; a held report does not take the
    day's slot, so a genuine report that day is still accepted.
    """

    class BillingStatus(models.TextChoices):
        UNBILLED = "unbilled", "Unbilled (not linked)"
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"
        HELD = "held", "Held for review"
        REJECTED = "rejected", "Rejected by the operator"

    # Not accepted: they neither bill nor take the day's slot.
    NOT_ACCEPTED = (BillingStatus.HELD, BillingStatus.REJECTED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="usage_reports")
    report_on = models.DateField()  # UTC date of reported_at
    user_count = models.PositiveIntegerField()
    reported_at = models.DateTimeField()  # the instance's timestamp
    deployment_type = models.CharField(max_length=16, blank=True)  # snapshot at report time

    billing_status = models.CharField(
        max_length=16, choices=BillingStatus.choices, default=BillingStatus.UNBILLED
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    meter_identifier = models.CharField(max_length=100, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    hold_reason = models.CharField(max_length=200, blank=True)
    reviewed_at = models.DateTimeField(null=True, blank=True)  # released or rejected

    class Meta:
        ordering = ["-report_on"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "report_on"],
                condition=~models.Q(billing_status__in=["held", "rejected"]),
                name="usage_report_one_accepted_per_org_day",
            ),
            models.UniqueConstraint(
                fields=["organization", "report_on"],
                condition=models.Q(billing_status="held"),
                name="usage_report_one_held_per_org_day",
            ),
        ]
        indexes = [models.Index(fields=["billing_status", "next_attempt_at"], name="usage_report_due_idx")]

    def __str__(self):
        return f"{self.organization_id} {self.report_on}: {self.user_count}"

    @property
    def meter_identifier_expected(self) -> str:
        """Stripe deduplicates meter events on this identifier, derived from our row id."""
        return f"usage-report-{self.id}"
