"""A local stand-in for the Stripe API (DEBUG only, when Stripe is not configured), so the flows
that need Stripe objects run offline with ``make run``: the operator links a VaultAI
organization (customer, subscription with trial) and its usage reports become meter events.

It answers the same functions, with the same arguments and return shapes, as
``billing.gateways.stripe`` (``customer_create``, ``subscription_create``,
``meter_event_create``), and what Stripe would then tell us by webhook is built here as a
Stripe event, signed with the webhook secret and handed to the one webhook pipeline
(``billing.services.webhooks.webhook_receive``): the code that reacts is the code Stripe's
deliveries run. The billing portal's simulation (``stripe_simulated_portal``) uses the same
delivery. This module does not import the Stripe SDK.

Ids are derived from the idempotency key, as Stripe answers a retried create with the object it
created first. Meter events are kept in the shared cache (Redis), deduplicated on their
identifier like Stripe's; the durable record stays the usage report row (sent, identifier).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from ..models import Gateway
from ..services.webhooks import webhook_receive

logger = logging.getLogger("tollgate.stripe")

SUBSCRIPTION_PREFIX = "sub_sim_"  # as the simulated checkout's: nothing to cancel at Stripe
CUSTOMER_PREFIX = "cus_sim_"
METER_EVENT_TTL = 60 * 60 * 24 * 40  # seconds: longer than Stripe's 35-day meter window


def stripe_simulated_enabled() -> bool:
    """As the simulated checkout: DEBUG, no STRIPE_SECRET_KEY (re-checked at runtime)."""
    return bool(settings.SIMULATED_CHECKOUT_ENABLED and settings.DEBUG and not settings.STRIPE_SECRET_KEY)


def simulated_id(prefix: str, idempotency_key: str | None = None) -> str:
    """A Stripe-like id; the same idempotency key always gives the same id."""
    if idempotency_key:
        return prefix + hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]
    return prefix + secrets.token_hex(12)


def _signature_header(*, payload: bytes, secret: str, timestamp: int) -> str:
    """Stripe's ``Stripe-Signature`` scheme: ``t=<unix>,v1=<HMAC-SHA256 of "t.payload">``."""
    signed = f"{timestamp}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def event_deliver(
    *, event_type: str, obj: dict, now: datetime | None = None, previous_attributes: dict | None = None
) -> dict:
    """Wrap ``obj`` in a Stripe event, sign it and run it through the webhook pipeline (verify,
    store, process), as a delivery from Stripe would. Returns the pipeline's answer; raises
    ``ApiError`` when the pipeline refuses or fails it."""
    now = now or timezone.now()
    created = int(now.timestamp())
    data: dict = {"object": obj}
    if previous_attributes is not None:
        data["previous_attributes"] = previous_attributes
    event = {
        "id": simulated_id("evt_sim_"),
        "object": "event",
        "api_version": settings.STRIPE_API_VERSION,
        "created": created,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
        "data": data,
    }
    payload = json.dumps(event).encode()
    # Signed at the wall clock: the pipeline checks the timestamp against its own clock.
    header = _signature_header(
        payload=payload, secret=settings.STRIPE_WEBHOOK_SECRET, timestamp=int(time.time())
    )
    result = webhook_receive(gateway=Gateway.STRIPE, payload=payload, headers={"Stripe-Signature": header})
    logger.info(
        "simulated stripe event delivered", extra={"type": event_type, "status": result.get("status")}
    )
    return result


# --- Customers, subscriptions (organizations) ---------------------------------------------------


def customer_create(
    *, email: str, name: str = "", metadata: dict | None = None, idempotency_key: str
) -> dict:
    return {
        "id": simulated_id(CUSTOMER_PREFIX, idempotency_key),
        "object": "customer",
        "email": email,
        "name": name or email,
        "metadata": metadata or {},
        "balance": 0,
        "currency": None,
        "created": int(timezone.now().timestamp()),
        "livemode": False,
    }


def subscription_create(
    *,
    customer_id: str,
    price_id: str,
    trial_days: int = 0,
    metadata: dict | None = None,
    idempotency_key: str,
    now: datetime | None = None,
) -> dict:
    """A subscription on a metered price, trialing for ``trial_days``; Stripe then sends
    ``customer.subscription.created``, delivered here through the webhook pipeline."""
    now = now or timezone.now()
    start = int(now.timestamp())
    trial_end = int((now + timedelta(days=trial_days)).timestamp()) if trial_days else None
    period_end = trial_end or int((now + timedelta(days=30)).timestamp())
    subscription_id = simulated_id(SUBSCRIPTION_PREFIX, idempotency_key)
    subscription = {
        "id": subscription_id,
        "object": "subscription",
        "customer": customer_id,
        "status": "trialing" if trial_days else "active",
        "collection_method": "charge_automatically",
        "created": start,
        "start_date": start,
        "billing_cycle_anchor": period_end,
        "trial_start": start if trial_days else None,
        "trial_end": trial_end,
        "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
        "cancel_at_period_end": False,
        "cancel_at": None,
        "canceled_at": None,
        "ended_at": None,
        "currency": "eur",
        "livemode": False,
        "metadata": metadata or {},
        "latest_invoice": None,
        "items": {
            "object": "list",
            "data": [
                {
                    "id": simulated_id("si_sim_", idempotency_key),
                    "object": "subscription_item",
                    "subscription": subscription_id,
                    "price": {
                        "id": price_id,
                        "object": "price",
                        "type": "recurring",
                        "recurring": {"interval": "month", "interval_count": 1, "usage_type": "metered"},
                    },
                    "current_period_start": start,
                    "current_period_end": period_end,
                }
            ],
            "has_more": False,
            "url": f"/v1/subscription_items?subscription={subscription_id}",
        },
    }
    event_deliver(event_type="customer.subscription.created", obj=subscription, now=now)
    return subscription


# --- PaymentIntents (auto top-up) --------------------------------------------------------------

SIMULATED_PAYMENT_METHOD = "pm_sim_card"  # the card every simulated checkout "saves"
# Stripe's test PaymentMethods that fail off-session, honoured here: set one as a workspace's
# ``AutoTopUp.stripe_payment_method_id`` (admin or shell) to see auto top-up fail offline.
DECLINING_PAYMENT_METHODS = {
    "pm_card_chargeDeclined": ("card_declined", "Your card was declined."),
    "pm_card_chargeDeclinedInsufficientFunds": ("card_declined", "Your card has insufficient funds."),
    "pm_card_authenticationRequired": (
        "authentication_required",
        "Your card was declined. This transaction requires authentication.",
    ),
}


def payment_intent_retrieve(*, payment_intent_id: str) -> dict:
    """A simulated checkout's PaymentIntent: the card it saved."""
    return {
        "id": payment_intent_id,
        "object": "payment_intent",
        "status": "succeeded",
        "customer": simulated_id(CUSTOMER_PREFIX, payment_intent_id),
        "payment_method": SIMULATED_PAYMENT_METHOD,
        "setup_future_usage": "off_session",
        "livemode": False,
    }


def payment_intent_off_session_create(
    *,
    amount_minor: int,
    currency: str,
    customer_id: str,
    payment_method_id: str,
    metadata: dict,
    description: str,
    idempotency_key: str,
) -> dict:
    """Succeeds, unless the card is one of ``DECLINING_PAYMENT_METHODS``: then the PaymentIntent
    Stripe leaves behind a failed off-session confirmation (``requires_payment_method`` with
    ``last_payment_error``). No receipt page exists offline."""
    intent = {
        "id": simulated_id("pi_sim_", idempotency_key),
        "object": "payment_intent",
        "amount": int(amount_minor),
        "amount_received": int(amount_minor),
        "currency": currency,
        "customer": customer_id,
        "payment_method": payment_method_id,
        "description": description,
        "metadata": metadata,
        "status": "succeeded",
        "latest_charge": None,
        "last_payment_error": None,
        "created": int(timezone.now().timestamp()),
        "livemode": False,
    }
    declined = DECLINING_PAYMENT_METHODS.get(payment_method_id)
    if declined is not None:
        code, message = declined
        intent.update(
            status="requires_payment_method",
            amount_received=0,
            last_payment_error={"type": "card_error", "code": code, "message": message},
        )
    return intent


# --- Meter events ------------------------------------------------------------------------------


def _meter_keys(customer_id: str) -> tuple[str, str]:
    return f"stripe-sim:meter:{customer_id}:count", f"stripe-sim:meter:{customer_id}:"


def meter_event_create(
    *, event_name: str, customer_id: str, value: int, identifier: str, timestamp: int
) -> dict:
    """Record one meter event; a second one with the same identifier is not counted again
    (Stripe deduplicates on ``identifier``)."""
    meter_event = {
        "object": "billing.meter_event",
        "event_name": event_name,
        "identifier": identifier,
        "payload": {"stripe_customer_id": customer_id, "value": str(value)},
        "timestamp": timestamp,
        "created": int(timezone.now().timestamp()),
        "livemode": False,
    }
    if cache.add(f"stripe-sim:meter-identifier:{identifier}", 1, timeout=METER_EVENT_TTL):
        count_key, item_prefix = _meter_keys(customer_id)
        cache.add(count_key, 0, timeout=METER_EVENT_TTL)
        number = cache.incr(count_key)
        cache.set(f"{item_prefix}{number}", meter_event, timeout=METER_EVENT_TTL)
    return meter_event


def meter_events_list(*, customer_id: str) -> list[dict]:
    """The meter events recorded for a customer, oldest first."""
    count_key, item_prefix = _meter_keys(customer_id)
    count = cache.get(count_key) or 0
    found = cache.get_many([f"{item_prefix}{n}" for n in range(1, count + 1)])
    return [found[f"{item_prefix}{n}"] for n in range(1, count + 1) if f"{item_prefix}{n}" in found]
