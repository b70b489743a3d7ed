"""The credits ledger's check for the nightly reconciliation (registered with core in ``apps``)."""

from __future__ import annotations

from datetime import datetime

from core.reconciliation import DriftFinding

from .services import credit_ledger_reconcile


def credit_ledger_drift_find(*, now: datetime) -> list[DriftFinding]:
    """Credit balance and held amount vs the sums of the ledger and of the open holds."""
    return [
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
        for drift in credit_ledger_reconcile()
    ]
