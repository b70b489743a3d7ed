"""Stripe webhook events: the signing secret, store (unique event id) → process under a row lock
on the stored event → dispatch to handlers, and the checkout outcomes (fulfil, fail, expire)
keyed by the Checkout Session id.

Every event is stored before it is acted on and processed once. Subscription and invoice events
are handed to ``stripe_subscriptions``.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from core.exceptions import ApiError
from core.locks import lock_objects

from .. import registry
from ..fulfilment import (
    CheckoutEventRejected,
    checkout_for_session_get,
    checkout_session_disagreement,
    checkout_session_trusted,
)
from ..models import CheckoutFulfilment, CheckoutSession, PaymentTransaction, StripeEvent
from .checkout import payment_transaction_settle
from .stripe_subscriptions import (
    _id,
    _ts,
    subscription_invoice_paid,
    subscription_invoice_payment_failed,
    subscription_sync,
)

logger = logging.getLogger("tollgate.billing")


# =============================================================================================
# Webhook events
# =============================================================================================


LOCAL_WEBHOOK_SECRET = "whsec_local_simulated_checkout"  # the embedded default (DEBUG only)


def stripe_webhook_secret_get() -> str:
    """The secret webhooks are verified with; outside DEBUG the public local default is
    refused, so a deployment that forgot STRIPE_WEBHOOK_SECRET cannot accept forged events."""
    secret = settings.STRIPE_WEBHOOK_SECRET
    if not secret or (secret == LOCAL_WEBHOOK_SECRET and not settings.DEBUG):
        raise ApiError("service_unavailable", "Stripe webhooks are not configured on this server.")
    return secret


class StripeEventProcessingError(Exception):
    """Processing a stored event failed; the error is recorded on the event row."""


def stripe_event_store(*, event: dict, now: datetime | None = None) -> tuple[StripeEvent, bool]:
    """Store a verified event; ``(row, False)`` when this event id was already stored."""
    now = now or timezone.now()
    try:
        with transaction.atomic():
            row = StripeEvent.objects.create(
                stripe_event_id=event["id"],
                type=event["type"],
                livemode=bool(event.get("livemode")),
                payload=event,
                stripe_created_at=_ts(event.get("created")),
                received_at=now,
            )
        return row, True
    except IntegrityError:
        return StripeEvent.objects.get(stripe_event_id=event["id"]), False


def stripe_event_process(*, event: StripeEvent, now: datetime | None = None) -> StripeEvent:
    """Process a stored event once. Concurrent deliveries of the same event queue on the row
    lock; whoever comes second sees it processed and does nothing. A failure rolls back the
    handlers' writes, is recorded on the row (status ``failed``), and is raised again."""
    now = now or timezone.now()
    try:
        with transaction.atomic():
            row = lock_objects(StripeEvent.objects.filter(pk=event.pk))[0]
            if row.status in (StripeEvent.Status.PROCESSED, StripeEvent.Status.IGNORED):
                return row
            handled = _event_dispatch(event=row.payload, now=now)
            row.status = StripeEvent.Status.PROCESSED if handled else StripeEvent.Status.IGNORED
            row.error = ""
            row.attempts += 1
            row.processed_at = now
            row.save(update_fields=["status", "error", "attempts", "processed_at"])
            return row
    except CheckoutEventRejected as exc:
        # Not a transient failure: a redelivery would be rejected the same way, so Stripe is
        # told it was received and the row keeps the reason for the operator.
        StripeEvent.objects.filter(pk=event.pk).update(
            status=StripeEvent.Status.FAILED,
            error=f"rejected: {exc}"[:2000],
            attempts=F("attempts") + 1,
            processed_at=now,
        )
        logger.warning(
            "stripe event rejected", extra={"stripe_event_id": event.stripe_event_id, "reason": str(exc)}
        )
        return StripeEvent.objects.get(pk=event.pk)
    except Exception as exc:  # recorded on the row and raised again, never swallowed
        StripeEvent.objects.filter(pk=event.pk).update(
            status=StripeEvent.Status.FAILED,
            error=f"{type(exc).__name__}: {exc}"[:2000],
            attempts=F("attempts") + 1,
        )
        logger.exception("stripe event processing failed", extra={"stripe_event_id": event.stripe_event_id})
        raise StripeEventProcessingError(str(exc)) from exc


def stripe_event_reprocess(*, event: StripeEvent, now: datetime | None = None) -> StripeEvent:
    """Admin action: try a failed (or stuck) event again."""
    return stripe_event_process(event=event, now=now)


def _event_dispatch(*, event: dict, now: datetime) -> bool:
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
    for handler in registry.event_handlers_get(event_type):
        handler(event=event)
        handled = True
    return handled


def checkout_session_fulfil(*, session: dict, event_id: str, now: datetime | None = None) -> bool:
    """Run the kind's handler once per Checkout Session, whichever event gets here first.

    What is fulfilled (user, plan or pack, credits) is read from our own CheckoutSession row;
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
    return checkout_fulfil(
        reference=checkout.checkout_reference,
        kind=checkout.kind,
        session=trusted,
        event_id=event_id,
        now=now,
        amount_minor=trusted["amount_total"],
        currency=checkout.currency,
        gateway_payment_id=_id(session.get("payment_intent")),
    )


def checkout_fulfil(
    *,
    reference: str,
    kind: str,
    session: dict,
    event_id: str,
    now: datetime | None = None,
    amount_minor: int | None = None,
    currency: str = "",
    gateway_payment_id: str = "",
) -> bool:
    """Run the kind's registered handler once per checkout reference, whichever gateway,
    event or delivery gets here first (must run inside the event's transaction).

    ``reference`` is the Stripe Checkout Session id or our Chargily reference; handlers key
    their own idempotency on ``session["id"]``, which is that same reference.
    """
    now = now or timezone.now()
    handler = registry.checkout_handler_get(kind)
    if not reference or handler is None:
        logger.warning("checkout session with no handler", extra={"kind": kind, "event_id": event_id})
        return False
    fulfilment, _ = CheckoutFulfilment.objects.get_or_create(
        checkout_reference=reference, defaults={"kind": kind}
    )
    fulfilment = lock_objects(CheckoutFulfilment.objects.filter(pk=fulfilment.pk))[0]
    if fulfilment.status == CheckoutFulfilment.Status.FULFILLED:
        return True
    handler(session=session, event_id=event_id)
    fulfilment.status = CheckoutFulfilment.Status.FULFILLED
    fulfilment.stripe_event_id = event_id
    fulfilment.fulfilled_at = now
    fulfilment.save(update_fields=["status", "stripe_event_id", "fulfilled_at"])
    CheckoutSession.objects.filter(checkout_reference=reference).update(
        status=CheckoutSession.Status.COMPLETE, updated_at=now
    )
    payment_transaction_settle(
        reference=reference,
        status=PaymentTransaction.Status.PAID,
        now=now,
        amount_minor=amount_minor,
        currency=currency,
        gateway_payment_id=gateway_payment_id,
    )
    return True


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


def checkout_session_expire(*, session: dict, now: datetime | None = None) -> bool:
    """An abandoned checkout expired (Stripe after 24 h, Chargily on its own clock)."""
    reference = _id(session.get("id"))
    if not reference:
        return False
    now = now or timezone.now()
    CheckoutSession.objects.filter(checkout_reference=reference, status=CheckoutSession.Status.OPEN).update(
        status=CheckoutSession.Status.CANCELED, updated_at=now
    )
    return payment_transaction_settle(reference=reference, status=PaymentTransaction.Status.EXPIRED, now=now)
