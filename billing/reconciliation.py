"""Billing's quota-counter check for the nightly reconciliation (registered with core in ``apps``)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Sum

from core.reconciliation import DriftFinding

from .models import QuotaReservation, UsageCounter


def quota_counter_drift_find(*, now: datetime) -> list[DriftFinding]:
    """Quota counters of the current and last period vs their per-call reservations.

    Every metered call leaves one ``QuotaReservation`` (the proxy's usage events are funded
    through them), so for each counter ``reserved`` must equal the open holds and ``used`` the
    units settled. ``used`` may be lower than the settled units only when a settle above the
    reservation was clamped at the limit, so only ``used > settled`` is drift there.
    """
    since = now - timedelta(days=62)
    counters = UsageCounter.objects.filter(period_end__gte=since).values_list(
        "pk", "workspace_id", "meter", "used", "reserved"
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
    for counter_id, workspace_id, meter, used, reserved in counters:
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
                        "workspace_id": workspace_id,
                        "meter": meter,
                        "used": used,
                        "settled_units": settled_units,
                        "reserved": reserved,
                        "open_holds": open_holds,
                    },
                )
            )
    return findings
