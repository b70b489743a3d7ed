"""Writes for credits, the only code that changes a balance. One module per concern:

- ``ledger``: the locked balance and its append-only ledger; grants and consumption;
- ``lots``: where credits came from and the order they are spent in (burn order);
- ``expiry``: lots past their expiry leave the balance through an ``expiry`` entry;
- ``holds``: reserve → settle → release around a metered call (the proxy's overage seam);
- ``purchases``: pack checkouts, their fulfilment and refunds (billing's webhooks);
- ``alerts``: upsell events, the low-balance email, the ledger reconciliation;
- ``auto_top_up``: buying a chosen pack with the saved card when the balance runs low.

The credits belong to a workspace (the billing tenant): every member spends the same balance,
under one row lock per workspace. Callers import from ``credits.services``.
"""

from .alerts import credit_ledger_reconcile, upsell_event_record
from .auto_top_up import (
    auto_top_up_failed_email_send,
    auto_top_up_pending_attempt_id,
    auto_top_up_run,
    auto_top_up_update,
)
from .expiry import credit_lot_expire, credit_lots_expire
from .holds import credit_hold, credit_hold_release, credit_hold_settle, credit_holds_expire
from .ledger import ConsumeResult, InsufficientCredits, credit_consume, credit_grant
from .lots import LotsShortfall, credit_lots_get, credit_lots_reconcile
from .purchases import CHECKOUT_KIND, credit_pack_checkout_start, credit_purchase_fulfil, credit_refund_apply

__all__ = [
    "CHECKOUT_KIND",
    "ConsumeResult",
    "auto_top_up_failed_email_send",
    "auto_top_up_pending_attempt_id",
    "auto_top_up_run",
    "auto_top_up_update",
    "InsufficientCredits",
    "LotsShortfall",
    "credit_consume",
    "credit_grant",
    "credit_hold",
    "credit_hold_release",
    "credit_hold_settle",
    "credit_holds_expire",
    "credit_ledger_reconcile",
    "credit_lot_expire",
    "credit_lots_expire",
    "credit_lots_get",
    "credit_lots_reconcile",
    "credit_pack_checkout_start",
    "credit_purchase_fulfil",
    "credit_refund_apply",
    "upsell_event_record",
]
