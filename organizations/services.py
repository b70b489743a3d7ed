"""Writes for organizations: report ingestion, linking to Stripe, meter events, subscription
status. Stripe calls always run outside database transactions and row locks."""

from __future__ import annotations

import contextlib
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from billing import stripe_client
from billing.stripe_client import StripeServiceError
from core.exceptions import ApiError
from core.locks import lock_objects

from .models import Organization, UsageReport

logger = logging.getLogger("tollgate.organizations")

# Stripe accepts meter events up to 35 days old; reports are validated against the same window.
METER_WINDOW = timedelta(days=35)
# A client clock may run a little ahead (Stripe also allows 5 minutes).
FUTURE_TOLERANCE = timedelta(minutes=5)
TRIAL_DAYS_MAX = 730
# How long a worker owns a report it claimed; past it, the retry job may claim it again (the
# identifier keeps Stripe from counting the event twice).
SEND_LEASE = timedelta(minutes=5)

BILLABLE_STATUSES = (Organization.Status.TRIAL, Organization.Status.ACTIVE, Organization.Status.PAST_DUE)

# Stripe subscription status -> ours.
SUBSCRIPTION_STATUS_MAP = {
    "trialing": Organization.Status.TRIAL,
    "active": Organization.Status.ACTIVE,
    "past_due": Organization.Status.PAST_DUE,
    "unpaid": Organization.Status.PAST_DUE,
    "incomplete": Organization.Status.PAST_DUE,
    "paused": Organization.Status.PAST_DUE,
    "canceled": Organization.Status.CANCELED,
    "incomplete_expired": Organization.Status.CANCELED,
}


@dataclass(frozen=True)
class IngestResult:
    report: UsageReport
    organization: Organization
    duplicate: bool


def _utc(ts: int | None) -> datetime | None:
    return datetime.fromtimestamp(int(ts), tz=UTC) if ts else None


def _queue_send(report_id) -> None:
    from .tasks import usage_report_send_task

    usage_report_send_task.delay(str(report_id))


# --- Ingestion -------------------------------------------------------------------------------


def usage_report_ingest(
    *,
    organization_id: uuid.UUID,
    organization_name: str,
    instance_url: str,
    user_count: int,
    reported_at: datetime,
    now: datetime | None = None,
) -> IngestResult:
    """Store an instance's daily report; the first one creates the organization as pending.

    One report per organization per UTC day (of ``reported_at``): a repeat returns the first
    report unchanged. The organization row is locked so concurrent reports serialise, and a
    billable report's meter event is queued only once the report is committed.
    """
    now = now or timezone.now()
    report_on = reported_at.astimezone(UTC).date()
    with transaction.atomic():
        Organization.objects.get_or_create(
            pk=organization_id,
            defaults={"name": organization_name, "instance_url": instance_url, "first_seen_at": now},
        )
        (organization,) = lock_objects(Organization.objects.filter(pk=organization_id))
        existing = UsageReport.objects.filter(organization=organization, report_on=report_on).first()
        if existing is not None:
            return IngestResult(report=existing, organization=organization, duplicate=True)

        billable = organization.is_linked and organization.status in BILLABLE_STATUSES
        report = UsageReport.objects.create(
            organization=organization,
            report_on=report_on,
            user_count=user_count,
            reported_at=reported_at,
            deployment_type=organization.deployment_type,
            billing_status=UsageReport.BillingStatus.PENDING
            if billable
            else UsageReport.BillingStatus.UNBILLED,
            next_attempt_at=now if billable else None,
        )
        organization.name = organization_name
        organization.instance_url = instance_url
        # A late report (an instance catching up) must not overwrite a newer count.
        if organization.last_report_at is None or reported_at >= organization.last_report_at:
            organization.latest_user_count = user_count
            organization.last_report_at = reported_at
        organization.save(
            update_fields=["name", "instance_url", "latest_user_count", "last_report_at", "updated_at"]
        )
        if billable:
            transaction.on_commit(lambda: _queue_send(report.pk))
    return IngestResult(report=report, organization=organization, duplicate=False)


# --- Linking ---------------------------------------------------------------------------------


def _price_for(plan_type: str, price_id: str | None) -> str:
    if price_id:
        return price_id
    price = {
        Organization.PlanType.MANAGED_CLOUD: settings.STRIPE_PRICE_VAULTAI_MANAGED_CLOUD,
        Organization.PlanType.SELF_HOSTED: settings.STRIPE_PRICE_VAULTAI_SELF_HOSTED,
    }.get(plan_type, "")
    if not price:
        raise ApiError(
            "invalid_request",
            f"No Stripe price configured for plan type {plan_type!r}; set it or choose one.",
            param="price_id",
        )
    return price


def _idempotency_key(kind: str, organization: Organization) -> str:
    suffix = f":{organization.link_attempt}" if organization.link_attempt else ""
    return f"org-{kind}:{organization.pk}{suffix}"


def _link_failed(*, organization: Organization, error: StripeServiceError) -> None:
    """Record the error for the operator. A definitive refusal (nothing created on Stripe's side)
    frees the idempotency key for corrected parameters; a transient one keeps it, so a retry
    can never create a second object."""
    updates = {"link_error": error.message, "updated_at": timezone.now()}
    if not error.retryable:
        updates["link_attempt"] = F("link_attempt") + 1
    Organization.objects.filter(pk=organization.pk).update(**updates)
    organization.refresh_from_db()


def organization_link(
    *,
    organization: Organization,
    admin_email: str,
    deployment_type: str,
    plan_type: str,
    trial_days: int,
    price_id: str | None = None,
    backfill: bool = False,
    now: datetime | None = None,
) -> Organization:
    """Create (or reuse) the Stripe customer, then the trial subscription, and mark the
    organization billable.

    The customer id is stored as soon as Stripe returns it: if the subscription call fails,
    the next attempt reuses that customer instead of creating another. Raises
    :class:`StripeServiceError` (message safe for the operator) after recording it in
    ``link_error``; raises :class:`ApiError` for bad input or an organization already linked.
    """
    if organization.is_linked:
        raise ApiError("conflict", "This organization is already linked to Stripe.")
    if not 0 <= trial_days <= TRIAL_DAYS_MAX:
        raise ApiError(
            "invalid_request", f"trial_days must be between 0 and {TRIAL_DAYS_MAX}.", param="trial_days"
        )
    if deployment_type not in Organization.DeploymentType.values:
        raise ApiError("invalid_request", "Unknown deployment_type.", param="deployment_type")
    if plan_type not in Organization.PlanType.values:
        raise ApiError("invalid_request", "Unknown plan_type.", param="plan_type")
    price = _price_for(plan_type, price_id)

    Organization.objects.filter(pk=organization.pk).update(
        admin_email=admin_email,
        deployment_type=deployment_type,
        plan_type=plan_type,
        stripe_price_id=price,
        updated_at=timezone.now(),
    )
    organization.refresh_from_db()
    metadata = {"organization_id": str(organization.pk), "instance_url": organization.instance_url}

    if not organization.stripe_customer_id:
        try:
            customer = stripe_client.customer_create(
                email=admin_email,
                name=organization.name,
                metadata=metadata,
                idempotency_key=_idempotency_key("customer", organization),
            )
        except StripeServiceError as exc:
            _link_failed(organization=organization, error=exc)
            raise
        # Conditional: a concurrent link that stored a customer first wins (same key, same id).
        Organization.objects.filter(pk=organization.pk, stripe_customer_id__isnull=True).update(
            stripe_customer_id=customer["id"], updated_at=timezone.now()
        )
        organization.refresh_from_db()

    try:
        subscription = stripe_client.subscription_create(
            customer_id=organization.stripe_customer_id,
            price_id=price,
            trial_days=trial_days,
            metadata=metadata,
            idempotency_key=_idempotency_key("subscription", organization),
        )
    except StripeServiceError as exc:
        _link_failed(organization=organization, error=exc)
        raise

    now = now or timezone.now()
    status = SUBSCRIPTION_STATUS_MAP.get(subscription.get("status"), Organization.Status.ACTIVE)
    with transaction.atomic():
        (organization,) = lock_objects(Organization.objects.filter(pk=organization.pk))
        organization.stripe_subscription_id = subscription["id"]
        # A webhook may already have moved the status on; only fill it if still pending.
        if organization.status == Organization.Status.PENDING:
            organization.status = status
        organization.trial_end = _utc(subscription.get("trial_end"))
        organization.linked_at = now
        organization.link_error = ""
        organization.save()
        if backfill:
            usage_reports_backfill(organization=organization, now=now)
    logger.info("organization %s linked to Stripe", organization.pk)
    return organization


def usage_reports_backfill(*, organization: Organization, now: datetime | None = None) -> int:
    """Queue the organization's unbilled reports that Stripe still accepts (last 35 days).

    Older ones stay ``unbilled``: Stripe would reject their timestamps.
    """
    now = now or timezone.now()
    with transaction.atomic():
        ids = list(
            UsageReport.objects.filter(
                organization=organization,
                billing_status=UsageReport.BillingStatus.UNBILLED,
                reported_at__gt=now - METER_WINDOW,
            ).values_list("pk", flat=True)
        )
        UsageReport.objects.filter(pk__in=ids, billing_status=UsageReport.BillingStatus.UNBILLED).update(
            billing_status=UsageReport.BillingStatus.PENDING, next_attempt_at=now, updated_at=now
        )
        for report_id in ids:
            transaction.on_commit(lambda report_id=report_id: _queue_send(report_id))
    return len(ids)


# --- Meter events ----------------------------------------------------------------------------


def _claimable(now: datetime) -> Q:
    pending_due = Q(billing_status=UsageReport.BillingStatus.PENDING) & (
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    )
    lease_expired = Q(billing_status=UsageReport.BillingStatus.SENDING, lease_expires_at__lt=now)
    return pending_due | lease_expired


def _backoff(attempts: int) -> timedelta:
    return timedelta(seconds=settings.ORG_METER_RETRY_BASE_SECONDS * 2 ** max(attempts - 1, 0))


def usage_report_send(*, report_id, now: datetime | None = None) -> UsageReport | None:
    """Send one report's meter event, at most once across any number of workers.

    A worker first claims the report with a conditional UPDATE (pending → sending, with a
    lease); only the worker whose UPDATE matched calls Stripe. Returns the report, or None
    when another worker owns it or it is not due.
    """
    now = now or timezone.now()
    claimed = UsageReport.objects.filter(_claimable(now), pk=report_id).update(
        billing_status=UsageReport.BillingStatus.SENDING,
        lease_expires_at=now + SEND_LEASE,
        attempts=F("attempts") + 1,
        updated_at=now,
    )
    if not claimed:
        return None
    report = UsageReport.objects.select_related("organization").get(pk=report_id)
    organization = report.organization
    identifier = report.meter_identifier_expected
    sending = UsageReport.objects.filter(pk=report.pk, billing_status=UsageReport.BillingStatus.SENDING)

    if not organization.stripe_customer_id:
        error, retryable = "Organization has no Stripe customer.", False
    elif report.reported_at <= now - METER_WINDOW:
        error, retryable = "Report is older than Stripe's 35-day meter window.", False
    else:
        try:
            stripe_client.meter_event_create(
                event_name=settings.STRIPE_METER_EVENT_NAME,
                customer_id=organization.stripe_customer_id,
                value=report.user_count,
                identifier=identifier,
                timestamp=int(report.reported_at.timestamp()),
            )
        except StripeServiceError as exc:
            error, retryable = exc.message, exc.retryable
        else:
            sending.update(
                billing_status=UsageReport.BillingStatus.SENT,
                meter_identifier=identifier,
                sent_at=timezone.now(),
                lease_expires_at=None,
                next_attempt_at=None,
                last_error="",
                updated_at=timezone.now(),
            )
            report.refresh_from_db()
            return report

    # Transient errors are retried with exponential backoff up to the limit; a refusal
    # (bad customer, stale timestamp, Stripe not configured) waits for the operator.
    give_up = not retryable or report.attempts >= settings.ORG_METER_MAX_ATTEMPTS
    logger.warning("meter event for report %s failed (attempt %s): %s", report.pk, report.attempts, error)
    sending.update(
        billing_status=UsageReport.BillingStatus.FAILED if give_up else UsageReport.BillingStatus.PENDING,
        next_attempt_at=None if give_up else now + _backoff(report.attempts),
        lease_expires_at=None,
        last_error=error,
        updated_at=timezone.now(),
    )
    report.refresh_from_db()
    return report


def usage_reports_retry_due(*, now: datetime | None = None, limit: int = 500) -> list[str]:
    """Queue a send for every report that is due (pending past its backoff, or a lease that
    expired because a worker died). Returns the queued ids."""
    now = now or timezone.now()
    ids = [
        str(pk)
        for pk in UsageReport.objects.filter(_claimable(now))
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    ]
    for report_id in ids:
        _queue_send(report_id)
    return ids


def usage_report_retry(*, report: UsageReport, now: datetime | None = None) -> bool:
    """Operator retry of a failed report: back to pending with a fresh attempt budget."""
    now = now or timezone.now()
    with transaction.atomic():
        updated = UsageReport.objects.filter(
            pk=report.pk, billing_status=UsageReport.BillingStatus.FAILED
        ).update(
            billing_status=UsageReport.BillingStatus.PENDING,
            attempts=0,
            next_attempt_at=now,
            updated_at=now,
        )
        if updated:
            transaction.on_commit(lambda: _queue_send(report.pk))
    return bool(updated)


# --- Subscription webhooks -------------------------------------------------------------------


def organization_subscription_sync(*, event: dict) -> Organization | None:
    """Apply a ``customer.subscription.*`` event to the organization it belongs to.

    Subscriptions that are not an organization's (users' plans) are ignored. Events older than
    the last one applied are ignored too: Stripe does not guarantee delivery order.
    """
    subscription = (event.get("data") or {}).get("object") or {}
    if subscription.get("object") != "subscription" or not subscription.get("id"):
        return None
    subscription_id = subscription["id"]
    customer_id = subscription.get("customer")
    if isinstance(customer_id, dict):
        customer_id = customer_id.get("id")
    organization_id = (subscription.get("metadata") or {}).get("organization_id")

    match = Q(stripe_subscription_id=subscription_id)
    if organization_id and customer_id:
        # The created event can arrive before organization_link stored the subscription id.
        with contextlib.suppress(ValueError):  # not a UUID: not one of ours
            match |= Q(pk=uuid.UUID(str(organization_id)), stripe_customer_id=customer_id)
    event_at = _utc(event.get("created")) or timezone.now()
    if event.get("type") == "customer.subscription.deleted":
        status = Organization.Status.CANCELED
    else:
        status = SUBSCRIPTION_STATUS_MAP.get(subscription.get("status"))
    with transaction.atomic():
        locked = lock_objects(Organization.objects.filter(match))
        if len(locked) != 1:
            return None
        organization = locked[0]
        if organization.stripe_subscription_id not in (None, subscription_id):
            return None  # an older subscription of this customer
        if organization.subscription_event_at and event_at < organization.subscription_event_at:
            return organization
        organization.stripe_subscription_id = subscription_id
        if status is not None:
            organization.status = status
        if "trial_end" in subscription:
            organization.trial_end = _utc(subscription.get("trial_end"))
        organization.subscription_event_at = event_at
        organization.save()
    logger.info("organization %s subscription is %s", organization.pk, subscription.get("status"))
    return organization


def organization_subscription_event_handle(*, event: dict) -> None:
    """Registered with billing.registry for customer.subscription.* events."""
    organization_subscription_sync(event=event)
