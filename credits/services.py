"""Writes for credits. The only code that changes a balance.

Every movement runs inside one transaction that first locks the user's ``CreditAccount`` row
(``core.locks.lock_objects``), then changes the balance with a conditional ``UPDATE … F()``
and appends exactly one ``LedgerEntry`` whose unique idempotency key makes replays no-ops.
Network calls (Stripe) happen outside these transactions.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import F, Sum
from django.template.loader import render_to_string
from django.utils import timezone

from billing.gateways.stripe import StripeServiceError
from billing.services import checkout_session_start
from core.exceptions import ApiError
from core.locks import lock_objects

from .models import (
    CreditAccount,
    CreditHold,
    CreditPack,
    CreditPurchase,
    EndpointCost,
    LedgerEntry,
    UpsellEvent,
)
from .selectors import credit_balance_get

logger = logging.getLogger("tollgate.credits")

CHECKOUT_KIND = "credit_pack"


class InsufficientCredits(Exception):
    """The user's available credits do not cover ``cost``."""

    def __init__(self, *, balance: int, available: int, cost: int):
        super().__init__(f"Insufficient credits: {available} available, {cost} needed.")
        self.balance = balance
        self.available = available
        self.cost = cost


@dataclass(frozen=True)
class ConsumeResult:
    charged: int
    balance_after: int
    entry: LedgerEntry
    replayed: bool


# --- internals ---------------------------------------------------------------------------------


def _account_locked(*, user_id: int) -> CreditAccount:
    """Lock the user's account row, creating it first if needed. Call inside ``transaction.atomic``."""
    locked = lock_objects(CreditAccount.objects.filter(user_id=user_id))
    if locked:
        return locked[0]
    CreditAccount.objects.get_or_create(user_id=user_id)  # survives a concurrent create
    return lock_objects(CreditAccount.objects.filter(user_id=user_id))[0]


def _apply(
    *,
    account: CreditAccount,
    kind: str,
    amount: int,
    idempotency_key: str,
    reference: str = "",
    endpoint: str = "",
    shortfall: int = 0,
    metadata: dict | None = None,
    release_held: int = 0,
) -> LedgerEntry:
    """Move ``amount`` (signed) on a locked account and append its ledger entry.

    The UPDATE is conditional, so even a caller that forgot the lock could never drop the
    balance below what is held: ``balance + amount >= held - release_held``.
    """
    updated = CreditAccount.objects.filter(
        pk=account.pk, balance__gte=F("held") - release_held - amount
    ).update(
        balance=F("balance") + amount,
        held=F("held") - release_held,
        updated_at=timezone.now(),
    )
    if updated != 1:
        raise InsufficientCredits(balance=account.balance, available=account.available, cost=-amount)
    account.balance += amount
    account.held -= release_held
    return LedgerEntry.objects.create(
        user_id=account.user_id,
        kind=kind,
        amount=amount,
        balance_after=account.balance,
        idempotency_key=idempotency_key,
        reference=reference[:255],
        endpoint=endpoint,
        shortfall=shortfall,
        metadata=metadata or {},
    )


def _low_balance_check(*, account: CreditAccount, now=None) -> None:
    """Send the low-balance email once per crossing; the next purchase re-arms it."""
    if account.available >= settings.CREDITS_LOW_THRESHOLD:
        return
    armed = CreditAccount.objects.filter(pk=account.pk, low_balance_alerted_at__isnull=True).update(
        low_balance_alerted_at=now or timezone.now()
    )
    if armed:
        from .tasks import credit_low_balance_email_task  # noqa: PLC0415 (credits.tasks imports the services: a task is queued lazily to avoid a cycle)

        user_id = account.user_id
        transaction.on_commit(lambda: credit_low_balance_email_task.delay(user_id))


def _rearm_low_balance(*, account: CreditAccount) -> None:
    if account.available >= settings.CREDITS_LOW_THRESHOLD:
        CreditAccount.objects.filter(pk=account.pk).update(low_balance_alerted_at=None)


# --- grants, consumption -----------------------------------------------------------------------


def credit_grant(
    *, user, amount: int, admin_user, reason: str = "", idempotency_key: str | None = None
) -> LedgerEntry:
    """An operator gives credits. The admin user is the entry's reference."""
    if amount <= 0:
        raise ApiError("invalid_request", "A grant must be a positive number of credits.", param="amount")
    key = idempotency_key or f"grant:{uuid.uuid4().hex}"
    with transaction.atomic():
        account = _account_locked(user_id=user.pk)
        existing = LedgerEntry.objects.filter(idempotency_key=key).first()
        if existing is not None:
            return existing
        entry = _apply(
            account=account,
            kind=LedgerEntry.Kind.GRANT,
            amount=amount,
            idempotency_key=key,
            reference=f"admin:{admin_user.pk}",
            metadata={"reason": reason[:500], "admin_email": admin_user.email}
            if reason
            else {"admin_email": admin_user.email},
        )
        _rearm_low_balance(account=account)
    logger.info("credit grant", extra={"user_id": user.pk, "amount": amount, "admin_id": admin_user.pk})
    return entry


def credit_consume(
    *, user, endpoint: str, idempotency_key: str, units: int = 0, reference: str = "", now=None
) -> ConsumeResult:
    """Charge one call of ``endpoint``. Replaying ``idempotency_key`` returns the first result.

    Raises ``ApiError`` 400 for an unknown endpoint and ``InsufficientCredits`` when the
    available balance does not cover the cost (nothing is recorded then, so the client may
    retry the same key after buying credits).
    """
    key = f"consume:{user.pk}:{idempotency_key}"
    first = LedgerEntry.objects.filter(idempotency_key=key).first()
    if first is not None:
        return _replay(first, endpoint)
    cost_row = EndpointCost.objects.filter(endpoint=endpoint, is_active=True).first()
    if cost_row is None:
        raise ApiError("invalid_request", f"Unknown endpoint: {endpoint}", param="endpoint")
    cost = cost_row.cost_for(units)
    with transaction.atomic():
        account = _account_locked(user_id=user.pk)
        first = LedgerEntry.objects.filter(idempotency_key=key).first()
        if first is not None:  # a concurrent twin won the lock first
            return _replay(first, endpoint)
        if account.available < cost:
            raise InsufficientCredits(balance=account.balance, available=account.available, cost=cost)
        entry = _apply(
            account=account,
            kind=LedgerEntry.Kind.CONSUME,
            amount=-cost,
            idempotency_key=key,
            reference=reference or idempotency_key,
            endpoint=endpoint,
            metadata={"units": units} if units else {},
        )
        _low_balance_check(account=account, now=now)
    logger.info(
        "credit usage",
        extra={"user_id": user.pk, "endpoint": endpoint, "cost": cost, "balance_after": entry.balance_after},
    )
    return ConsumeResult(charged=cost, balance_after=entry.balance_after, entry=entry, replayed=False)


def _replay(entry: LedgerEntry, endpoint: str) -> ConsumeResult:
    if entry.endpoint != endpoint:
        raise ApiError(
            "conflict",
            "This idempotencyKey was already used for another endpoint.",
            param="idempotencyKey",
        )
    return ConsumeResult(charged=-entry.amount, balance_after=entry.balance_after, entry=entry, replayed=True)


# --- holds (the proxy's overage seam) ----------------------------------------------------------


def credit_hold(*, user, amount: int, reference: str = "", endpoint: str = "") -> CreditHold:
    """Reserve ``amount`` credits before a metered call; ``available`` never goes below zero."""
    if amount <= 0:
        raise ValueError("A hold must reserve a positive number of credits.")
    with transaction.atomic():
        account = _account_locked(user_id=user.pk)
        updated = CreditAccount.objects.filter(pk=account.pk, balance__gte=F("held") + amount).update(
            held=F("held") + amount, updated_at=timezone.now()
        )
        if updated != 1:
            raise InsufficientCredits(balance=account.balance, available=account.available, cost=amount)
        return CreditHold.objects.create(
            user_id=user.pk, amount=amount, reference=reference[:255], endpoint=endpoint[:200]
        )


def credit_hold_settle(
    *, hold: CreditHold, actual: int, idempotency_key: str, endpoint: str = ""
) -> LedgerEntry | None:
    """Charge what the call really used (at most the held amount) and release the rest.

    Safe to call twice: a settled hold returns its entry. ``actual == 0`` releases the hold
    and returns None.
    """
    actual = max(int(actual), 0)
    with transaction.atomic():
        account = _account_locked(user_id=hold.user_id)
        hold = lock_objects(CreditHold.objects.filter(pk=hold.pk))[0]
        endpoint = endpoint or hold.endpoint
        if hold.status == CreditHold.Status.SETTLED:
            return hold.ledger_entry
        if hold.status == CreditHold.Status.RELEASED:
            logger.warning("credit hold settle after release", extra={"hold_id": hold.pk})
            return None
        charge = min(actual, hold.amount)
        if actual > hold.amount:
            logger.warning(
                "credit hold settled above its reservation; charged the reservation",
                extra={"hold_id": hold.pk, "actual": actual, "held": hold.amount},
            )
        now = timezone.now()
        entry = None
        if charge:
            entry = LedgerEntry.objects.filter(idempotency_key=idempotency_key).first()
            if entry is None:
                entry = _apply(
                    account=account,
                    kind=LedgerEntry.Kind.CONSUME,
                    amount=-charge,
                    idempotency_key=idempotency_key,
                    reference=hold.reference,
                    endpoint=endpoint,
                    metadata={"hold_id": hold.pk, "held": hold.amount},
                    release_held=hold.amount,
                )
            else:
                _release_held(account=account, amount=hold.amount)
        else:
            _release_held(account=account, amount=hold.amount)
        CreditHold.objects.filter(pk=hold.pk).update(
            status=CreditHold.Status.SETTLED if entry else CreditHold.Status.RELEASED,
            settled_amount=charge,
            ledger_entry=entry,
            resolved_at=now,
            updated_at=now,
        )
        if entry is not None:
            _low_balance_check(account=account, now=now)
    if entry is not None:
        logger.info(
            "credit usage",
            extra={
                "user_id": hold.user_id,
                "endpoint": endpoint,
                "cost": charge,
                "balance_after": entry.balance_after,
            },
        )
    return entry


def _release_held(*, account: CreditAccount, amount: int) -> None:
    CreditAccount.objects.filter(pk=account.pk).update(held=F("held") - amount, updated_at=timezone.now())
    account.held -= amount


def credit_hold_release(*, hold: CreditHold) -> None:
    """Give back a hold (the upstream call failed). Idempotent."""
    with transaction.atomic():
        account = _account_locked(user_id=hold.user_id)
        hold = lock_objects(CreditHold.objects.filter(pk=hold.pk))[0]
        if hold.status != CreditHold.Status.HELD:
            return
        _release_held(account=account, amount=hold.amount)
        now = timezone.now()
        CreditHold.objects.filter(pk=hold.pk).update(
            status=CreditHold.Status.RELEASED, settled_amount=0, resolved_at=now, updated_at=now
        )


def credit_holds_expire(*, older_than: timedelta | None = None, now=None) -> int:
    """Release holds a crashed worker never settled (older than STALE_RESERVATION_SECONDS by
    default). Returns how many were released."""
    if older_than is None:
        older_than = timedelta(seconds=settings.STALE_RESERVATION_SECONDS)
    cutoff = (now or timezone.now()) - older_than
    released = 0
    for hold in CreditHold.objects.filter(status=CreditHold.Status.HELD, created_at__lt=cutoff).only(
        "pk", "user_id"
    ):
        credit_hold_release(hold=hold)
        released += 1
    if released:
        logger.warning("released stale credit holds", extra={"count": released})
    return released


# --- purchase, refund --------------------------------------------------------------------------


def credit_pack_checkout_start(
    *, user, pack_code: str, success_url: str, cancel_url: str, gateway: str = "stripe"
) -> dict:
    """Open a checkout (mode payment) for a pack — Stripe, or Chargily Pay at the pack's DZD
    price; fulfilment comes by webhook through the same ``credit_pack`` handler."""
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
    UpsellEvent.objects.create(user=user, kind=UpsellEvent.Kind.CLICK, pack=pack)
    try:
        return checkout_session_start(
            user=user,
            kind=CHECKOUT_KIND,
            line_item=line_item,
            metadata={
                "kind": CHECKOUT_KIND,
                "pack": pack.code,
                "credits": str(pack.credits),
                "user_id": str(user.pk),
            },
            success_url=success_url,
            cancel_url=cancel_url,
            mode="payment",
            gateway=gateway,
        )
    except StripeServiceError as exc:
        raise ApiError("upstream_error", exc.message) from exc


def credit_purchase_fulfil(*, session: dict, event_id: str = "") -> LedgerEntry | None:
    """Grant a paid pack exactly once per Checkout Session (billing's checkout handler).

    Keyed by ``checkout:<session id>``: duplicate and concurrent deliveries, and the
    completed + async_payment_succeeded pair, all end in one purchase entry.
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
    user_id = metadata.get("user_id") or session.get("client_reference_id")
    user = get_user_model().objects.filter(pk=user_id).first() if str(user_id or "").isdigit() else None
    pack = CreditPack.objects.filter(code=metadata.get("pack", "")).first()
    credits_text = str(metadata.get("credits") or "")
    credits = int(credits_text) if credits_text.isdigit() else (pack.credits if pack else 0)
    if user is None or credits <= 0:
        logger.error(
            "credit purchase: cannot resolve user or pack",
            extra={"session_id": session_id, "event_id": event_id, "pack": metadata.get("pack")},
        )
        return None
    key = f"checkout:{session_id}"
    amount_minor = int(session.get("amount_total") or (pack.price_minor if pack else 0))
    currency = (session.get("currency") or (pack.currency if pack else "eur")).lower()
    try:
        with transaction.atomic():
            account = _account_locked(user_id=user.pk)
            existing = LedgerEntry.objects.filter(idempotency_key=key).first()
            if existing is not None:
                return existing
            entry = _apply(
                account=account,
                kind=LedgerEntry.Kind.PURCHASE,
                amount=credits,
                idempotency_key=key,
                reference=session_id,
                metadata={"pack": metadata.get("pack", ""), "event_id": event_id},
            )
            CreditPurchase.objects.create(
                user=user,
                pack=pack,
                checkout_reference=session_id,
                stripe_payment_intent_id=session.get("payment_intent") or "",
                credits=credits,
                amount_minor=amount_minor,
                currency=currency,
                ledger_entry=entry,
            )
            now = timezone.now()
            CreditAccount.objects.filter(pk=account.pk).update(low_balance_alerted_at=None)
            CreditAccount.objects.filter(pk=account.pk, first_purchase_at__isnull=True).update(
                first_purchase_at=now
            )
    except IntegrityError:
        # Two deliveries raced past the lookup: the other one won.
        return LedgerEntry.objects.filter(idempotency_key=key).first()
    logger.info(
        "credit purchase",
        extra={
            "user_id": user.pk,
            "pack": metadata.get("pack", ""),
            "credits": credits,
            "revenue_minor": amount_minor,
            "currency": currency,
        },
    )
    return entry


def credit_refund_apply(*, event: dict) -> LedgerEntry | None:
    """Take back credits in proportion to what was refunded (``charge.refunded`` handler).

    ``amount_refunded`` is cumulative, so each event reverses only the part not yet reversed.
    Never below zero: what is already spent (or held) is clamped and recorded as a shortfall on
    the entry and the purchase for the operator.
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
        account = _account_locked(user_id=purchase.user_id)
        purchase = lock_objects(CreditPurchase.objects.filter(pk=purchase.pk))[0]
        existing = LedgerEntry.objects.filter(idempotency_key=key).first()
        if existing is not None:
            return existing
        wanted = target - purchase.refunded_credits
        if wanted <= 0:
            return None
        taken = min(wanted, max(account.available, 0))
        shortfall = wanted - taken
        entry = _apply(
            account=account,
            kind=LedgerEntry.Kind.REFUND,
            amount=-taken,
            idempotency_key=key,
            reference=charge_id,
            shortfall=shortfall,
            metadata={
                "checkout_session_id": purchase.checkout_reference,
                "amount_refunded_minor": amount_refunded,
                "charge_amount_minor": charge_amount,
                "requested": wanted,
            },
        )
        CreditPurchase.objects.filter(pk=purchase.pk).update(
            refunded_credits=F("refunded_credits") + wanted,
            refund_shortfall=F("refund_shortfall") + shortfall,
            updated_at=timezone.now(),
        )
    if shortfall:
        logger.warning(
            "credit refund shortfall: credits already spent",
            extra={"user_id": purchase.user_id, "charge_id": charge_id, "shortfall": shortfall},
        )
    logger.info(
        "credit refund",
        extra={"user_id": purchase.user_id, "charge_id": charge_id, "credits": taken, "shortfall": shortfall},
    )
    return entry


# --- upsell, alerts, reconciliation -----------------------------------------------------------


def upsell_event_record(*, user, kind: str, pack: CreditPack | None = None) -> UpsellEvent:
    if kind not in UpsellEvent.Kind.values:
        raise ApiError("invalid_request", f"Unknown upsell event kind: {kind}", param="kind")
    return UpsellEvent.objects.create(user=user, kind=kind, pack=pack)


def credit_low_balance_email_send(*, user) -> None:
    balance = credit_balance_get(user=user)
    context = {"user": user, "balance": balance, "buy_url": f"{settings.SITE_URL}/credits/"}
    send_mail(
        subject="Your Tollgate credits are running low",
        message=render_to_string("credits/email/low_balance.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=[user.email],
    )


@dataclass(frozen=True)
class Drift:
    user_id: int
    balance: int
    ledger_sum: int
    held: int
    open_holds: int


def credit_ledger_reconcile() -> list[Drift]:
    """Re-sum every ledger and compare with the cached balance and open holds; log drift."""
    ledger = dict(
        LedgerEntry.objects.values("user_id").annotate(total=Sum("amount")).values_list("user_id", "total")
    )
    holds = dict(
        CreditHold.objects.filter(status=CreditHold.Status.HELD)
        .values("user_id")
        .annotate(total=Sum("amount"))
        .values_list("user_id", "total")
    )
    drifts = []
    accounts = CreditAccount.objects.values_list("user_id", "balance", "held")
    seen = set()
    for user_id, balance, held in accounts:
        seen.add(user_id)
        total = ledger.get(user_id) or 0
        open_holds = holds.get(user_id) or 0
        if total != balance or open_holds != held:
            drifts.append(Drift(user_id, balance, total, held, open_holds))
    for user_id, total in ledger.items():
        if user_id not in seen and total:
            drifts.append(Drift(user_id, 0, total, 0, holds.get(user_id) or 0))
    for drift in drifts:
        logger.error(
            "credit ledger drift",
            extra={
                "user_id": drift.user_id,
                "balance": drift.balance,
                "ledger_sum": drift.ledger_sum,
                "held": drift.held,
                "open_holds": drift.open_holds,
            },
        )
    return drifts
