"""Stripe payments beside Checkout: receipts and off-session charges (auto top-up).

- Receipts: Stripe puts ``receipt_url`` on the Charge, which no checkout event carries. The
  ``charge.succeeded`` / ``charge.updated`` events store it on the PaymentTransaction whose
  ``gateway_payment_id`` is the charge's PaymentIntent; a charge event that arrived before the
  checkout was fulfilled is read back from the stored events when it is.
- Off-session charges: a PaymentIntent we create for a saved card. Our CheckoutSession row
  (mode ``payment``, reference ``ots_…`` derived from the caller's idempotency key) is written
  first, exactly as for a checkout, so the payment is fulfilled through the same
  ``checkout_fulfil`` (the kind's registered handler, once per reference, the transaction
  settled ``paid`` with its ``payment.succeeded`` event) — by the caller when Stripe answers
  ``succeeded``, or by ``payment_intent.succeeded`` if the caller died first. What is fulfilled
  comes from our row; the PaymentIntent only says that, and how much, it was paid.

This module calls no API (``stripe_api.off_session_payment_charge`` does) and imports no SDK.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from ..fulfilment import CheckoutEventRejected, _id
from ..models import CheckoutFulfilment, CheckoutSession, Gateway, PaymentTransaction, StripeEvent
from ..services.payments import checkout_fulfil, payment_transaction_record, payment_transaction_settle

logger = logging.getLogger("tollgate.billing")

OFF_SESSION_PREFIX = "ots_"  # our reference of an off-session payment
# Checkout metadata asking Stripe Checkout to save the card for off-session charges.
SAVE_PAYMENT_METHOD = "save_payment_method"
RECEIPT_LOOKBACK = timedelta(days=7)  # how far back a late-fulfilled payment's charge event is sought
_CHARGE_EVENTS = ("charge.succeeded", "charge.updated")


def _receipt_url_clean(value) -> str:
    url = str(value or "")
    return url if url.startswith("https://") and len(url) <= 500 else ""


def payment_receipt_record(*, charge: dict, now: datetime | None = None) -> bool:
    """``charge.succeeded`` / ``charge.updated``: keep the charge's receipt page on our
    transaction. False (the event is ``ignored``) when no transaction of ours has its intent."""
    payment_intent_id = _id(charge.get("payment_intent"))
    receipt_url = _receipt_url_clean(charge.get("receipt_url"))
    if not payment_intent_id or not receipt_url or not charge.get("paid", True):
        return False
    rows = PaymentTransaction.objects.filter(gateway=Gateway.STRIPE, gateway_payment_id=payment_intent_id)
    updated = rows.exclude(receipt_url=receipt_url).update(
        receipt_url=receipt_url, updated_at=now or timezone.now()
    )
    return bool(updated) or rows.exists()


def payment_receipt_backfill(*, payment_intent_id: str, now: datetime | None = None) -> bool:
    """After a payment became ours (fulfilled), apply a charge event stored before it (one
    indexed range of recent charge events)."""
    now = now or timezone.now()
    payload = (
        StripeEvent.objects.filter(
            type__in=_CHARGE_EVENTS,
            received_at__gte=now - RECEIPT_LOOKBACK,
            payload__data__object__payment_intent=payment_intent_id,
        )
        .order_by("-received_at")
        .values_list("payload", flat=True)
        .first()
    )
    if payload is None:
        return False
    return payment_receipt_record(charge=(payload.get("data") or {}).get("object") or {}, now=now)


def off_session_reference(idempotency_key: str) -> str:
    return OFF_SESSION_PREFIX + hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]


def off_session_checkout_record(
    *,
    workspace,
    kind: str,
    amount_minor: int,
    currency: str,
    metadata: dict,
    description: str,
    idempotency_key: str,
    is_simulated: bool,
) -> CheckoutSession:
    """Our row for an off-session payment and its pending transaction, before Stripe is called
    (idempotent on ``idempotency_key``: a retry finds the first row)."""
    reference = off_session_reference(idempotency_key)
    full_metadata = {str(k): str(v) for k, v in (metadata or {}).items()}
    full_metadata.update(kind=kind, workspace_id=str(workspace.pk), checkout_reference=reference)
    currency = currency.lower()
    with transaction.atomic():
        checkout, _ = CheckoutSession.objects.get_or_create(
            checkout_reference=reference,
            defaults={
                "workspace": workspace,
                "kind": kind,
                "gateway": Gateway.STRIPE,
                "mode": "payment",
                "line_item": {
                    "price_data": {
                        "currency": currency,
                        "unit_amount": int(amount_minor),
                        "product_data": {"name": description[:200]},
                    },
                    "quantity": 1,
                },
                "metadata": full_metadata,
                "amount_minor": int(amount_minor),
                "currency": currency,
                "description": description[:200],
                "success_url": "",
                "cancel_url": "",
                "is_simulated": is_simulated,
            },
        )
        payment_transaction_record(checkout=checkout)
    return checkout


def off_session_payment_fulfil(
    *, checkout: CheckoutSession, payment_intent: dict, event_id: str = "", now: datetime | None = None
) -> bool:
    """Fulfil a succeeded off-session PaymentIntent once (``checkout_fulfil``), and keep its
    receipt. Raises ``CheckoutEventRejected`` when it did not pay what our row asked."""
    now = now or timezone.now()
    payment_intent_id = _id(payment_intent.get("id"))
    if payment_intent.get("status") != "succeeded" or not payment_intent_id:
        return False
    amount = int(payment_intent.get("amount_received") or payment_intent.get("amount") or 0)
    currency = str(payment_intent.get("currency") or "").lower()
    if currency != checkout.currency or amount < checkout.amount_minor:
        raise CheckoutEventRejected(
            f"payment intent {payment_intent_id}: paid {amount} {currency}, "
            f"our checkout {checkout.checkout_reference} asked {checkout.amount_minor} {checkout.currency}"
        )
    charge = payment_intent.get("latest_charge")
    receipt_url = _receipt_url_clean(charge.get("receipt_url")) if isinstance(charge, dict) else ""
    session = {
        "id": checkout.checkout_reference,
        "object": "payment_intent",
        "status": "complete",
        "payment_status": "paid",
        "payment_intent": payment_intent_id,
        "customer": _id(payment_intent.get("customer")),
        "amount_total": amount,
        "gateway": checkout.gateway,
        "mode": checkout.mode,
        "client_reference_id": str(checkout.workspace_id),
        "metadata": dict(checkout.metadata or {}),
        "currency": checkout.currency,
        "livemode": bool(payment_intent.get("livemode")),
    }
    with transaction.atomic():
        changes = {"gateway_payment_id": payment_intent_id, "updated_at": now}
        if receipt_url:
            changes["receipt_url"] = receipt_url
        PaymentTransaction.objects.filter(reference=checkout.checkout_reference).update(**changes)
        fulfilled = checkout_fulfil(
            reference=checkout.checkout_reference,
            kind=checkout.kind,
            session=session,
            event_id=event_id or payment_intent_id,
            now=now,
            amount_minor=amount,
            currency=checkout.currency,
            gateway_payment_id=payment_intent_id,
        )
        if not receipt_url:
            payment_receipt_backfill(payment_intent_id=payment_intent_id, now=now)
    return fulfilled


def off_session_payment_fail(
    *, checkout: CheckoutSession, payment_intent_id: str = "", now: datetime | None = None
) -> bool:
    """A declined off-session payment: nothing to fulfil, ever; the transaction is ``failed``
    (its ``payment.failed`` event and audit entry, once)."""
    now = now or timezone.now()
    reference = checkout.checkout_reference
    with transaction.atomic():
        CheckoutFulfilment.objects.get_or_create(
            checkout_reference=reference,
            defaults={"kind": checkout.kind, "status": CheckoutFulfilment.Status.FAILED},
        )
        CheckoutSession.objects.filter(pk=checkout.pk, status=CheckoutSession.Status.OPEN).update(
            status=CheckoutSession.Status.PAYMENT_FAILED, updated_at=now
        )
        if payment_intent_id:
            PaymentTransaction.objects.filter(
                reference=reference, status=PaymentTransaction.Status.PENDING
            ).update(gateway_payment_id=payment_intent_id[:255])
        return payment_transaction_settle(
            reference=reference, status=PaymentTransaction.Status.FAILED, now=now
        )


def payment_intent_event_fulfil(*, payment_intent: dict, event_id: str, now: datetime | None = None) -> bool:
    """``payment_intent.succeeded`` for an off-session payment of ours (the charging task died
    between Stripe's answer and fulfilment); any other PaymentIntent is not ours to act on."""
    reference = str((payment_intent.get("metadata") or {}).get("checkout_reference") or "")
    if not reference.startswith(OFF_SESSION_PREFIX):
        return False
    checkout = CheckoutSession.objects.filter(checkout_reference=reference, gateway=Gateway.STRIPE).first()
    if checkout is None:
        raise CheckoutEventRejected(f"payment intent for {reference[:40]!r}, which we did not start")
    return off_session_payment_fulfil(
        checkout=checkout, payment_intent=payment_intent, event_id=event_id, now=now
    )


def payment_intent_event_fail(*, payment_intent: dict) -> bool:
    """``payment_intent.payment_failed`` for an off-session payment of ours (one that was still
    ``processing`` when the charging task returned, or a decline the task recorded already:
    then nothing changes)."""
    reference = str((payment_intent.get("metadata") or {}).get("checkout_reference") or "")
    if not reference.startswith(OFF_SESSION_PREFIX):
        return False
    checkout = CheckoutSession.objects.filter(checkout_reference=reference, gateway=Gateway.STRIPE).first()
    if checkout is None:
        return False
    off_session_payment_fail(checkout=checkout, payment_intent_id=_id(payment_intent.get("id")))
    return True
