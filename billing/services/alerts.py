"""Quota alerts: which thresholds of a monthly limit a settle crossed, the once-per-period gate,
the Celery task that sends, and the email itself.

A settle only queues work here (after commit); the email goes out of the request path. Quota
code imports this module, never the other way round.
"""

from __future__ import annotations

from datetime import datetime
from types import SimpleNamespace

from django.conf import settings
from django.core.cache import cache
from django.core.mail import send_mail
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from accounts.selectors import workspace_billing_emails
from notifications.services import event_emit

from ..models import Plan, QuotaAlertSent, QuotaReservation, UsageCounter
from ..selectors import plan_for_workspace_get, plan_quota_get

QUOTA_ALERT_THRESHOLDS = (80, 100)  # percent of a monthly limit


# =============================================================================================
# Quota alerts
# =============================================================================================


def quota_alert_may_be_due(*, rows, plan: Plan) -> bool:
    """Whether a settle's counter rows cross an alert threshold (then ``quota_settle_finish``
    must run where it may touch the cache and queue a task; otherwise it is pure)."""
    for _counter_id, meter, used, _reserved, _period_start, charged in rows:
        if not charged:
            continue
        rule = plan_quota_get(plan=plan, meter=meter)
        if rule.period == "month" and rule.limit and used * 100 >= min(QUOTA_ALERT_THRESHOLDS) * rule.limit:
            return True
    return False


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
    """``_quota_alert_schedule`` for a settle that already knows the counter (no extra query)."""
    rule = plan_quota_get(
        plan=plan or plan_for_workspace_get(workspace=_workspace_ref(workspace_id), now=now), meter=meter
    )
    if rule.period != "month" or not rule.limit:
        return
    crossed = [t for t in QUOTA_ALERT_THRESHOLDS if used * 100 >= t * rule.limit]
    if not crossed:
        return
    gate = _alert_gate_key(
        workspace_id=workspace_id, meter=meter, period_start=period_start, threshold=crossed[-1]
    )
    if cache.get(gate):
        return
    from ..tasks import quota_alert_send_task  # noqa: PLC0415 (billing.tasks imports the services: a task is queued lazily to avoid a cycle)

    transaction.on_commit(
        lambda: quota_alert_send_task.delay(workspace_id=workspace_id, meter=meter, counter_id=counter_id)
    )


def _workspace_ref(workspace_id: int) -> SimpleNamespace:
    """What plan_for_workspace_get needs (the pk), without loading the row on the hot path."""
    return SimpleNamespace(pk=workspace_id)


def _alert_gate_key(*, workspace_id: int, meter: str, period_start: datetime, threshold: int) -> str:
    # "ws": the tenant changed from user to workspace, so an old user gate is never read here.
    return f"billing:quota-alert:ws:{workspace_id}:{meter}:{period_start:%Y%m%d}:{threshold}"


def _quota_alert_schedule(*, reservation: QuotaReservation, now: datetime, rule=None) -> None:
    """After a settle on a monthly meter, queue the alert task when a threshold is crossed.

    The shared-cache gate only saves queueing the task again; the unique QuotaAlertSent row
    is what guarantees one email per threshold per period.
    """
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
    crossed = [t for t in QUOTA_ALERT_THRESHOLDS if used * 100 >= t * rule.limit]
    if not crossed:
        return
    gate = _alert_gate_key(
        workspace_id=reservation.workspace_id,
        meter=reservation.meter,
        period_start=period_start,
        threshold=crossed[-1],
    )
    if cache.get(gate):
        return
    from ..tasks import quota_alert_send_task  # noqa: PLC0415 (billing.tasks imports the services: a task is queued lazily to avoid a cycle)

    workspace_id, meter, counter_id = reservation.workspace_id, reservation.meter, reservation.counter_id
    transaction.on_commit(
        lambda: quota_alert_send_task.delay(workspace_id=workspace_id, meter=meter, counter_id=counter_id)
    )


def quota_alert_send(
    *, workspace_id: int | None, meter: str, counter_id: int, now: datetime | None = None
) -> list[int]:
    """Email the workspace's billing contacts for each threshold crossed in the counter's
    period, once each (``workspace_id`` None: whichever workspace the counter belongs to).

    The marker row and the email commit together: if sending fails, the marker is rolled back
    and the next settle (or a task retry) tries again.
    """
    now = now or timezone.now()
    counters = UsageCounter.objects.select_related("workspace").filter(pk=counter_id, meter=meter)
    if workspace_id is not None:
        counters = counters.filter(workspace_id=workspace_id)
    counter = counters.first()
    if counter is None:
        return []
    workspace_id = counter.workspace_id
    rule = plan_quota_get(plan=plan_for_workspace_get(workspace=counter.workspace, now=now), meter=meter)
    if not rule.limit:
        return []
    sent = []
    for threshold in QUOTA_ALERT_THRESHOLDS:
        if counter.used * 100 < threshold * rule.limit:
            continue
        with transaction.atomic():
            _, created = QuotaAlertSent.objects.get_or_create(
                workspace_id=workspace_id,
                meter=meter,
                period_start=counter.period_start,
                threshold=threshold,
                defaults={"sent_at": now},
            )
            if created:
                _quota_alert_email(counter=counter, limit=rule.limit, threshold=threshold)
                sent.append(threshold)
                event_emit(
                    workspace=workspace_id,
                    type="quota.threshold_reached",
                    data={"meter": meter, "threshold": threshold, "used": counter.used, "limit": rule.limit},
                )
        gate = _alert_gate_key(
            workspace_id=workspace_id, meter=meter, period_start=counter.period_start, threshold=threshold
        )
        cache.set(gate, 1, 40 * 24 * 3600)
    return sent


def _quota_alert_email(*, counter: UsageCounter, limit: int, threshold: int) -> None:
    """To the workspace's owners and billing members; a workspace without any (all left) gets
    no email, and the marker still says it was due."""
    recipients = workspace_billing_emails(workspace=counter.workspace)
    if not recipients:
        return
    label = counter.get_meter_display()
    workspace = counter.workspace
    if workspace.personal:
        whose, who, plan = "your", "You have", "your plan"
    else:
        whose, who, plan = f"{workspace.name}'s", f"{workspace.name} has", "its plan"
    if threshold >= 100:
        subject = f"Tollgate: {whose} {label} quota is used up"
        lead = f"{who} used all {limit:,} {label.lower()} included in {plan} this month."
    else:
        subject = f"Tollgate: {threshold}% of {whose} {label} quota used"
        lead = f"{who} used {counter.used:,} of {limit:,} {label.lower()} this month ({threshold}%)."
    body = (
        f"{lead}\n\nYour quota resets on {counter.period_end:%Y-%m-%d} (00:00 UTC).\n"
        f"Upgrade your plan: {settings.SITE_URL}{reverse('billing:pricing')}\n"
    )
    send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients)
