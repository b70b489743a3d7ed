"""The checks the nightly reconciliation runs, one per source of cached numbers.

Each check is read-only and returns :class:`DriftFinding` rows; ``core.services`` records them.
Apps are imported lazily inside each check: ``core`` sits below every app in the dependency
order and must not import them at module load.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Sum
from django.utils import timezone


@dataclass(frozen=True)
class DriftFinding:
    source: str
    subject: str
    expected: str
    actual: str
    detail: dict = field(default_factory=dict)


def credit_ledger_drift_find(*, now: datetime) -> list[DriftFinding]:
    """Credit balance and held amount vs the sums of the ledger and of the open holds."""
    from credits.services import credit_ledger_reconcile

    return [
        DriftFinding(
            source="credits.ledger",
            subject=f"user:{drift.user_id}",
            expected=str(drift.ledger_sum),
            actual=str(drift.balance),
            detail={
                "user_id": drift.user_id,
                "balance": drift.balance,
                "ledger_sum": drift.ledger_sum,
                "held": drift.held,
                "open_holds": drift.open_holds,
            },
        )
        for drift in credit_ledger_reconcile()
    ]


def quota_counter_drift_find(*, now: datetime) -> list[DriftFinding]:
    """Quota counters of the current and last period vs their per-call reservations.

    Every metered call leaves one ``QuotaReservation`` (the proxy's usage events are funded
    through them), so for each counter ``reserved`` must equal the open holds and ``used`` the
    units settled. ``used`` may be lower than the settled units only when a settle above the
    reservation was clamped at the limit, so only ``used > settled`` is drift there.
    """
    from billing.models import QuotaReservation, UsageCounter

    since = now - timedelta(days=62)
    counters = UsageCounter.objects.filter(period_end__gte=since).values_list(
        "pk", "user_id", "meter", "used", "reserved"
    )
    recent = QuotaReservation.objects.filter(counter__period_end__gte=since)
    held = dict(
        recent.filter(status=QuotaReservation.Status.HELD)
        .values("counter_id")
        .annotate(total=Sum("amount"))
        .values_list("counter_id", "total")
    )
    settled = dict(
        recent.filter(status=QuotaReservation.Status.SETTLED)
        .values("counter_id")
        .annotate(total=Sum("actual"))
        .values_list("counter_id", "total")
    )
    findings = []
    for counter_id, user_id, meter, used, reserved in counters:
        open_holds = held.get(counter_id) or 0
        settled_units = settled.get(counter_id) or 0
        if reserved != open_holds or used > settled_units:
            findings.append(
                DriftFinding(
                    source="billing.quota",
                    subject=f"counter:{counter_id}",
                    expected=str(settled_units),
                    actual=str(used),
                    detail={
                        "user_id": user_id,
                        "meter": meter,
                        "used": used,
                        "settled_units": settled_units,
                        "reserved": reserved,
                        "open_holds": open_holds,
                    },
                )
            )
    return findings


def usage_report_drift_find(*, now: datetime) -> list[DriftFinding]:
    """Organizations' usage reports vs the Stripe meter events they should have produced."""
    from organizations.selectors import usage_report_reconcile

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


def budget_overshoot_drift_find(*, now: datetime) -> list[DriftFinding]:
    """Days whose operator spend passed the daily cap (a provider billed past its reservation)."""
    from proxy.budget import budget_overshoot_find

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


RECONCILIATION_CHECKS: dict[str, Callable[..., list[DriftFinding]]] = {
    "credits.ledger": credit_ledger_drift_find,
    "billing.quota": quota_counter_drift_find,
    "organizations.meter": usage_report_drift_find,
    "proxy.budget": budget_overshoot_drift_find,
}


def drift_findings_collect(*, now: datetime | None = None) -> dict[str, list[DriftFinding]]:
    now = now or timezone.now()
    return {source: check(now=now) for source, check in RECONCILIATION_CHECKS.items()}
