"""The credits ledger's check for the nightly reconciliation (registered with core in ``apps``)."""

from __future__ import annotations

from datetime import datetime

from core.reconciliation import DriftFinding

from .services import credit_lots_reconcile


def credit_ledger_drift_find(*, now: datetime) -> list[DriftFinding]:
    """Credit balance and held amount vs the sums of the ledger and of the open holds
    (``credits.ledger``), and the ledger vs what the lots still hold (``credits.lots``):
    together, ``balance == Σ ledger == Σ lots``. One query, whatever the number of workspaces."""
    drifts = credit_lots_reconcile()
    ledger = [
        DriftFinding(
            source="credits.ledger",
            subject=f"workspace:{drift.workspace_id}",
            expected=str(drift.ledger_sum),
            actual=str(drift.balance),
            detail={
                "workspace_id": drift.workspace_id,
                "balance": drift.balance,
                "ledger_sum": drift.ledger_sum,
                "held": drift.held,
                "open_holds": drift.open_holds,
            },
        )
        for drift in drifts
        if drift.balance != drift.ledger_sum or drift.held != drift.open_holds
    ]
    lots = [
        DriftFinding(
            source="credits.lots",
            subject=f"workspace:{drift.workspace_id}",
            expected=str(drift.ledger_sum),
            actual=str(drift.lots_sum),
            detail={
                "workspace_id": drift.workspace_id,
                "ledger_sum": drift.ledger_sum,
                "lots_sum": drift.lots_sum,
            },
        )
        for drift in drifts
        if drift.lots_sum != drift.ledger_sum
    ]
    return ledger + lots
