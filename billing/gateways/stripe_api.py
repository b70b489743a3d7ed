"""Which Stripe a caller of the Stripe API functions talks to: the real one
(``billing.gateways.stripe``) or, in DEBUG without STRIPE_SECRET_KEY, the local simulation
(``billing.gateways.stripe_simulated``), which answers the same functions with the same shapes.
Chosen per call, so a test (or a deployment) that sets STRIPE_SECRET_KEY reaches Stripe.

Also the one door for charging a saved card with the customer away
(``off_session_payment_charge``, auto top-up), whichever Stripe answers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from types import ModuleType

from django.utils import timezone

from ..fulfilment import _id
from ..models import CheckoutSession
from . import stripe, stripe_simulated
from .stripe_payments import off_session_checkout_record, off_session_payment_fail, off_session_payment_fulfil

StripeServiceError = stripe.StripeServiceError


def stripe_api_get() -> ModuleType:
    """The module whose ``customer_create``, ``subscription_create``, ``meter_event_create``,
    ``payment_intent_retrieve`` and ``payment_intent_off_session_create`` to call."""
    return stripe_simulated if stripe_simulated.stripe_simulated_enabled() else stripe


@dataclass(frozen=True)
class OffSessionPayment:
    """What became of one off-session charge. ``status``: ``succeeded`` (fulfilled),
    ``failed`` (declined or the card needs the customer: ``error_code``, ``message`` safe to
    show), or ``processing`` (Stripe will tell by ``payment_intent.succeeded``)."""

    status: str
    reference: str  # our checkout / PaymentTransaction reference ("ots_…")
    payment_intent_id: str = ""
    error_code: str = ""
    message: str = ""


def off_session_payment_charge(
    *,
    workspace,
    kind: str,
    amount_minor: int,
    currency: str,
    customer_id: str,
    payment_method_id: str,
    metadata: dict,
    description: str,
    idempotency_key: str,
    now: datetime | None = None,
) -> OffSessionPayment:
    """Charge ``workspace``'s saved card and, once paid, fulfil ``kind``'s registered handler
    exactly as a paid checkout (``billing.gateways.stripe_payments``). Call it outside any
    transaction. Safe to repeat with the same ``idempotency_key``: Stripe replays its first
    answer and fulfilment runs once. Raises ``StripeServiceError`` only for a transient
    failure (``retryable``), to be retried with the same key."""
    now = now or timezone.now()
    api = stripe_api_get()
    checkout = off_session_checkout_record(
        workspace=workspace,
        kind=kind,
        amount_minor=amount_minor,
        currency=currency,
        metadata=metadata,
        description=description,
        idempotency_key=idempotency_key,
        is_simulated=api is stripe_simulated,
    )
    reference = checkout.checkout_reference
    if checkout.status == CheckoutSession.Status.COMPLETE:
        return OffSessionPayment(status="succeeded", reference=reference)
    try:
        intent = api.payment_intent_off_session_create(
            amount_minor=checkout.amount_minor,
            currency=checkout.currency,
            customer_id=customer_id,
            payment_method_id=payment_method_id,
            metadata=checkout.metadata,
            description=checkout.description,
            idempotency_key=idempotency_key,
        )
    except stripe.StripeServiceError as exc:
        if exc.retryable:
            raise
        off_session_payment_fail(checkout=checkout, payment_intent_id=exc.payment_intent_id, now=now)
        return OffSessionPayment(
            status="failed",
            reference=reference,
            payment_intent_id=exc.payment_intent_id,
            error_code=exc.code or "payment_failed",
            message=exc.message,
        )
    payment_intent_id = _id(intent.get("id"))
    status = intent.get("status")
    if status == "succeeded":
        off_session_payment_fulfil(checkout=checkout, payment_intent=intent, now=now)
        return OffSessionPayment(status="succeeded", reference=reference, payment_intent_id=payment_intent_id)
    if status == "processing":
        return OffSessionPayment(
            status="processing", reference=reference, payment_intent_id=payment_intent_id
        )
    error = intent.get("last_payment_error") or {}
    code = error.get("code") or (
        "authentication_required" if status == "requires_action" else "payment_failed"
    )
    off_session_payment_fail(checkout=checkout, payment_intent_id=payment_intent_id, now=now)
    return OffSessionPayment(
        status="failed",
        reference=reference,
        payment_intent_id=payment_intent_id,
        error_code=code,
        message=str(error.get("message") or "The card was not charged."),
    )
