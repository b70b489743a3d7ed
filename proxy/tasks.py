"""Celery tasks of the proxy: idempotent, safe to run twice."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from . import budget


@shared_task(name="proxy.tasks.budget_holds_sweep")
def budget_holds_sweep_task() -> int:
    """Free the daily-budget holds of calls that died (today's and yesterday's holds)."""
    today = timezone.now().date()
    freed = 0
    for day in (today - timedelta(days=1), today):
        count, _micro = budget.budget_holds_sweep(day=day)
        freed += count
    return freed
