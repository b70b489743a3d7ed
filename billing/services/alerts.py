"""Quota alerts: which of the workspace's thresholds (percents of a monthly limit, in its
notification settings) a settle reached, fired once per period through
``notifications.thresholds``, and resolved when a plan change lifts usage back under them.

A settle stays cheap: ``quota_alert_may_be_due`` is pure (this process's copy of the
thresholds), and past a threshold one shared-cache read says it already fired; only the call
that reaches a threshold first writes (the state row, the webhook event) and queues the email.
A new period is a new ``period_start``, so every threshold may fire again with nothing to reset.
Quota code imports this module, never the other way round.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from types import SimpleNamespace

from django.utils import timezone

from notifications.selectors import notification_settings_cached, notification_settings_get
from notifications.thresholds import threshold_levels_observe, threshold_reached, threshold_resolved

from ..models import Meter, Plan, QuotaReservation, UsageCounter
from ..selectors import period_bounds, plan_for_workspace_get, plan_quota_get

QUOTA_ALERT_THRESHOLDS = (80, 100)  # the defaults (notifications.selectors.DEFAULT_PERCENTS)
LOWEST_PERCENT = 1  # the lowest threshold a workspace may set


# =============================================================================================
# Quota alerts
# =============================================================================================


def quota_alert_may_be_due(*, rows, plan: Plan, workspace_id: int | None = None) -> bool:
    """Whether a settle's counter rows may reach an alert threshold (then ``quota_settle_finish``
    must run where it may touch the cache and the database; otherwise it is pure). Without
    ``workspace_id``, or before this process read the workspace's thresholds, the lowest
    threshold a workspace may set stands in for them."""
    thresholds = notification_settings_cached(workspace_id=workspace_id) if workspace_id is not None else None
    lowest = min(thresholds.quota) if thresholds is not None else LOWEST_PERCENT
    for _counter_id, meter, used, _reserved, _period_start, charged in rows:
        if not charged:
            continue
        rule = plan_quota_get(plan=plan, meter=meter)
        if rule.period == "month" and rule.limit and used * 100 >= lowest * rule.limit:
            return True
    return False


def _meter_label(meter: str) -> str:
    return Meter(meter).label if meter in Meter.values else meter


def _quota_data(*, meter: str, used: int, limit: int | None, period_start: datetime) -> dict:
    _start, resets_at = period_bounds(period="month", now=period_start)
    return {
        "meter": meter,
        "label": _meter_label(meter),
        "used": used,
        "limit": limit,
        "period_start": period_start.isoformat(),
        "resets_at": resets_at.isoformat(),
    }


def _quota_alert_check(
    *,
    workspace_id: int,
    meter: str,
    counter_id: int,
    used: int,
    period_start: datetime,
    now: datetime,
    plan: Plan | None = None,
) -> None:
    """After a settle that knows its counter (no query): fire the workspace's quota thresholds
    that ``used`` reached first in the period (after the caller commits)."""
    rule = plan_quota_get(
        plan=plan or plan_for_workspace_get(workspace=_workspace_ref(workspace_id), now=now), meter=meter
    )
    if rule.period != "month" or not rule.limit:
        return
    held = notification_settings_cached(workspace_id=workspace_id, stale_ok=True)
    if used * 100 < (min(held.quota) if held is not None else LOWEST_PERCENT) * rule.limit:
        return  # what ``quota_alert_may_be_due`` decided: no I/O
    if _in_event_loop():
        # A settle finished on the event loop (``quota_alert_may_be_due`` said nothing was due,
        # from a copy another thread has since replaced): no blocking I/O here; the next
        # settle past the threshold fires it (reached, not crossed, is what fires).
        return
    levels = notification_settings_get(workspace_id=workspace_id).quota
    if used * 100 < min(levels) * rule.limit:
        return
    limit = rule.limit
    base = _quota_data(meter=meter, used=used, limit=limit, period_start=period_start)
    threshold_levels_observe(
        workspace_id=workspace_id,
        subject=f"quota:{meter}",
        period_start=period_start,
        levels=levels,
        reached=lambda percent: used * 100 >= percent * limit,
        event="quota.threshold_reached",
        data=lambda percent: {**base, "threshold": percent},
    )


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _workspace_ref(workspace_id: int) -> SimpleNamespace:
    """What plan_for_workspace_get needs (the pk), without loading the row on the hot path."""
    return SimpleNamespace(pk=workspace_id)


def _quota_alert_schedule(*, reservation: QuotaReservation, now: datetime, rule=None) -> None:
    """``_quota_alert_check`` for a settle that does not know its counter's state (one query)."""
    if rule is None:
        rule = plan_quota_get(
            plan=plan_for_workspace_get(workspace=_workspace_ref(reservation.workspace_id), now=now),
            meter=reservation.meter,
        )
    if rule.period != "month" or not rule.limit:
        return
    used, period_start = (
        UsageCounter.objects.filter(pk=reservation.counter_id).values_list("used", "period_start").get()
    )
    _quota_alert_check(
        workspace_id=reservation.workspace_id,
        meter=reservation.meter,
        counter_id=reservation.counter_id,
        used=used,
        period_start=period_start,
        now=now,
    )


def quota_alert_send(
    *, workspace_id: int | None, meter: str, counter_id: int, now: datetime | None = None
) -> list[int]:
    """Fire each of the workspace's thresholds the counter reached in its period that has not
    fired yet (``workspace_id`` None: whichever workspace the counter belongs to). Returns the
    thresholds this call fired. The door of ``billing.tasks.quota_alert_send`` (tasks queued
    before alerts fired on the call itself)."""
    now = now or timezone.now()
    counters = UsageCounter.objects.filter(pk=counter_id, meter=meter)
    if workspace_id is not None:
        counters = counters.filter(workspace_id=workspace_id)
    counter = counters.first()
    if counter is None:
        return []
    workspace_id = counter.workspace_id
    rule = plan_quota_get(
        plan=plan_for_workspace_get(workspace=_workspace_ref(workspace_id), now=now), meter=meter
    )
    if rule.period != "month" or not rule.limit:
        return []
    base = _quota_data(meter=meter, used=counter.used, limit=rule.limit, period_start=counter.period_start)
    return [
        threshold
        for threshold in notification_settings_get(workspace_id=workspace_id).quota
        if counter.used * 100 >= threshold * rule.limit
        and threshold_reached(
            workspace_id=workspace_id,
            subject=f"quota:{meter}",
            threshold=threshold,
            period_start=counter.period_start,
            event="quota.threshold_reached",
            data={**base, "threshold": threshold},
            now=now,
        )
    ]


def quota_thresholds_reevaluate(*, workspace_id: int, now: datetime | None = None) -> dict[str, list[int]]:
    """After the workspace's plan changed: resolve the quota thresholds reached in the current
    period that its new limits no longer hold (an upgrade), with ``quota.threshold_resolved``.
    Returns meter -> the thresholds resolved. A threshold reached under the new limits fires on
    the next call that settles."""
    now = now or timezone.now()
    period_start, _end = period_bounds(period="month", now=now)
    plan = plan_for_workspace_get(workspace=_workspace_ref(workspace_id), now=now)
    used_by_meter = dict(
        UsageCounter.objects.filter(workspace_id=workspace_id, period_start=period_start).values_list(
            "meter", "used"
        )
    )
    resolved = {}
    for meter in Meter.values:
        rule = plan_quota_get(plan=plan, meter=meter)
        used = used_by_meter.get(meter, 0)
        limit = rule.limit if rule.period == "month" else None
        levels = notification_settings_get(workspace_id=workspace_id).quota
        holding = [t for t in levels if limit and used * 100 >= t * limit]
        gone = threshold_resolved(
            workspace_id=workspace_id,
            subject=f"quota:{meter}",
            period_start=period_start,
            event="quota.threshold_resolved",
            data=_quota_data(meter=meter, used=used, limit=limit, period_start=period_start),
            thresholds=None if not holding else [t for t in range(1, 101) if t not in holding],
            now=now,
        )
        if gone:
            resolved[meter] = gone
    return resolved
