"""The only module that imports the Stripe SDK.

It pins the API version, sends an idempotency key with every create, and turns SDK errors
into :class:`StripeServiceError` (a message that is safe to show an operator). Tests stub
Stripe at the HTTP boundary (the SDK's ``requests`` client, intercepted with ``responses``)
or point ``STRIPE_API_BASE`` at a local fake server.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from functools import lru_cache
from typing import Any

import stripe
from django.conf import settings

logger = logging.getLogger("tollgate.stripe")


class StripeServiceError(Exception):
    """A Stripe call failed. ``message`` never contains a secret."""

    def __init__(self, message: str, *, code: str | None = None, retryable: bool = False):
        super().__init__(message)
        self.message = message
        self.code = code
        self.retryable = retryable


class StripeNotConfigured(StripeServiceError):
    pass


class WebhookSignatureError(Exception):
    pass


def stripe_is_configured() -> bool:
    return bool(settings.STRIPE_SECRET_KEY)


@lru_cache(maxsize=4)
def _client_for(api_key: str, api_base: str, api_version: str) -> stripe.StripeClient:
    base_addresses = {"api": api_base} if api_base else None
    return stripe.StripeClient(
        api_key,
        stripe_version=api_version,
        base_addresses=base_addresses,
        max_network_retries=2,
        http_client=stripe.RequestsClient(),
    )


def _client() -> stripe.StripeClient:
    if not settings.STRIPE_SECRET_KEY:
        raise StripeNotConfigured("Stripe is not configured (STRIPE_SECRET_KEY is empty).")
    return _client_for(settings.STRIPE_SECRET_KEY, settings.STRIPE_API_BASE, settings.STRIPE_API_VERSION)


def _call(operation: str, fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except stripe.StripeError as exc:
        retryable = (
            isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError)
            or (getattr(exc, "http_status", None) or 0) >= 500
        )
        message = exc.user_message or type(exc).__name__  # Stripe's own text; it masks keys
        logger.warning("stripe %s failed: %s (%s)", operation, type(exc).__name__, getattr(exc, "code", None))
        raise StripeServiceError(
            f"Stripe {operation} failed: {message}", code=getattr(exc, "code", None), retryable=retryable
        ) from exc


def _opts(idempotency_key: str | None) -> dict[str, Any]:
    return {"idempotency_key": idempotency_key} if idempotency_key else {}


def as_dict(obj) -> dict:
    """The wire JSON of a StripeObject (or a dict already), safe to store and ``json.dumps``.

    The SDK's ``to_dict()`` turns ``*_decimal`` strings into ``Decimal`` (and ``int64_string``
    into ``int``): stored in a JSONField that crashes, and it is not what Stripe sent. So we keep
    the response body as parsed JSON; an object without one (built locally) is converted with
    ``for_json=True``, which gives those fields back as strings.
    """
    if obj is None:
        return {}
    if isinstance(obj, dict) and not isinstance(obj, stripe.StripeObject):
        return obj
    response = getattr(obj, "last_response", None)
    if response is not None and isinstance(response.body, str | bytes):
        data = json.loads(response.body)
        same = ("id", "object")  # the body is this object's, not a parent's it was nested in
        if isinstance(data, dict) and all(data.get(k) == getattr(obj, k, None) for k in same):
            return data
    return obj.to_dict(for_json=True)


# --- Checkout, portal ------------------------------------------------------------------------


def checkout_session_create(*, params: dict, idempotency_key: str) -> dict:
    client = _client()
    return as_dict(
        _call("checkout session create", client.v1.checkout.sessions.create, params, _opts(idempotency_key))
    )


def checkout_session_retrieve(*, session_id: str) -> dict:
    client = _client()
    return as_dict(_call("checkout session retrieve", client.v1.checkout.sessions.retrieve, session_id))


def billing_portal_session_create(*, customer_id: str, return_url: str) -> dict:
    client = _client()
    params = {"customer": customer_id, "return_url": return_url}
    return as_dict(_call("billing portal session create", client.v1.billing_portal.sessions.create, params))


# --- Customers, subscriptions ----------------------------------------------------------------


def customer_create(
    *, email: str, name: str = "", metadata: dict | None = None, idempotency_key: str
) -> dict:
    client = _client()
    params = {"email": email, "name": name or email, "metadata": metadata or {}}
    return as_dict(_call("customer create", client.v1.customers.create, params, _opts(idempotency_key)))


def subscription_create(
    *,
    customer_id: str,
    price_id: str,
    trial_days: int = 0,
    metadata: dict | None = None,
    idempotency_key: str,
) -> dict:
    client = _client()
    params: dict[str, Any] = {
        "customer": customer_id,
        "items": [{"price": price_id}],
        "metadata": metadata or {},
    }
    if trial_days:
        params["trial_period_days"] = trial_days
        # A trial on a metered price needs no payment method up front.
        params["trial_settings"] = {"end_behavior": {"missing_payment_method": "create_invoice"}}
    return as_dict(
        _call("subscription create", client.v1.subscriptions.create, params, _opts(idempotency_key))
    )


def subscription_retrieve(*, subscription_id: str) -> dict:
    client = _client()
    return as_dict(_call("subscription retrieve", client.v1.subscriptions.retrieve, subscription_id))


def subscription_cancel(*, subscription_id: str, prorate: bool = True) -> dict:
    """Cancel now. With ``prorate`` the unused time is credited: ``invoice_now`` closes it in a
    final invoice, whose negative total goes to the customer's Stripe balance."""
    client = _client()
    params = {"prorate": prorate, "invoice_now": prorate}
    return as_dict(_call("subscription cancel", client.v1.subscriptions.cancel, subscription_id, params))


def charge_retrieve(*, charge_id: str) -> dict:
    client = _client()
    return as_dict(_call("charge retrieve", client.v1.charges.retrieve, charge_id))


# --- Meter events ------------------------------------------------------------------------------


def meter_event_create(
    *, event_name: str, customer_id: str, value: int, identifier: str, timestamp: int
) -> dict:
    """Send one meter event. Stripe deduplicates on ``identifier`` (24 h window)."""
    client = _client()
    params = {
        "event_name": event_name,
        "payload": {"stripe_customer_id": customer_id, "value": str(value)},
        "identifier": identifier,
        "timestamp": timestamp,
    }
    return as_dict(
        _call("meter event create", client.v1.billing.meter_events.create, params, _opts(identifier))
    )


# --- Events ----------------------------------------------------------------------------------


def events_list(*, created_gte: int, starting_after: str | None = None, limit: int = 100) -> dict:
    client = _client()
    params: dict[str, Any] = {"created": {"gte": created_gte}, "limit": limit}
    if starting_after:
        params["starting_after"] = starting_after
    return as_dict(_call("events list", client.v1.events.list, params))


def webhook_event_verify(
    *, payload: bytes, sig_header: str, secret: str, tolerance: int, now: int | None = None
) -> dict:
    """Verify a Stripe-Signature header and return the event as a dict.

    Stripe's SDK rejects only timestamps that are too old; we also reject ones too far in the
    future (a replay window in either direction).
    """
    if not sig_header:
        raise WebhookSignatureError("Missing Stripe-Signature header.")
    try:
        stripe.WebhookSignature.verify_header(payload.decode("utf-8"), sig_header, secret, tolerance)
    except (stripe.SignatureVerificationError, UnicodeDecodeError, ValueError) as exc:
        raise WebhookSignatureError("Invalid webhook signature.") from exc
    timestamps = [
        int(part.split("=", 1)[1])
        for part in sig_header.split(",")
        if part.startswith("t=") and part[2:].isdigit()
    ]
    current = int(now if now is not None else time.time())
    if not timestamps or abs(current - timestamps[0]) > tolerance:
        raise WebhookSignatureError("Webhook timestamp outside the tolerance window.")
    try:
        event = json.loads(payload)
    except ValueError as exc:
        raise WebhookSignatureError("Webhook body is not JSON.") from exc
    if (
        not isinstance(event, dict)
        or not isinstance(event.get("id"), str)
        or not isinstance(event.get("type"), str)
    ):
        raise WebhookSignatureError("Webhook body is not a Stripe event.")
    return event


def webhook_signature_header(*, payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """Build a valid Stripe-Signature header (simulated checkout and tests)."""
    ts = int(timestamp if timestamp is not None else time.time())
    signed = f"{ts}.".encode() + payload
    signature = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={ts},v1={signature}"
