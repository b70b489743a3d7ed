"""Upsell events, the balance alerts (low, depleted, and their resolution by a top-up) and the
ledger reconciliation."""

from __future__ import annotations

import dataclasses
import logging

from accounts.models import Workspace
from core.exceptions import ApiError
from notifications.selectors import notification_settings_get
from notifications.thresholds import NO_PERIOD, threshold_levels_observe, threshold_resolved

from ..models import CreditPack, UpsellEvent
from .lots import BalanceDrift, credit_lots_reconcile

logger = logging.getLogger("tollgate.credits")


def upsell_event_record(*, workspace: Workspace, kind: str, pack: CreditPack | None = None) -> UpsellEvent:
    if kind not in UpsellEvent.Kind.values:
        raise ApiError("invalid_request", f"Unknown upsell event kind: {kind}", param="kind")
    return UpsellEvent.objects.create(workspace=workspace, kind=kind, pack=pack)


def credit_balance_alerts_check(*, workspace_id: int, balance: int, available: int) -> None:
    """After a debit, in its transaction: ``credits.low`` when the available balance is below
    the workspace's low-balance threshold, ``credits.depleted`` when the balance is 0, each
    once until a top-up resolves it (``credit_balance_alerts_resolve``). Above the threshold it
    costs nothing; below it, one shared-cache read once the alert fired. The alert fires after
    the debit commits (with the email, when the workspace has email alerts on)."""
    low = notification_settings_get(workspace_id=workspace_id).credits_low_balance
    if available >= low and balance > 0:
        return
    if available < low:
        threshold_levels_observe(
            workspace_id=workspace_id,
            subject="credits:low",
            period_start=NO_PERIOD,
            levels=[low],
            reached=lambda _level: True,
            event="credits.low",
            data=lambda level: {"available": available, "balance": balance, "threshold": level},
            resolve=False,
        )
    if balance <= 0:
        threshold_levels_observe(
            workspace_id=workspace_id,
            subject="credits:depleted",
            period_start=NO_PERIOD,
            levels=[0],
            reached=lambda _level: True,
            event="credits.depleted",
            data=lambda _level: {"balance": 0},
            resolve=False,
        )


def credit_balance_alerts_resolve(*, workspace_id: int, balance: int, available: int) -> list[str]:
    """After a grant or purchase, in its transaction: ``credits.low_resolved`` once the available
    balance is back at or above the threshold, ``credits.depleted_resolved`` once the balance is
    above 0; each re-arms its alert. Returns the events emitted."""
    low = notification_settings_get(workspace_id=workspace_id).credits_low_balance
    emitted = []
    if available >= low and threshold_resolved(
        workspace_id=workspace_id,
        subject="credits:low",
        period_start=NO_PERIOD,
        event="credits.low_resolved",
        data={"available": available, "balance": balance},
    ):
        emitted.append("credits.low_resolved")
    if balance > 0 and threshold_resolved(
        workspace_id=workspace_id,
        subject="credits:depleted",
        period_start=NO_PERIOD,
        event="credits.depleted_resolved",
        data={"available": available, "balance": balance},
    ):
        emitted.append("credits.depleted_resolved")
    return emitted


def credit_ledger_reconcile() -> list[BalanceDrift]:
    """Every workspace whose cached balance, ledger sum, open holds or credit lots disagree
    (``credit_lots_reconcile``: one read-only query), each logged as an error."""
    drifts = credit_lots_reconcile()
    for drift in drifts:
        logger.error("credit ledger drift", extra=dataclasses.asdict(drift))
    return drifts
