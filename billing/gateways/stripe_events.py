"""What a Stripe webhook event means for billing (no SDK here; ``billing.gateways.stripe``
verifies the event, the webhook pipeline stores and locks it, then calls
``stripe_event_dispatch``): checkout outcomes, the subscription and invoice mirror, receipts and
off-session payments (``stripe_payments``), then every handler other apps registered for the type.
"""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from .. import registry
from ..fulfilment import (
    CheckoutEventRejected,
    checkout_for_session_get,
    checkout_session_disagreement,
    checkout_session_trusted,
)
from ..models import CheckoutFulfilment, CheckoutSession, PaymentTransaction
from ..services.payments import checkout_fulfil, checkout_session_expire, payment_transaction_settle
from ..services.subscriptions import (
    _id,
    _ts,
    subscription_invoice_paid,
    subscription_invoice_payment_failed,
    subscription_sync,
)
from .stripe_payments import (
    payment_intent_event_fail,
    payment_intent_event_fulfil,
    payment_receipt_backfill,
    payment_receipt_record,
)


def stripe_event_dispatch(*, event: dict, now: datetime) -> bool:
    """Billing's own handling, then every handler other apps registered for the type."""
    event_type = event.get("type", "")
    obj = (event.get("data") or {}).get("object") or {}
    created = _ts(event.get("created")) or now
    handled = False
    if event_type in ("checkout.session.completed", "checkout.session.async_payment_succeeded"):
        handled = checkout_session_fulfil(session=obj, event_id=event["id"], now=now)
    elif event_type == "checkout.session.async_payment_failed":
        handled = checkout_session_payment_fail(session=obj)
    elif event_type == "checkout.session.expired":
        handled = checkout_session_expire(session=obj, now=now)
    elif event_type.startswith("customer.subscription."):
        handled = subscription_sync(stripe_subscription=obj, event_type=event_type, event_created_at=created)
    elif event_type == "invoice.paid":
        handled = subscription_invoice_paid(invoice=obj, event_created_at=created)
    elif event_type == "invoice.payment_failed":
        handled = subscription_invoice_payment_failed(invoice=obj, event_created_at=created)
    elif event_type in ("charge.succeeded", "charge.updated"):
        handled = payment_receipt_record(charge=obj, now=now)
    elif event_type == "payment_intent.succeeded":
        handled = payment_intent_event_fulfil(payment_intent=obj, event_id=event["id"], now=now)
    elif event_type == "payment_intent.payment_failed":
        handled = payment_intent_event_fail(payment_intent=obj)
    for handler in registry.event_handlers_get(event_type):
        handler(event=event)
        handled = True
    return handled


def checkout_session_fulfil(*, session: dict, event_id: str, now: datetime | None = None) -> bool:
    """Run the kind's handler once per Checkout Session, whichever event gets here first.

    What is fulfilled (workspace, plan or pack, credits) is read from our own CheckoutSession row;
    an event that names a checkout we did not start, or disagrees with ours, is rejected
    (``billing.fulfilment``).
    """
    now = now or timezone.now()
    if session.get("payment_status") not in ("paid", "no_payment_required"):
        return False  # delayed payment method: checkout.session.async_payment_succeeded follows
    checkout = checkout_for_session_get(session=session)
    if checkout is None:
        if (session.get("metadata") or {}).get("kind"):
            raise CheckoutEventRejected(f"checkout session {_id(session.get('id'))!r} is not one we started")
        return False  # not ours (e.g. a payment link made in the Stripe dashboard)
    reason = checkout_session_disagreement(checkout=checkout, session=session)
    if reason:
        raise CheckoutEventRejected(f"checkout session {checkout.checkout_reference}: {reason}")
    trusted = checkout_session_trusted(checkout=checkout, session=session)
    payment_intent_id = _id(session.get("payment_intent"))
    fulfilled = checkout_fulfil(
        reference=checkout.checkout_reference,
        kind=checkout.kind,
        session=trusted,
        event_id=event_id,
        now=now,
        amount_minor=trusted["amount_total"],
        currency=checkout.currency,
        gateway_payment_id=payment_intent_id,
    )
    if payment_intent_id:  # its charge event may have come first
        payment_receipt_backfill(payment_intent_id=payment_intent_id, now=now)
    return fulfilled


def checkout_session_payment_fail(*, session: dict) -> bool:
    """A delayed payment failed: nothing to fulfil; remember it so nothing fulfils later."""
    session_id = _id(session.get("id"))
    if not session_id:
        return False
    checkout = checkout_for_session_get(session=session)
    kind = checkout.kind if checkout is not None else (session.get("metadata") or {}).get("kind", "")
    CheckoutFulfilment.objects.get_or_create(
        checkout_reference=session_id,
        defaults={"kind": kind, "status": CheckoutFulfilment.Status.FAILED},
    )
    now = timezone.now()
    CheckoutSession.objects.filter(checkout_reference=session_id).update(
        status=CheckoutSession.Status.PAYMENT_FAILED, updated_at=now
    )
    payment_transaction_settle(reference=session_id, status=PaymentTransaction.Status.FAILED, now=now)
    return True
