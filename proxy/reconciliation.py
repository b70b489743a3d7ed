"""The daily budget's check for the nightly reconciliation (registered with core in ``apps``)."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings

from core.reconciliation import DriftFinding

from .budget import budget_overshoot_find


def budget_overshoot_drift_find(*, now: datetime) -> list[DriftFinding]:
    """Days whose operator spend passed the daily cap (a provider billed past its reservation)."""
    return [
        DriftFinding(
            source="proxy.budget",
            subject=f"day:{day.isoformat()}",
            expected=str(settings.DAILY_BUDGET_USD),
            actual=str(settings.DAILY_BUDGET_USD + overshoot),
            detail={"day": day.isoformat(), "overshoot_usd": str(overshoot)},
        )
        for day, overshoot in budget_overshoot_find(now=now)
    ]
