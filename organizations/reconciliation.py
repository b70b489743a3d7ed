"""Organizations' meter-event check for the nightly reconciliation (registered with core in ``apps``)."""

from __future__ import annotations

from datetime import datetime

from core.reconciliation import DriftFinding

from .selectors import usage_report_reconcile


def usage_report_drift_find(*, now: datetime) -> list[DriftFinding]:
    """Organizations' usage reports vs the Stripe meter events they should have produced."""
    return [
        DriftFinding(
            source="organizations.meter",
            subject=f"report:{row['report_id']}",
            expected=row["expected"],
            actual=row["actual"],
            detail=row,
        )
        for row in usage_report_reconcile(now=now)
    ]
