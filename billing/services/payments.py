"""Payments, whichever the gateway: the PaymentTransaction row of each checkout attempt and the
checkout outcomes keyed by our checkout reference (fulfil once, expire).

Gateways (``billing.gateways``) call these from their event mapping; nothing here talks to a
provider.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.utils import timezone

from accounts.services import audit_record
from core.locks import lock_objects
from notifications.services import event_emit

from .. import registry
from ..fulfilment import _id
from ..models import CheckoutFulfilment, CheckoutSession, PaymentTransaction

logger = logging.getLogger("tollgate.billing")


def _payment_kind(kind: str) -> str:
    return kind if kind in PaymentTransaction.Kind.values else PaymentTransaction.Kind.OTHER


def payment_transaction_record(*, checkout: CheckoutSession) -> PaymentTransaction:
    """The pending attempt for a checkout that has its reference (idempotent on it)."""
    row, _ = PaymentTransaction.objects.get_or_create(
        reference=checkout.checkout_reference,
        defaults={
            "workspace_id": checkout.workspace_id,
            "gateway": checkout.gateway,
            "kind": _payment_kind(checkout.kind),
            "checkout": checkout,
            "gateway_payment_id": checkout.gateway_checkout_id,
            "amount_minor": checkout.amount_minor,
            "currency": checkout.currency,
        },
    )
    return row


def payment_transaction_settle(
    *,
    reference: str,
    status: str,
    now: datetime | None = None,
    amount_minor: int | None = None,
    currency: str = "",
    gateway_payment_id: str = "",
) -> bool:
    """Move an attempt to its outcome with one conditional UPDATE.

    Only a pending attempt can fail, expire or be canceled; ``paid`` wins over any outcome but
    itself (money that arrived is revenue), and a paid row never changes again. A payment for
    a checkout that has no row yet (started before rows were kept) gets one. A payment that
    arrives or fails is written to the workspace's audit log (no actor: the gateway said so).
    """
    now = now or timezone.now()
    allowed = [PaymentTransaction.Status.PENDING]
    if status == PaymentTransaction.Status.PAID:
        allowed += [
            PaymentTransaction.Status.FAILED,
            PaymentTransaction.Status.EXPIRED,
            PaymentTransaction.Status.CANCELED,
        ]
    changes: dict = {"status": status, "completed_at": now, "updated_at": now}
    if amount_minor is not None and currency:
        changes.update(amount_minor=int(amount_minor), currency=currency.lower())
    if gateway_payment_id:
        changes["gateway_payment_id"] = gateway_payment_id[:255]
    rows = PaymentTransaction.objects.filter(reference=reference)
    if rows.filter(status__in=allowed).update(**changes):
        _payment_audit(reference=reference, status=status)
        return True
    if rows.exists():
        return False
    checkout = CheckoutSession.objects.filter(checkout_reference=reference).first()
    if checkout is None:
        return False
    row = payment_transaction_record(checkout=checkout)
    if PaymentTransaction.objects.filter(pk=row.pk, status__in=allowed).update(**changes):
        _payment_audit(reference=reference, status=status)
        return True
    return False


_AUDITED_OUTCOMES = {
    PaymentTransaction.Status.PAID: "payment.succeeded",
    PaymentTransaction.Status.FAILED: "payment.failed",
}


def _payment_audit(*, reference: str, status: str) -> None:
    action = _AUDITED_OUTCOMES.get(status)
    if action is None:  # an abandoned or canceled checkout moved no money
        return
    row = (
        PaymentTransaction.objects.select_related("workspace", "checkout").filter(reference=reference).first()
    )
    if row is None:
        return
    audit_record(
        action=action,
        actor=None,
        workspace=row.workspace,
        target=f"payment:{row.pk}",
        details={
            "gateway": row.gateway,
            "kind": row.kind,
            "amount_minor": row.amount_minor,
            "currency": row.currency,
            "reference": row.reference,
            "opened_by": row.checkout.created_by_id if row.checkout is not None else None,
        },
    )
    event_emit(
        workspace=row.workspace,
        type=action,
        data={
            "kind": row.kind,
            "amount_minor": row.amount_minor,
            "currency": row.currency,
            "reference": row.reference,
        },
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
