"""Pack purchases and their refunds. Network calls (Stripe, Chargily) happen outside the
ledger's transactions; fulfilment and refunds arrive by webhook through billing's registry."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import Workspace
from accounts.services import audit_record
from billing.gateways.stripe import StripeServiceError
from billing.gateways.stripe_payments import SAVE_PAYMENT_METHOD
from billing.services import checkout_session_start
from core.exceptions import ApiError
from core.locks import lock_objects

from ..models import CreditAccount, CreditLot, CreditPack, CreditPurchase, LedgerEntry, UpsellEvent
from .ledger import _account_locked, _apply, _burn

logger = logging.getLogger("tollgate.credits")


CHECKOUT_KIND = "credit_pack"


def credit_pack_checkout_start(
    *,
    workspace: Workspace,
    pack_code: str,
    success_url: str,
    cancel_url: str,
    gateway: str = "stripe",
    actor=None,
) -> dict:
    """Open a checkout (mode payment) for a pack for ``workspace`` — Stripe, or Chargily Pay at
    the pack's DZD price; fulfilment comes by webhook through the same ``credit_pack`` handler.
    ``actor`` is the member who clicked Buy (billing records it on the checkout row). Who may
    buy (``billing.manage``) is the caller's check."""
    pack = CreditPack.objects.filter(code=pack_code, is_active=True).first()
    if pack is None:
        raise ApiError("invalid_request", f"Unknown credit pack: {pack_code}", param="packId")
    if gateway == "chargily":
        if not pack.price_dzd_minor:
            raise ApiError("invalid_request", f"{pack.name} has no DZD price.", param="gateway")
        line_item = {
            "price_data": {
                "currency": "dzd",
                "unit_amount": pack.price_dzd_minor,
                "product_data": {"name": pack.name, "description": f"{pack.credits} Tollgate credits"},
            },
            "quantity": 1,
        }
    elif pack.stripe_price_id:
        line_item = {"price": pack.stripe_price_id, "quantity": 1}
    else:
        line_item = {
            "price_data": {
                "currency": pack.currency,
                "unit_amount": pack.price_minor,
                "product_data": {"name": pack.name, "description": f"{pack.credits} Tollgate credits"},
            },
            "quantity": 1,
        }
    UpsellEvent.objects.create(workspace=workspace, kind=UpsellEvent.Kind.CLICK, pack=pack)
    try:
        return checkout_session_start(
            workspace=workspace,
            actor=actor,
            kind=CHECKOUT_KIND,
            line_item=line_item,
            metadata={
                "kind": CHECKOUT_KIND,
                "pack": pack.code,
                "credits": str(pack.credits),
                "workspace_id": str(workspace.pk),
                # The expiry the buyer was offered, kept like the credits (a later edit of the
                # pack does not change a purchase already started).
                **({"expires_after_days": str(pack.expires_after_days)} if pack.expires_after_days else {}),
                # Stripe keeps the card for auto top-up (off-session charges); Chargily cannot.
                **({SAVE_PAYMENT_METHOD: "1"} if gateway == "stripe" else {}),
            },
            success_url=success_url,
            cancel_url=cancel_url,
            mode="payment",
            gateway=gateway,
        )
    except StripeServiceError as exc:
        raise ApiError("upstream_error", exc.message) from exc


def _purchase_workspace_get(*, session: dict, metadata: dict) -> Workspace | None:
    """The workspace a paid session is for: ``workspace_id`` first; a session opened before
    workspaces carries ``user_id`` instead, which means that user's personal workspace."""
    workspace_id = str(metadata.get("workspace_id") or "")
    if workspace_id.isdigit():
        return Workspace.objects.filter(pk=int(workspace_id)).first()
    user_id = str(metadata.get("user_id") or "")
    if user_id.isdigit():
        return Workspace.objects.filter(personal_owner_id=int(user_id)).first()
    reference = str(session.get("client_reference_id") or "")  # billing sets it to the workspace id
    return Workspace.objects.filter(pk=int(reference)).first() if reference.isdigit() else None


def credit_purchase_fulfil(*, session: dict, event_id: str = "") -> LedgerEntry | None:
    """Grant a paid pack exactly once per Checkout Session (billing's checkout handler).

    Keyed by ``checkout:<session id>``: duplicate and concurrent deliveries, and the
    completed + async_payment_succeeded pair, all end in one purchase entry (and one audit
    event, whose actor is None: the payment provider fulfils, not a member).
    """
    session_id = session.get("id") or ""
    metadata = session.get("metadata") or {}
    if not session_id:
        logger.error("credit purchase: session without id", extra={"event_id": event_id})
        return None
    if session.get("payment_status") not in ("paid", "no_payment_required"):
        # Delayed payment methods: wait for checkout.session.async_payment_succeeded.
        logger.info("credit purchase: session not paid yet", extra={"session_id": session_id})
        return None
    workspace = _purchase_workspace_get(session=session, metadata=metadata)
    pack = CreditPack.objects.filter(code=metadata.get("pack", "")).first()
    credits_text = str(metadata.get("credits") or "")
    credits = int(credits_text) if credits_text.isdigit() else (pack.credits if pack else 0)
    if workspace is None or credits <= 0:
        logger.error(
            "credit purchase: cannot resolve workspace or pack",
            extra={"session_id": session_id, "event_id": event_id, "pack": metadata.get("pack")},
        )
        return None
    key = f"checkout:{session_id}"
    expires_after_days = _expires_after_days(metadata=metadata)
    amount_minor = int(session.get("amount_total") or (pack.price_minor if pack else 0))
    currency = (session.get("currency") or (pack.currency if pack else "eur")).lower()
    try:
        with transaction.atomic():
            account = _account_locked(workspace_id=workspace.pk)
            existing = LedgerEntry.objects.filter(idempotency_key=key).first()
            if existing is not None:
                return existing
            now = timezone.now()
            entry = _apply(
                account=account,
                kind=LedgerEntry.Kind.PURCHASE,
                amount=credits,
                idempotency_key=key,
                reference=session_id,
                metadata={"pack": metadata.get("pack", ""), "event_id": event_id},
                lot_kind=CreditLot.Kind.PAID,
                expires_at=now + timedelta(days=expires_after_days) if expires_after_days else None,
                lot_reason=f"purchase of {metadata.get('pack', '') or 'a pack'}",
            )
            purchase = CreditPurchase.objects.create(
                workspace=workspace,
                pack=pack,
                checkout_reference=session_id,
                stripe_payment_intent_id=session.get("payment_intent") or "",
                credits=credits,
                amount_minor=amount_minor,
                currency=currency,
                ledger_entry=entry,
            )
            CreditAccount.objects.filter(pk=account.pk, first_purchase_at__isnull=True).update(
                first_purchase_at=now
            )
            audit_record(
                action="credits.purchased",
                actor=None,
                workspace=workspace,
                target=f"credit_purchase:{purchase.pk}",
                details={
                    "pack": metadata.get("pack", ""),
                    "credits": credits,
                    "amount_minor": amount_minor,
                    "currency": currency,
                    "checkout_reference": session_id,
                },
                now=now,
            )
    except IntegrityError:
        # Two deliveries raced past the lookup: the other one won.
        return LedgerEntry.objects.filter(idempotency_key=key).first()
    logger.info(
        "credit purchase",
        extra={
            "workspace_id": workspace.pk,
            "pack": metadata.get("pack", ""),
            "credits": credits,
            "revenue_minor": amount_minor,
            "currency": currency,
        },
    )
    return entry


def _expires_after_days(*, metadata: dict) -> int | None:
    """Days until the purchased credits expire, as the checkout offered them (a checkout without
    it, like one started before packs could expire, buys credits that never expire)."""
    text = str(metadata.get("expires_after_days") or "")
    return int(text) if text.isdigit() and int(text) > 0 else None


def credit_refund_apply(*, event: dict) -> LedgerEntry | None:
    """Take back credits in proportion to what was refunded (``charge.refunded`` handler).

    ``amount_refunded`` is cumulative, so each event reverses only the part not yet reversed.
    Never below zero: what is already spent (or held) is clamped and recorded as a shortfall on
    the entry and the purchase for the operator. The credits come back from the purchase's own
    lot first, then from the other lots in burn order (one refund row per lot).
    """
    charge = ((event.get("data") or {}).get("object")) or {}
    charge_id = charge.get("id") or ""
    payment_intent = charge.get("payment_intent") or ""
    session_id = (charge.get("metadata") or {}).get("checkout_session_id", "")
    purchase = None
    if payment_intent:
        purchase = CreditPurchase.objects.filter(stripe_payment_intent_id=payment_intent).first()
    if purchase is None and session_id:
        purchase = CreditPurchase.objects.filter(checkout_reference=session_id).first()
    if purchase is None:
        return None  # not a credit pack charge
    charge_amount = int(charge.get("amount") or 0)
    amount_refunded = int(charge.get("amount_refunded") or 0)
    if charge_amount <= 0 or amount_refunded <= 0:
        return None
    target = purchase.credits * min(amount_refunded, charge_amount) // charge_amount
    key = f"refund:{charge_id or purchase.checkout_reference}:{amount_refunded}"
    with transaction.atomic():
        account = _account_locked(workspace_id=purchase.workspace_id)
        purchase = lock_objects(CreditPurchase.objects.filter(pk=purchase.pk))[0]
        existing = LedgerEntry.objects.filter(idempotency_key=key).first()
        if existing is not None:
            return existing
        wanted = target - purchase.refunded_credits
        if wanted <= 0:
            return None
        taken = min(wanted, max(account.available, 0))
        shortfall = wanted - taken
        metadata = {
            "checkout_session_id": purchase.checkout_reference,
            "amount_refunded_minor": amount_refunded,
            "charge_amount_minor": charge_amount,
            "requested": wanted,
        }
        if taken:
            entry = _burn(
                account=account,
                kind=LedgerEntry.Kind.REFUND,
                amount=taken,
                idempotency_key=key,
                reference=charge_id,
                shortfall=shortfall,
                metadata=metadata,
                first_lot_id=CreditLot.objects.filter(source_entry_id=purchase.ledger_entry_id)
                .values_list("pk", flat=True)
                .first(),
            )
        else:  # everything was spent: the entry records the shortfall alone
            entry = _apply(
                account=account,
                kind=LedgerEntry.Kind.REFUND,
                amount=0,
                idempotency_key=key,
                reference=charge_id,
                shortfall=shortfall,
                metadata=metadata,
            )
        CreditPurchase.objects.filter(pk=purchase.pk).update(
            refunded_credits=F("refunded_credits") + wanted,
            refund_shortfall=F("refund_shortfall") + shortfall,
            updated_at=timezone.now(),
        )
        audit_record(
            action="credits.refunded",
            actor=None,
            workspace=purchase.workspace,
            target=f"credit_purchase:{purchase.pk}",
            details={"credits": taken, "shortfall": shortfall, "amount_refunded_minor": amount_refunded},
        )
    if shortfall:
        logger.warning(
            "credit refund shortfall: credits already spent",
            extra={"workspace_id": purchase.workspace_id, "charge_id": charge_id, "shortfall": shortfall},
        )
    logger.info(
        "credit refund",
        extra={
            "workspace_id": purchase.workspace_id,
            "charge_id": charge_id,
            "credits": taken,
            "shortfall": shortfall,
        },
    )
    return entry
