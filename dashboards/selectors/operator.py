"""Reads behind the operator dashboard, its alerts and ``/metrics``. Nothing here writes.

Usage numbers come from ``proxy.UsageDailyRollup``, never from a scan of the raw events. Each
number has its own selector so that each can be checked against hand-computed fixtures;
``operator_dashboard_get`` only composes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Count, Q, Sum
from django.utils import timezone

from accounts.models import InvalidKeyDay, Membership, Role, Workspace
from accounts.providers import PROVIDERS
from billing.models import StripeEvent
from core.models import ReconciliationDrift, WorkspaceDayMinutes
from core.money import usd
from credits.selectors import credit_conversion_stats
from organizations.models import UsageReport
from organizations.selectors import organizations_overview
from proxy import budget as proxy_budget
from proxy.models import RateLimitedDay, UsageDailyRollup, UsageEvent
from proxy.router import providers_cooling_get

from .business import business_overview_get, economics_drilldown_get
from .customer import CHART_DAYS
from .economics import CENT, economics_get, percent_of, provider_stats_list, rounded, usd_from_minor
from .provider_health import provider_health_list

BUDGET_WARNING_PERCENT = Decimal(75)
BUDGET_CRITICAL_PERCENT = Decimal(90)
# Providers the health tracker can put in cooldown (the registry plus the local sandbox).
KNOWN_PROVIDERS = (*PROVIDERS.keys(), "sandbox")


# =============================================================================================
# Operator dashboard — budget
# =============================================================================================


@dataclass(frozen=True)
class BudgetStatus:
    spent_usd: Decimal
    limit_usd: Decimal
    remaining_usd: Decimal
    percent_used: Decimal
    alert_level: str  # "ok" < 75 % ≤ "warning" < 90 % ≤ "critical"


def budget_alert_level(percent: Decimal) -> str:
    if percent >= BUDGET_CRITICAL_PERCENT:
        return "critical"
    if percent >= BUDGET_WARNING_PERCENT:
        return "warning"
    return "ok"


def budget_status_get(*, today: date) -> BudgetStatus:
    """Today's operator spend against ``DAILY_BUDGET_USD``: the live counter the proxy uses
    (reservations in flight included), rebuilt from ``DailySpend`` when the cache lost it."""
    spent = proxy_budget.micro_to_usd(proxy_budget.budget_spent_get(day=today))
    limit = usd(settings.DAILY_BUDGET_USD)
    percent = percent_of(spent, limit, CENT) if limit else Decimal(100)
    return BudgetStatus(
        spent_usd=spent,
        limit_usd=limit,
        remaining_usd=max(usd(limit - spent), usd(0)),
        percent_used=percent,
        alert_level=budget_alert_level(percent),
    )


# =============================================================================================
# Operator dashboard — customers (workspaces)
# =============================================================================================


def workspaces_active_today_count(*, today: date) -> int:
    """Distinct workspaces (the customers) with at least one call today (any provider, any
    outcome): a team of ten counts once, as it pays once."""
    return UsageDailyRollup.objects.filter(day=today).values("workspace_id").distinct().count()


def workspaces_avg_cost_today_get(*, today: date) -> Decimal:
    """Operator USD spent today divided by today's active workspaces (0 when nobody called)."""
    row = UsageDailyRollup.objects.filter(day=today).aggregate(
        cost=Sum("cost_usd"), workspaces=Count("workspace_id", distinct=True)
    )
    if not row["workspaces"]:
        return usd(0)
    return usd(Decimal(row["cost"] or 0) / row["workspaces"])


def _minutes_today(
    model: type[WorkspaceDayMinutes], *, today: date, at_least: int | None = None, workspaces=None
) -> dict[int, int]:
    """workspace id -> minutes of a per-day refusal count (``RateLimitedDay``, ``InvalidKeyDay``)."""
    rows = model.objects.filter(day=today)
    if at_least is not None:
        rows = rows.filter(minutes__gte=at_least)
    if workspaces is not None:
        rows = rows.filter(workspace_id__in=workspaces)
    return dict(rows.values_list("workspace_id", "minutes"))


def _workspace_labels(workspace_ids) -> dict[int, tuple[str, str]]:
    """workspace id -> (name, contact email): the personal owner's address, else the earliest
    owner's. Two queries, whatever the number of workspaces."""
    if not workspace_ids:
        return {}
    names = dict(Workspace.objects.filter(pk__in=workspace_ids).values_list("pk", "name"))
    owners: dict[int, str] = {}
    for workspace_id, email in (
        Membership.objects.filter(workspace_id__in=workspace_ids, role=Role.OWNER)
        .order_by("workspace_id", "created_at", "pk")
        .values_list("workspace_id", "user__email")
    ):
        owners.setdefault(workspace_id, email)
    return {pk: (name, owners.get(pk, "")) for pk, name in names.items()}


def workspaces_abusive_list(*, today: date) -> list[dict]:
    """Workspaces flagged today: calls reaching ``ABUSE_REQUESTS_PER_DAY``, failed calls reaching
    ``ABUSE_ERRORS_PER_DAY`` (quota refusals included), minutes past the per-minute rate limit
    reaching ``ABUSE_RATE_LIMITED_MINUTES_PER_DAY``, or minutes in which one of their unusable
    keys was presented reaching ``ABUSE_INVALID_KEY_MINUTES_PER_DAY``. Both kinds of refusal are
    answered before a call is recorded; ``RateLimitedDay`` and ``InvalidKeyDay`` count them, per
    workspace and minute. The workspace is the unit because it is what pays and what the
    operator suspends: its members' keys add up."""
    limited = _minutes_today(
        RateLimitedDay, today=today, at_least=settings.ABUSE_RATE_LIMITED_MINUTES_PER_DAY
    )
    invalid = _minutes_today(InvalidKeyDay, today=today, at_least=settings.ABUSE_INVALID_KEY_MINUTES_PER_DAY)
    totals = {
        row["workspace_id"]: row
        for row in UsageDailyRollup.objects.filter(day=today)
        .values("workspace_id")
        .annotate(requests=Sum("requests"), errors=Sum("errors"))
        .filter(
            Q(requests__gte=settings.ABUSE_REQUESTS_PER_DAY)
            | Q(errors__gte=settings.ABUSE_ERRORS_PER_DAY)
            | Q(workspace_id__in=[*limited, *invalid])
        )
    }
    flagged = set(totals) | set(limited) | set(invalid)
    minutes = _minutes_today(RateLimitedDay, today=today, workspaces=flagged)
    invalid_minutes = _minutes_today(InvalidKeyDay, today=today, workspaces=flagged)
    labels = _workspace_labels(flagged)
    result = []
    for workspace_id in flagged:
        requests = totals[workspace_id]["requests"] if workspace_id in totals else 0
        errors = totals[workspace_id]["errors"] if workspace_id in totals else 0
        refused_minutes = minutes.get(workspace_id, 0)
        reasons = []
        if requests >= settings.ABUSE_REQUESTS_PER_DAY:
            reasons.append("requests")
        if errors >= settings.ABUSE_ERRORS_PER_DAY:
            reasons.append("errors")
        if refused_minutes >= settings.ABUSE_RATE_LIMITED_MINUTES_PER_DAY:
            reasons.append("rate_limited")
        if invalid_minutes.get(workspace_id, 0) >= settings.ABUSE_INVALID_KEY_MINUTES_PER_DAY:
            reasons.append("invalid_keys")
        name, owner_email = labels.get(workspace_id, ("", ""))
        result.append(
            {
                "workspace_id": workspace_id,
                "workspace_name": name,
                "owner_email": owner_email,
                "requests_today": requests,
                "errors_today": errors,
                "rate_limited_minutes_today": refused_minutes,
                "invalid_key_minutes_today": invalid_minutes.get(workspace_id, 0),
                "reasons": reasons,
            }
        )
    result.sort(key=lambda row: (-row["requests_today"], row["workspace_id"]))
    return result


# =============================================================================================
# Operator dashboard — alerts, webhooks, credits
# =============================================================================================


def stripe_events_failed_count(*, since: datetime) -> int:
    """Webhook events we stored but could not process (they need the operator)."""
    return StripeEvent.objects.filter(status=StripeEvent.Status.FAILED, received_at__gte=since).count()


def webhook_success_rate_get(*, since: datetime) -> Decimal | None:
    """Percentage of stored webhook events processed (or knowingly ignored) since ``since``."""
    row = StripeEvent.objects.filter(received_at__gte=since).aggregate(
        total=Count("id"),
        ok=Count("id", filter=Q(status__in=[StripeEvent.Status.PROCESSED, StripeEvent.Status.IGNORED])),
    )
    return percent_of(row["ok"], row["total"])


def meter_events_failed_count() -> int:
    """Organization usage reports whose Stripe meter event gave up (status ``failed``)."""
    return UsageReport.objects.filter(billing_status=UsageReport.BillingStatus.FAILED).count()


def providers_in_cooldown_list() -> list[str]:
    return sorted(providers_cooling_get(providers=list(KNOWN_PROVIDERS)))


def drift_open_counts_get() -> dict[str, int]:
    """Unresolved drift found by the nightly reconciliation, per source (``credits.ledger``,
    ``billing.quota``, ``organizations.meter``); the full re-sum is too heavy for a page view."""
    return dict(
        ReconciliationDrift.objects.filter(resolved_at__isnull=True)
        .values("source")
        .annotate(n=Count("id"))
        .order_by("source")
        .values_list("source", "n")
    )


def operator_alerts_list(
    *,
    budget: BudgetStatus,
    cooling: list[str],
    failed_webhooks: int,
    failed_meter_events: int,
    drift: dict[str, int],
) -> list[dict]:
    """The alerts block, most severe first, each with the action to take."""
    alerts = []
    if budget.alert_level == "critical":
        alerts.append(
            {
                "level": "critical",
                "code": "budget",
                "message": f"Daily budget at {budget.percent_used}% "
                f"({budget.spent_usd} of {budget.limit_usd} USD): paid providers are about to be "
                "skipped for free ones.",
                "action": "Raise DAILY_BUDGET_USD or wait for the reset at 00:00 UTC.",
            }
        )
    elif budget.alert_level == "warning":
        alerts.append(
            {
                "level": "warning",
                "code": "budget",
                "message": f"Daily budget at {budget.percent_used}%.",
                "action": "Watch the spend; flagged workspaces are listed below.",
            }
        )
    if drift:
        found = ", ".join(f"{count} in {source}" for source, count in sorted(drift.items()))
        alerts.append(
            {
                "level": "critical",
                "code": "ledger_drift",
                "message": f"The reconciliation found cached numbers that disagree with their rows: {found}.",
                "action": "Open Core › Reconciliation drifts, correct with a new ledger entry, then resolve.",
            }
        )
    for provider in cooling:
        alerts.append(
            {
                "level": "warning",
                "code": "provider_cooldown",
                "message": f"{provider} is in cooldown after repeated failures.",
                "action": "Calls go to the fallback providers; check the provider's status page.",
            }
        )
    if failed_webhooks:
        alerts.append(
            {
                "level": "warning",
                "code": "webhooks_failed",
                "message": f"{failed_webhooks} Stripe webhook event(s) failed in the last 30 days.",
                "action": "Open Billing › Stripe events, filter by status failed, fix and reprocess.",
            }
        )
    if failed_meter_events:
        alerts.append(
            {
                "level": "warning",
                "code": "meter_events_failed",
                "message": f"{failed_meter_events} organization usage report(s) could not be sent to Stripe.",
                "action": "Open Organizations › Usage reports, filter by failed, and retry.",
            }
        )
    return alerts


def credits_overview_get(*, since: datetime) -> dict:
    """Upsell funnel, basket and revenue per buyer (in USD) and the webhook success rate."""
    stats = credit_conversion_stats()
    revenue = usd_from_minor(amounts=stats["revenue_minor"])
    count, buyers = stats["purchases"], stats["buyers"]
    return {
        "upsell_views": stats["upsell_views"],
        "buy_clicks": stats["buy_clicks"],
        "purchases": count,
        "conversion_percent": percent_of(count, stats["upsell_views"], CENT),
        "average_basket_usd": rounded(revenue / count) if count else None,
        "revenue_usd": revenue,
        "revenue_per_user_usd": rounded(revenue / buyers) if buyers else None,
        "webhook_success_rate": webhook_success_rate_get(since=since),
    }


def organizations_block_get() -> dict:
    overview = organizations_overview()
    return {"summary": overview.summary, "pending": overview.pending, "linked": overview.linked}


# =============================================================================================
# Composition
# =============================================================================================


def operator_dashboard_get(
    *, now: datetime | None = None, since: date | None = None, until: date | None = None
) -> dict:
    """Everything the operator dashboard shows (page and JSON), about 25 queries in all.
    Economics cover [since, until] (validated by the caller; the last 30 days by default)."""
    now = now or timezone.now()
    today = now.date()
    since_30 = today - timedelta(days=CHART_DAYS - 1)
    since, until = since or since_30, until or today
    budget = budget_status_get(today=today)
    providers_today = provider_stats_list(since=today, until=today)
    providers_30 = provider_stats_list(since=since_30, until=today)
    abusive = workspaces_abusive_list(today=today)
    cooling = providers_in_cooldown_list()
    window_start = now - timedelta(days=CHART_DAYS)
    failed_webhooks = stripe_events_failed_count(since=window_start)
    failed_meter = meter_events_failed_count()
    drift = drift_open_counts_get()
    # The default range is the 30-day provider table's: its rows are reused, not read again.
    providers_range = providers_30 if (since, until) == (since_30, today) else None
    economics = economics_get(since=since, until=until, providers=providers_range)
    return {
        "generated_at": now,
        "period": {"since": since, "until": until},
        "business": business_overview_get(now=now),
        "economics_drilldown": economics_drilldown_get(economics=economics, since=since, until=until),
        "budget": budget,
        # The original design's "users" block; each number counts workspaces (the customers).
        "users": {
            "active_today": workspaces_active_today_count(today=today),
            "avg_cost_per_user": workspaces_avg_cost_today_get(today=today),
            "abusive_count": len(abusive),
            "abusive_users": abusive,
        },
        "providers": {"today": providers_today, "last_30_days": providers_30},
        "economics": economics,
        "alerts": operator_alerts_list(
            budget=budget,
            cooling=cooling,
            failed_webhooks=failed_webhooks,
            failed_meter_events=failed_meter,
            drift=drift,
        ),
        "providers_in_cooldown": cooling,
        "provider_health": provider_health_list(now=now),
        "organizations": organizations_block_get(),
        "credits": credits_overview_get(since=window_start),
        "drift": drift,
    }


def staff_recipients_list() -> list[str]:
    """Addresses of active staff, who get the operator alert emails."""
    return list(
        get_user_model()
        .objects.filter(is_staff=True, is_active=True)
        .exclude(email="")
        .order_by("pk")
        .values_list("email", flat=True)
    )


# =============================================================================================
# Prometheus metrics
# =============================================================================================


def metrics_snapshot_get(*, now: datetime | None = None) -> dict:
    """Numbers for /metrics, read at scrape time: today's calls/errors/spend per provider from
    the rollups, latency over the last 5 minutes from the raw log (index ``usage_created``)."""
    now = now or timezone.now()
    today = now.date()
    providers = provider_stats_list(since=today, until=today)
    recent = UsageEvent.objects.filter(created_at__gte=now - timedelta(minutes=5)).aggregate(
        calls=Count("id"),
        latency_ms=Sum("latency_ms"),
        upstream_errors=Count("id", filter=Q(status_code__in=[502, 503, 504])),
    )
    budget = budget_status_get(today=today)
    return {"providers": providers, "recent": recent, "budget": budget}
