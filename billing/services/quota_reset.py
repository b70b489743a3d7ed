"""An operator's reset of a workspace's current quota periods (the customer page's action).

Counters are never zeroed by the rollover (a new period is a new row); this is the one
deliberate exception, for an operator who forgives a period's usage. It zeroes ``used`` of the
counters whose period contains ``now`` and leaves ``reserved`` alone (calls in flight still
settle or release their own holds), under the counters' row locks, in id order. What each meter
had used is kept in the audit event, so the history is not lost.
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from accounts.services import audit_record
from core.locks import lock_objects

from ..models import UsageCounter
from .alerts import quota_thresholds_reevaluate


def quota_period_reset(
    *, workspace, actor, reason: str = "", request=None, now: datetime | None = None
) -> dict:
    """Zero the usage of the workspace's current periods (every meter, daily and monthly).
    Returns ``{meter: used before}`` for the counters reset (empty: nothing used). After commit
    the quota thresholds the usage no longer reaches are resolved, so they can fire again."""
    now = now or timezone.now()
    with transaction.atomic():
        counters = lock_objects(
            UsageCounter.objects.filter(workspace_id=workspace.pk, period_start__lte=now, period_end__gt=now)
        )
        reset = [counter for counter in counters if counter.used]
        UsageCounter.objects.filter(pk__in=[counter.pk for counter in reset]).update(used=0)
        audit_record(
            action="quota.period_reset",
            actor=actor,
            workspace=workspace,
            target=f"workspace:{workspace.pk}",
            details={
                "reason": reason[:500],
                "counters": [
                    {
                        "meter": counter.meter,
                        "period": counter.period,
                        "period_start": counter.period_start.isoformat(),
                        "used": counter.used,
                    }
                    for counter in reset
                ],
                "via": "admin",
            },
            request=request,
            now=now,
        )
        workspace_id = workspace.pk
        transaction.on_commit(
            lambda: quota_thresholds_reevaluate(workspace_id=workspace_id, now=now), robust=True
        )
    used_before: dict[str, int] = {}
    for counter in reset:
        used_before[counter.meter] = used_before.get(counter.meter, 0) + counter.used
    return used_before
