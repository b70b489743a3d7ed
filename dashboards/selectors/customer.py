"""Reads behind the customer's dashboard. Nothing here writes.

The dashboard shows one workspace (the tenant): its plan, quotas, credits, usage and calls,
whoever of its members made them. Usage numbers come from ``proxy.UsageDailyRollup`` (one row
per workspace, provider and UTC day) and never from the raw ``UsageEvent`` log, except the
"last 10 calls" table, which is a range scan of the workspace's recent-calls index (the whole
log is the Activity page's, ``selectors/activity.py``). Every read
takes ``workspace=`` (required): the caller resolved it with ``accounts.tenancy``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.db.models import Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from billing.models import Meter, Plan
from billing.selectors import plan_for_workspace_get, quota_status_get, subscription_get
from core import time as periods
from core.money import usd
from credits.models import LedgerEntry
from proxy.models import UsageDailyRollup, UsageEvent

CHART_DAYS = 30
RECENT_CALLS_LIMIT = 10


@dataclass(frozen=True)
class PlanCard:
    plan: Plan
    status: str  # the subscription's status, or "free"
    renews_at: datetime | None  # end of the paid period (renewal or cancellation date)
    cancel_at_period_end: bool
    quota_reset_at: datetime  # first instant of next month (UTC)
    has_subscription: bool


def plan_card_get(*, workspace, now: datetime | None = None) -> PlanCard:
    now = now or timezone.now()
    plan = plan_for_workspace_get(workspace=workspace, now=now)
    subscription = subscription_get(workspace=workspace)
    return PlanCard(
        plan=plan,
        status=subscription.status if subscription else "free",
        renews_at=subscription.current_period_end if subscription else None,
        cancel_at_period_end=bool(subscription and subscription.cancel_at_period_end),
        quota_reset_at=periods.next_month_start(now),
        has_subscription=subscription is not None,
    )


@dataclass(frozen=True)
class QuotaBar:
    meter: str
    label: str
    period: str
    used: int
    limit: int | None  # None = unlimited, 0 = not included
    remaining: int | None
    percent: int  # 0..100, for the bar width
    level: str  # "ok" < 80 % ≤ "warn" < 100 % ≤ "full"
    reset_at: datetime


def quota_bars_get(*, workspace, now: datetime | None = None) -> list[QuotaBar]:
    """One bar per meter of the plan, from billing's live counters (reservations count as used)."""
    labels = dict(Meter.choices)
    bars = []
    for meter, status in quota_status_get(workspace=workspace, now=now).items():
        consumed = status.used + status.reserved
        if status.limit:
            percent = min(100, consumed * 100 // status.limit)
            level = (
                "full"
                if consumed >= status.limit
                else "warn"
                if consumed * 100 >= status.limit * 80
                else "ok"
            )
        else:
            percent, level = 0, "ok"
        bars.append(
            QuotaBar(
                meter=meter,
                label=labels.get(meter, meter),
                period=status.period,
                used=consumed,
                limit=status.limit,
                remaining=status.remaining,
                percent=percent,
                level=level,
                reset_at=status.reset_at,
            )
        )
    return bars


@dataclass(frozen=True)
class DayUsage:
    day: date
    requests: int
    tokens: int
    emails: int
    cost_usd: Decimal


def usage_daily_series_get(*, workspace, today: date, days: int = CHART_DAYS) -> list[DayUsage]:
    """Every day of the window (zeros included, oldest first), summed over providers."""
    since = today - timedelta(days=days - 1)
    rows = {
        row["day"]: row
        for row in UsageDailyRollup.objects.filter(workspace=workspace, day__gte=since, day__lte=today)
        .values("day")
        .annotate(
            requests=Sum("requests"), tokens=Sum("tokens"), emails=Sum("emails"), cost_usd=Sum("cost_usd")
        )
    }
    series = []
    for offset in range(days):
        day = since + timedelta(days=offset)
        row = rows.get(day) or {}
        series.append(
            DayUsage(
                day=day,
                requests=row.get("requests") or 0,
                tokens=row.get("tokens") or 0,
                emails=row.get("emails") or 0,
                cost_usd=usd(row.get("cost_usd") or 0),
            )
        )
    return series


def usage_provider_totals_get(*, workspace, today: date, days: int = CHART_DAYS) -> list[dict]:
    """Calls, tokens and failures per provider over the window, busiest first."""
    since = today - timedelta(days=days - 1)
    return list(
        UsageDailyRollup.objects.filter(workspace=workspace, day__gte=since, day__lte=today)
        .values("provider")
        .annotate(requests=Sum("requests"), tokens=Sum("tokens"), errors=Sum("errors"))
        .order_by("-requests", "provider")
    )


def credit_spend_daily_get(*, workspace, today: date, days: int = CHART_DAYS) -> list[tuple[date, int]]:
    """Credits consumed per UTC day over the window (zeros included), from the workspace's ledger."""
    since = today - timedelta(days=days - 1)
    start = datetime.combine(since, datetime.min.time(), tzinfo=UTC)
    rows = dict(
        LedgerEntry.objects.filter(workspace=workspace, kind=LedgerEntry.Kind.CONSUME, created_at__gte=start)
        .annotate(day=TruncDate("created_at", tzinfo=UTC))
        .values("day")
        .annotate(spent=Sum("amount"))
        .values_list("day", "spent")
    )
    return [(since + timedelta(days=i), -(rows.get(since + timedelta(days=i)) or 0)) for i in range(days)]


STATUS_FILTERS = ("ok", "error")


def usage_recent_calls_list(
    *,
    workspace,
    created_by=None,
    api_key_id: int | None = None,
    status: str | None = None,
    limit: int = RECENT_CALLS_LIMIT,
):
    """The workspace's last calls, newest first: every member's, or with ``created_by`` only
    those of the keys that member created (the Activity page's rule); optionally for one key
    and/or ok/error/an HTTP status.

    Walks the index on (workspace, -created_at) and stops after ``limit`` rows.
    """
    qs = UsageEvent.objects.filter(workspace=workspace)
    if created_by is not None:
        qs = qs.filter(api_key__created_by=created_by)
    if api_key_id is not None:
        qs = qs.filter(api_key_id=api_key_id)
    if status == "ok":
        qs = qs.filter(status_code__lt=400)
    elif status == "error":
        qs = qs.filter(status_code__gte=400)
    elif status:
        qs = qs.filter(status_code=int(status))
    return (
        qs.select_related("api_key")
        .only(
            "created_at",
            "endpoint",
            "provider",
            "model",
            "upstream_model",
            "total_tokens",
            "emails",
            "status_code",
            "error_code",
            "latency_ms",
            "cost_usd",
            "credits_charged",
            "key_source",
            "is_fallback",
            "is_budget_fallback",
            "is_estimated",
            "api_key__prefix",
            "api_key__name",
        )
        .order_by("-created_at", "-id")[:limit]
    )
