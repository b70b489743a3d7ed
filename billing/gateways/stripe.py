"""The Stripe gateway: the only module that imports the Stripe SDK.

It pins the API version, sends an idempotency key with every create, and turns SDK errors
into :class:`StripeServiceError` (a message that is safe to show an operator). Beside the API
calls it holds what only Stripe means: opening a Checkout Session (or the offline simulated
one), verifying ``Stripe-Signature`` (what an event means for billing is ``stripe_events``),
charging a saved card off-session (auto top-up) and canceling a replaced subscription at
Stripe. Tests stub Stripe at the HTTP boundary (the SDK's ``requests`` client, intercepted
with ``responses``) or point ``STRIPE_API_BASE`` at a local fake server.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from typing import Any

import stripe
from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from accounts.selectors import workspace_billing_emails
from core.exceptions import ApiError

from ..models import (
    CheckoutSession,
    Gateway,
    StripeEvent,
    Subscription,
)
from ..selectors import subscription_billing_customer_get
from ..services.checkout import checkout_redirect_url_validate
from ..services.payments import (
    payment_transaction_record,
)
from ..services.subscriptions import (
    _ts,
)
from .stripe_events import stripe_event_dispatch
from .stripe_payments import SAVE_PAYMENT_METHOD
from .stripe_simulated import stripe_simulated_enabled

logger = logging.getLogger("tollgate.stripe")
billing_logger = logging.getLogger("tollgate.billing")

LOCAL_WEBHOOK_SECRET = "whsec_local_simulated_checkout"  # the embedded default (DEBUG only)
SIMULATED_PREFIX = "sub_sim_"  # the offline checkout's subscriptions: nothing runs at Stripe


class StripeServiceError(Exception):
    """A Stripe call failed. ``message`` never contains a secret."""

    def __init__(
        self, message: str, *, code: str | None = None, retryable: bool = False, payment_intent_id: str = ""
    ):
        super().__init__(message)
        self.message = message
        self.code = code
        self.retryable = retryable
        self.payment_intent_id = payment_intent_id  # a card error's PaymentIntent, when Stripe names one


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
            f"Stripe {operation} failed: {message}",
            code=getattr(exc, "code", None),
            retryable=retryable,
            payment_intent_id=_error_payment_intent_id(exc),
        ) from exc


def _error_payment_intent_id(exc: stripe.StripeError) -> str:
    """The PaymentIntent a card error names (a StripeObject, which is not a ``dict``)."""
    intent = getattr(getattr(exc, "error", None), "payment_intent", None)
    if intent is None or isinstance(intent, str):
        return intent or ""
    return str(getattr(intent, "id", "") or "")


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


# --- PaymentIntents (auto top-up) --------------------------------------------------------------


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
    """Charge a saved card with the customer away (``off_session=True, confirm=True``), the
    charge expanded for its ``receipt_url``. A decline or a card that needs the customer
    (``authentication_required``) is a ``StripeServiceError`` (402 card error) carrying the
    PaymentIntent's id; the same idempotency key replays Stripe's first answer."""
    client = _client()
    params = {
        "amount": int(amount_minor),
        "currency": currency,
        "customer": customer_id,
        "payment_method": payment_method_id,
        "off_session": True,
        "confirm": True,
        "metadata": metadata,
        "description": description,
        "expand": ["latest_charge"],
    }
    return as_dict(
        _call("payment intent create", client.v1.payment_intents.create, params, _opts(idempotency_key))
    )


def payment_intent_retrieve(*, payment_intent_id: str) -> dict:
    """A PaymentIntent (its ``customer`` and ``payment_method``: the card a checkout saved)."""
    client = _client()
    return as_dict(_call("payment intent retrieve", client.v1.payment_intents.retrieve, payment_intent_id))


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
    """A valid Stripe-Signature header, from the SDK's own helper (simulated checkout, tests)."""
    return stripe.WebhookSignature.generate_signature_header(
        payload.decode("utf-8"), secret, int(timestamp) if timestamp is not None else None
    )


# --- Webhook events ----------------------------------------------------------------------------


def stripe_webhook_secret_get() -> str:
    """The secret webhooks are verified with; outside DEBUG the public local default is
    refused, so a deployment that forgot STRIPE_WEBHOOK_SECRET cannot accept forged events."""
    secret = settings.STRIPE_WEBHOOK_SECRET
    if not secret or (secret == LOCAL_WEBHOOK_SECRET and not settings.DEBUG):
        raise ApiError("service_unavailable", "Stripe webhooks are not configured on this server.")
    return secret


# --- Checkout ----------------------------------------------------------------------------------


def simulated_checkout_enabled() -> bool:
    """The offline checkout exists only in DEBUG and without Stripe (re-checked at runtime)."""
    return bool(settings.SIMULATED_CHECKOUT_ENABLED and settings.DEBUG and not settings.STRIPE_SECRET_KEY)


def stripe_checkout_open(*, checkout: CheckoutSession) -> dict:
    """Open an unsaved checkout at Stripe (or the simulated page offline, DEBUG only).

    Our row is written first so the Stripe idempotency key is built from our id; the Stripe
    call happens outside any transaction.
    """
    if stripe_is_configured():
        checkout.save()
        metadata = checkout.metadata
        params = {
            "mode": checkout.mode,
            "line_items": [checkout.line_item],
            "success_url": checkout.success_url,
            "cancel_url": checkout.cancel_url,
            "client_reference_id": str(checkout.workspace_id),
            "metadata": metadata,
        }
        # One Stripe customer per workspace: reuse the one its subscriptions have.
        customer_id = subscription_billing_customer_get(workspace=checkout.workspace)
        if customer_id:
            params["customer"] = customer_id
        else:
            email = _checkout_customer_email(checkout)
            if email:
                params["customer_email"] = email
        if checkout.mode == "subscription":
            params["subscription_data"] = {"metadata": metadata}
        else:
            params["payment_intent_data"] = {"metadata": metadata}
            if metadata.get(SAVE_PAYMENT_METHOD) == "1":
                # Keep the card for later charges with the customer away (auto top-up): the
                # PaymentIntent then names the customer and the card (``payment_intent_retrieve``).
                params["payment_intent_data"]["setup_future_usage"] = "off_session"
                if not customer_id:
                    params["customer_creation"] = "always"
        try:
            session = checkout_session_create(
                params=params, idempotency_key=f"checkout-session:{checkout.pk}"
            )
        except StripeServiceError as exc:
            CheckoutSession.objects.filter(pk=checkout.pk).update(status=CheckoutSession.Status.CANCELED)
            raise ApiError("upstream_error", exc.message)
        checkout.checkout_reference = session["id"]
        checkout.checkout_url = session.get("url") or ""
        checkout.save(update_fields=["checkout_reference", "checkout_url", "updated_at"])
        payment_transaction_record(checkout=checkout)
    elif simulated_checkout_enabled():
        checkout.is_simulated = True
        checkout.checkout_reference = "cs_test_sim_" + secrets.token_hex(24)
        checkout.checkout_url = settings.SITE_URL + reverse(
            "billing:simulated-checkout", kwargs={"session_id": checkout.checkout_reference}
        )
        with transaction.atomic():
            checkout.save()
            payment_transaction_record(checkout=checkout)
    else:
        raise ApiError("service_unavailable", "Payments are not configured on this server.")
    return {"checkout_url": checkout.checkout_url, "session_id": checkout.checkout_reference}


def _checkout_customer_email(checkout: CheckoutSession) -> str:
    """The email a new Stripe customer gets: the member who opened the checkout, else the
    workspace's first billing contact."""
    if checkout.created_by_id is not None:
        return checkout.created_by.email
    emails = workspace_billing_emails(workspace=checkout.workspace)
    return emails[0] if emails else ""


def simulated_checkout_event_build(
    *, checkout: CheckoutSession, now: datetime | None = None
) -> tuple[bytes, str]:
    """A ``checkout.session.completed`` event shaped like Stripe's, and its signature header."""
    now = now or timezone.now()
    ts = int(now.timestamp())
    session = {
        "id": checkout.checkout_reference,
        "object": "checkout.session",
        "mode": checkout.mode,
        "status": "complete",
        "payment_status": "paid",
        "amount_subtotal": checkout.amount_minor,
        "amount_total": checkout.amount_minor,
        "currency": checkout.currency,
        "client_reference_id": str(checkout.workspace_id),
        "customer": f"cus_sim_ws{checkout.workspace_id}",
        "customer_details": {"email": _checkout_customer_email(checkout)},
        "metadata": checkout.metadata,
        "subscription": f"sub_sim_{secrets.token_hex(12)}" if checkout.mode == "subscription" else None,
        "payment_intent": f"pi_sim_{secrets.token_hex(12)}" if checkout.mode == "payment" else None,
        "success_url": checkout.success_url,
        "cancel_url": checkout.cancel_url,
        "created": int(checkout.created_at.timestamp()),
        "livemode": False,
    }
    event = {
        "id": f"evt_sim_{secrets.token_hex(12)}",
        "object": "event",
        "api_version": settings.STRIPE_API_VERSION,
        "created": ts,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": "checkout.session.completed",
        "data": {"object": session},
    }
    payload = json.dumps(event).encode()
    header = webhook_signature_header(payload=payload, secret=settings.STRIPE_WEBHOOK_SECRET, timestamp=ts)
    return payload, header


def billing_portal_session_start(*, workspace, return_url: str) -> str:
    """The URL of the Stripe customer portal for the workspace's billing account (the simulated
    portal offline, DEBUG only)."""
    checkout_redirect_url_validate(url=return_url, param="returnUrl")
    customer_id = subscription_billing_customer_get(workspace=workspace)
    if not customer_id:
        raise ApiError(
            "invalid_request", "This workspace has no billing account yet: subscribe to a plan first."
        )
    if not stripe_is_configured():
        if stripe_simulated_enabled():  # offline: the local portal drives the same webhook code
            return settings.SITE_URL + reverse("billing:simulated-portal")
        raise ApiError("service_unavailable", "The billing portal needs Stripe, which is not configured.")
    try:
        session = billing_portal_session_create(customer_id=customer_id, return_url=return_url)
    except StripeServiceError as exc:
        raise ApiError("upstream_error", exc.message)
    return session["url"]


# --- Replaced subscriptions (billing.subscriptions ends them in our mirror) -------------------


def subscription_stripe_cancel(*, subscription_id: int, now: datetime | None = None) -> bool:
    """Cancel a replaced subscription at Stripe now, prorated. Safe to run twice: when Stripe
    refuses because it already ended there, that counts as done. Returns whether it is done."""
    now = now or timezone.now()
    row = Subscription.objects.filter(
        pk=subscription_id,
        gateway=Gateway.STRIPE,
        replaced_at__isnull=False,
        stripe_canceled_at__isnull=True,
    ).first()
    if row is None:
        return False
    if not row.stripe_subscription_id.startswith(SIMULATED_PREFIX):
        try:
            subscription_cancel(subscription_id=row.stripe_subscription_id, prorate=True)
        except StripeServiceError as exc:
            # Our earlier attempt whose answer was lost, or the customer canceled it first.
            remote = subscription_retrieve(subscription_id=row.stripe_subscription_id)
            if remote.get("status") not in ("canceled", "incomplete_expired"):
                raise exc
    Subscription.objects.filter(pk=row.pk, stripe_canceled_at__isnull=True).update(
        stripe_canceled_at=now, updated_at=now
    )
    billing_logger.info("replaced subscription canceled at Stripe", extra={"subscription_id": row.pk})
    return True


def subscriptions_replaced_cancel_pending(*, now: datetime | None = None) -> int:
    """Beat sweeper: cancel at Stripe every replaced subscription not confirmed canceled yet
    (the after-commit task failed, its worker died, or rows the migration replaced). Returns
    how many were confirmed; a failure is logged and left for the next run."""
    now = now or timezone.now()
    done = 0
    pending = Subscription.objects.filter(
        gateway=Gateway.STRIPE, replaced_at__isnull=False, stripe_canceled_at__isnull=True
    ).values_list("pk", flat=True)
    for subscription_id in list(pending[:500]):
        try:
            done += subscription_stripe_cancel(subscription_id=subscription_id, now=now)
        except StripeServiceError as exc:
            billing_logger.error(
                "replaced subscription still running at Stripe",
                extra={"subscription_id": subscription_id, "error": exc.message},
            )
    return done


# --- The gateway -------------------------------------------------------------------------------


class StripeGateway:
    """Stripe behind ``billing.gateways.base.PaymentGateway``."""

    name = Gateway.STRIPE
    event_model = StripeEvent
    event_id_field = "stripe_event_id"

    def checkout_open(self, *, checkout: CheckoutSession) -> dict:
        return stripe_checkout_open(checkout=checkout)

    def event_verify(self, *, payload: bytes, headers: Mapping[str, str]) -> dict:
        try:
            return webhook_event_verify(
                payload=payload,
                sig_header=headers.get("Stripe-Signature", ""),
                secret=stripe_webhook_secret_get(),
                tolerance=settings.STRIPE_WEBHOOK_TOLERANCE_SECONDS,
            )
        except WebhookSignatureError as exc:
            raise ApiError("invalid_signature", str(exc))

    def event_row(self, *, event: dict) -> dict:
        return {
            "stripe_event_id": event["id"],
            "type": event["type"],
            "livemode": bool(event.get("livemode")),
            "stripe_created_at": _ts(event.get("created")),
        }

    def event_dispatch(self, *, event: dict, event_id: str, now: datetime) -> bool:
        return stripe_event_dispatch(event=event, now=now)


GATEWAY = StripeGateway()
