"""Subscription webhooks: keep each organization's status in step with its Stripe subscription."""

from __future__ import annotations

import contextlib
import logging
import uuid

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from core.locks import lock_objects

from ..models import Organization
from .common import SUBSCRIPTION_STATUS_MAP
from .common import utc_from_timestamp as _utc

logger = logging.getLogger("tollgate.organizations")


def organization_subscription_sync(*, event: dict) -> Organization | None:
    """Apply a ``customer.subscription.*`` event to the organization it belongs to.

    Subscriptions that are not an organization's (workspaces' plans) are ignored. Events older than
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
