"""Linking an organization to a Stripe customer and subscription, and the backfill of reports
received before the link. Stripe calls run outside database transactions and row locks; offline
(DEBUG, no STRIPE_SECRET_KEY) they reach the simulated Stripe (``billing.gateways.stripe_api``)."""

from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from billing.gateways.stripe import StripeServiceError
from billing.gateways.stripe_api import stripe_api_get
from billing.gateways.stripe_simulated import stripe_simulated_enabled
from core.exceptions import ApiError
from core.locks import lock_objects

from ..models import Organization, UsageReport
from .common import METER_WINDOW, SUBSCRIPTION_STATUS_MAP
from .common import usage_report_send_queue as _queue_send
from .common import utc_from_timestamp as _utc

logger = logging.getLogger("tollgate.organizations")

TRIAL_DAYS_MAX = 730


def _price_for(plan_type: str, price_id: str | None) -> str:
    if price_id:
        return price_id
    price = {
        Organization.PlanType.MANAGED_CLOUD: settings.STRIPE_PRICE_VAULTAI_MANAGED_CLOUD,
        Organization.PlanType.SELF_HOSTED: settings.STRIPE_PRICE_VAULTAI_SELF_HOSTED,
    }.get(plan_type, "")
    if not price and stripe_simulated_enabled():
        return f"price_sim_vaultai_{plan_type}"  # the offline simulation has no price to name
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
    stripe_client = stripe_api_get()  # Stripe, or its simulation offline (DEBUG, no key)

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
