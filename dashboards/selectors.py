"""Reads behind the dashboards. Nothing here writes.

Usage numbers come from ``proxy.UsageDailyRollup`` (one row per user, provider and UTC day) and
never from the raw ``UsageEvent`` log, except the end user's "last 100 calls" table, which is an
index range scan (``usage_user_recent``). Each operator number has its own selector so that each
one can be checked against hand-computed fixtures; ``operator_dashboard_get`` only composes them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from accounts.models import InvalidKeyDay
from accounts.providers import PROVIDERS
from billing.models import CheckoutSession, Gateway, Plan, StripeEvent, Subscription
from billing.selectors import (
    payment_revenue_by_plan_get,
    plan_for_user_get,
    quota_status_get,
    subscription_get,
)
from core import time as periods
from core.models import ReconciliationDrift, UserDayMinutes
from core.money import minor_to_decimal, usd
from credits.models import CreditPurchase, LedgerEntry, UpsellEvent
from organizations.models import UsageReport
from organizations.selectors import organizations_overview
from proxy import budget as proxy_budget
from proxy.models import RateLimitedDay, UsageDailyRollup, UsageEvent
from proxy.router import providers_cooling_get

logger = logging.getLogger("tollgate.dashboards")

CHART_DAYS = 30
RECENT_CALLS_LIMIT = 100
CENT = Decimal("0.01")
TENTH = Decimal("0.1")
BUDGET_WARNING_PERCENT = Decimal(75)
BUDGET_CRITICAL_PERCENT = Decimal(90)
# Providers the health tracker can put in cooldown (the registry plus the local sandbox).
KNOWN_PROVIDERS = (*PROVIDERS.keys(), "sandbox")


def _round(value: Decimal, quant: Decimal = CENT) -> Decimal:
    return Decimal(value).quantize(quant, rounding=ROUND_HALF_UP)


def _percent(part, whole, quant: Decimal = TENTH) -> Decimal | None:
    """``part / whole`` as a percentage, or None when there is nothing to divide by."""
    if not whole:
        return None
    return _round(Decimal(part) * 100 / Decimal(whole), quant)


# =============================================================================================
# End-user dashboard
# =============================================================================================


@dataclass(frozen=True)
class PlanCard:
    plan: Plan
    status: str  # the subscription's status, or "free"
    renews_at: datetime | None  # end of the paid period (renewal or cancellation date)
    cancel_at_period_end: bool
    quota_reset_at: datetime  # first instant of next month (UTC)
    has_subscription: bool


def plan_card_get(*, user, now: datetime | None = None) -> PlanCard:
    now = now or timezone.now()
    plan = plan_for_user_get(user=user, now=now)
    subscription = subscription_get(user=user)
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


def quota_bars_get(*, user, now: datetime | None = None) -> list[QuotaBar]:
    """One bar per meter of the plan, from billing's live counters (reservations count as used)."""
    from billing.models import Meter

    labels = dict(Meter.choices)
    bars = []
    for meter, status in quota_status_get(user=user, now=now).items():
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


def usage_daily_series_get(*, user, today: date, days: int = CHART_DAYS) -> list[DayUsage]:
    """Every day of the window (zeros included, oldest first), summed over providers."""
    since = today - timedelta(days=days - 1)
    rows = {
        row["day"]: row
        for row in UsageDailyRollup.objects.filter(user=user, day__gte=since, day__lte=today)
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


def usage_provider_totals_get(*, user, today: date, days: int = CHART_DAYS) -> list[dict]:
    """Calls, tokens and failures per provider over the window, busiest first."""
    since = today - timedelta(days=days - 1)
    return list(
        UsageDailyRollup.objects.filter(user=user, day__gte=since, day__lte=today)
        .values("provider")
        .annotate(requests=Sum("requests"), tokens=Sum("tokens"), errors=Sum("errors"))
        .order_by("-requests", "provider")
    )


def credit_spend_daily_get(*, user, today: date, days: int = CHART_DAYS) -> list[tuple[date, int]]:
    """Credits consumed per UTC day over the window (zeros included), from the user's ledger."""
    since = today - timedelta(days=days - 1)
    start = datetime.combine(since, datetime.min.time(), tzinfo=timezone.get_current_timezone())
    rows = dict(
        LedgerEntry.objects.filter(user=user, kind=LedgerEntry.Kind.CONSUME, created_at__gte=start)
        .annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(spent=Sum("amount"))
        .values_list("day", "spent")
    )
    return [(since + timedelta(days=i), -(rows.get(since + timedelta(days=i)) or 0)) for i in range(days)]


STATUS_FILTERS = ("ok", "error")


def usage_recent_calls_list(
    *, user, api_key_id: int | None = None, status: str | None = None, limit: int = RECENT_CALLS_LIMIT
):
    """The user's last calls, newest first, optionally for one key and/or ok/error/an HTTP status.

    Walks the ``usage_user_recent`` index and stops after ``limit`` rows.
    """
    qs = UsageEvent.objects.filter(user=user)
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
    percent = _percent(spent, limit, CENT) if limit else Decimal(100)
    return BudgetStatus(
        spent_usd=spent,
        limit_usd=limit,
        remaining_usd=max(usd(limit - spent), usd(0)),
        percent_used=percent,
        alert_level=budget_alert_level(percent),
    )


# =============================================================================================
# Operator dashboard — users
# =============================================================================================


def users_active_today_count(*, today: date) -> int:
    """Distinct users with at least one call today (any provider, any outcome)."""
    return UsageDailyRollup.objects.filter(day=today).values("user_id").distinct().count()


def users_avg_cost_today_get(*, today: date) -> Decimal:
    """Operator USD spent today divided by today's active users (0 when nobody called)."""
    row = UsageDailyRollup.objects.filter(day=today).aggregate(
        cost=Sum("cost_usd"), users=Count("user_id", distinct=True)
    )
    if not row["users"]:
        return usd(0)
    return usd(Decimal(row["cost"] or 0) / row["users"])


def _minutes_today(
    model: type[UserDayMinutes], *, today: date, at_least: int | None = None, users=None
) -> dict[int, int]:
    """user id -> minutes of a per-day refusal count (``RateLimitedDay``, ``InvalidKeyDay``)."""
    rows = model.objects.filter(day=today)
    if at_least is not None:
        rows = rows.filter(minutes__gte=at_least)
    if users is not None:
        rows = rows.filter(user_id__in=users)
    return dict(rows.values_list("user_id", "minutes"))


def users_abusive_list(*, today: date) -> list[dict]:
    """Users flagged today: calls reaching ``ABUSE_REQUESTS_PER_DAY``, failed calls reaching
    ``ABUSE_ERRORS_PER_DAY`` (quota refusals included), minutes past the per-minute rate limit
    reaching ``ABUSE_RATE_LIMITED_MINUTES_PER_DAY``, or minutes in which one of their unusable
    keys was presented reaching ``ABUSE_INVALID_KEY_MINUTES_PER_DAY``. Both kinds of refusal are
    answered before a call is recorded; ``RateLimitedDay`` and ``InvalidKeyDay`` count them, per
    key and minute."""
    limited = _minutes_today(
        RateLimitedDay, today=today, at_least=settings.ABUSE_RATE_LIMITED_MINUTES_PER_DAY
    )
    invalid = _minutes_today(InvalidKeyDay, today=today, at_least=settings.ABUSE_INVALID_KEY_MINUTES_PER_DAY)
    totals = {
        row["user_id"]: row
        for row in UsageDailyRollup.objects.filter(day=today)
        .values("user_id")
        .annotate(requests=Sum("requests"), errors=Sum("errors"))
        .filter(
            Q(requests__gte=settings.ABUSE_REQUESTS_PER_DAY)
            | Q(errors__gte=settings.ABUSE_ERRORS_PER_DAY)
            | Q(user_id__in=[*limited, *invalid])
        )
    }
    flagged = set(totals) | set(limited) | set(invalid)
    minutes = _minutes_today(RateLimitedDay, today=today, users=flagged)
    invalid_minutes = _minutes_today(InvalidKeyDay, today=today, users=flagged)
    emails = dict(get_user_model().objects.filter(pk__in=flagged).values_list("pk", "email"))
    result = []
    for user_id in flagged:
        requests = totals[user_id]["requests"] if user_id in totals else 0
        errors = totals[user_id]["errors"] if user_id in totals else 0
        refused_minutes = minutes.get(user_id, 0)
        reasons = []
        if requests >= settings.ABUSE_REQUESTS_PER_DAY:
            reasons.append("requests")
        if errors >= settings.ABUSE_ERRORS_PER_DAY:
            reasons.append("errors")
        if refused_minutes >= settings.ABUSE_RATE_LIMITED_MINUTES_PER_DAY:
            reasons.append("rate_limited")
        if invalid_minutes.get(user_id, 0) >= settings.ABUSE_INVALID_KEY_MINUTES_PER_DAY:
            reasons.append("invalid_keys")
        result.append(
            {
                "user_id": user_id,
                "email": emails.get(user_id, ""),
                "requests_today": requests,
                "errors_today": errors,
                "rate_limited_minutes_today": refused_minutes,
                "invalid_key_minutes_today": invalid_minutes.get(user_id, 0),
                "reasons": reasons,
            }
        )
    result.sort(key=lambda row: (-row["requests_today"], row["user_id"]))
    return result


# =============================================================================================
# Operator dashboard — providers and costs
# =============================================================================================


def provider_stats_list(*, since: date, until: date) -> list[dict]:
    """Per provider over [since, until]: calls, operator cost, tokens, error rate (%), fallbacks."""
    rows = (
        UsageDailyRollup.objects.filter(day__gte=since, day__lte=until)
        .values("provider")
        .annotate(
            requests=Sum("requests"),
            cost=Sum("cost_usd"),
            tokens=Sum("tokens"),
            errors=Sum("errors"),
            fallbacks=Sum("fallbacks"),
        )
        .order_by("-requests", "provider")
    )
    return [
        {
            "provider": row["provider"],
            "requests_count": row["requests"] or 0,
            "cost_total": usd(row["cost"] or 0),
            "tokens": row["tokens"] or 0,
            "errors_count": row["errors"] or 0,
            "error_rate": _percent(row["errors"] or 0, row["requests"]) or Decimal("0.0"),
            "fallback_count": row["fallbacks"] or 0,
        }
        for row in rows
    ]


def costs_usd_get(*, since: date, until: date) -> Decimal:
    """Operator USD paid to providers over [since, until] (global/env keys; BYOK costs 0)."""
    total = UsageDailyRollup.objects.filter(day__gte=since, day__lte=until).aggregate(c=Sum("cost_usd"))["c"]
    return usd(total or 0)


def costs_by_plan_get(*, since: date, until: date) -> dict[str, Decimal]:
    """Operator cost split by the plan each user is on now (users with no paid plan count
    under the default plan). Two queries: costs per user, then the users' entitled plans."""
    per_user = dict(
        UsageDailyRollup.objects.filter(day__gte=since, day__lte=until)
        .values("user_id")
        .annotate(c=Sum("cost_usd"))
        .filter(c__gt=0)
        .values_list("user_id", "c")
    )
    plans = dict(
        Subscription.objects.filter(user_id__in=list(per_user), status__in=Subscription.ENTITLED_STATUSES)
        .order_by("user_id", "created_at", "pk")
        .values_list("user_id", "plan__code")
    )  # ordered so the newest subscription wins in the dict
    result: dict[str, Decimal] = {}
    for user_id, cost in per_user.items():
        code = plans.get(user_id, settings.DEFAULT_PLAN_CODE)
        result[code] = usd(result.get(code, Decimal(0)) + cost)
    return result


# =============================================================================================
# Operator dashboard — revenue
# =============================================================================================


def usd_from_minor(*, amounts: dict[str, int]) -> Decimal:
    """Minor units per currency → USD with ``EXCHANGE_RATES_TO_USD``; an unknown currency is
    left out (and logged) rather than guessed."""
    total = Decimal(0)
    for currency, amount in amounts.items():
        rate = settings.EXCHANGE_RATES_TO_USD.get(currency.lower())
        if rate is None:
            logger.warning("no exchange rate for %s: left out of USD revenue", currency)
            continue
        total += minor_to_decimal(int(amount), currency) * rate
    return _round(total)


def _period_bounds(since: date, until: date) -> tuple[datetime, datetime]:
    tz = timezone.get_current_timezone()
    start = datetime.combine(since, datetime.min.time(), tzinfo=tz)
    end = datetime.combine(until + timedelta(days=1), datetime.min.time(), tzinfo=tz)
    return start, end


def invoice_revenue_by_plan_get(*, since: date, until: date) -> dict[str, dict[str, int]]:
    """Subscription revenue received in [since, until], as {plan code: {currency: minor}}.

    Paid invoices are the ``invoice.paid`` events we stored (one per invoice, deduplicated by
    invoice id); the offline simulated checkout has no invoices, so its completed subscription
    checkouts count as paid first invoices.
    """
    start, end = _period_bounds(since, until)
    invoices: dict[str, tuple[str, str, int]] = {}
    events = StripeEvent.objects.filter(
        type="invoice.paid", received_at__gte=start, received_at__lt=end
    ).exclude(status=StripeEvent.Status.FAILED)
    for payload in events.values_list("payload", flat=True):
        invoice = ((payload or {}).get("data") or {}).get("object") or {}
        subscription = invoice.get("subscription") or (
            ((invoice.get("parent") or {}).get("subscription_details") or {}).get("subscription")
        )
        if isinstance(subscription, dict):
            subscription = subscription.get("id")
        invoice_id = invoice.get("id") or id(invoice)
        invoices[invoice_id] = (
            subscription or "",
            (invoice.get("currency") or "").lower(),
            int(invoice.get("amount_paid") or 0),
        )
    plan_by_subscription = dict(
        Subscription.objects.filter(
            stripe_subscription_id__in=[s for s, _, _ in invoices.values() if s]
        ).values_list("stripe_subscription_id", "plan__code")
    )
    result: dict[str, dict[str, int]] = {}
    for subscription, currency, amount in invoices.values():
        if amount <= 0 or not currency:
            continue
        code = plan_by_subscription.get(subscription, "unknown")
        bucket = result.setdefault(code, {})
        bucket[currency] = bucket.get(currency, 0) + amount
    simulated = (
        CheckoutSession.objects.filter(
            is_simulated=True,
            mode="subscription",
            status=CheckoutSession.Status.COMPLETE,
            updated_at__gte=start,
            updated_at__lt=end,
        )
        .values("metadata", "currency")
        .annotate(total=Sum("amount_minor"))
    )
    for row in simulated:
        code = (row["metadata"] or {}).get("plan_code") or "unknown"
        bucket = result.setdefault(code, {})
        bucket[row["currency"]] = bucket.get(row["currency"], 0) + (row["total"] or 0)
    return result


def chargily_plan_revenue_by_plan_get(*, since: date, until: date) -> dict[str, dict[str, int]]:
    """Plan periods paid with Chargily Pay in [since, until], as {plan code: {currency: minor}}.

    Only Chargily's plan transactions: Stripe plan payments are already counted from their
    invoices (a Stripe checkout's transaction is the same money as its first invoice), and
    credit packs, whichever gateway took them, are counted from ``CreditPurchase``.
    """
    start, end = _period_bounds(since, until)
    return payment_revenue_by_plan_get(start=start, end=end, gateway=Gateway.CHARGILY)


def plan_revenue_by_plan_get(*, since: date, until: date) -> dict[str, dict[str, int]]:
    """All plan revenue in [since, until]: Stripe invoices plus Chargily periods, per plan and
    currency (each payment once)."""
    result = {
        code: dict(amounts) for code, amounts in invoice_revenue_by_plan_get(since=since, until=until).items()
    }
    for code, amounts in chargily_plan_revenue_by_plan_get(since=since, until=until).items():
        bucket = result.setdefault(code, {})
        for currency, amount in amounts.items():
            bucket[currency] = bucket.get(currency, 0) + amount
    return result


def credit_revenue_minor_get(*, since: date, until: date) -> dict[str, int]:
    """Credit pack purchases paid in [since, until], as {currency: minor units} (gross)."""
    start, end = _period_bounds(since, until)
    return {
        row["currency"]: row["total"] or 0
        for row in CreditPurchase.objects.filter(created_at__gte=start, created_at__lt=end)
        .values("currency")
        .annotate(total=Sum("amount_minor"))
        .order_by("currency")
    }


@dataclass(frozen=True)
class Economics:
    revenue_usd: Decimal
    costs_usd: Decimal
    profit_usd: Decimal
    margin_percent: Decimal | None
    by_plan: list[dict]
    by_provider: list[dict]


def economics_get(*, since: date, until: date, providers: list[dict] | None = None) -> Economics:
    """Revenue (plans on either gateway + credit packs, in USD) against provider costs over
    [since, until]."""
    plan_minor = plan_revenue_by_plan_get(since=since, until=until)
    credit_minor = credit_revenue_minor_get(since=since, until=until)
    revenue_by_plan = {code: usd_from_minor(amounts=amounts) for code, amounts in plan_minor.items()}
    if credit_minor:
        revenue_by_plan["credits"] = usd_from_minor(amounts=credit_minor)
    costs_plan = costs_by_plan_get(since=since, until=until)
    revenue = _round(sum(revenue_by_plan.values(), Decimal(0)))
    costs = _round(sum(costs_plan.values(), Decimal(0)))
    by_plan = []
    for code in sorted(set(revenue_by_plan) | set(costs_plan)):
        plan_revenue = _round(revenue_by_plan.get(code, Decimal(0)))
        plan_costs = _round(costs_plan.get(code, Decimal(0)))
        by_plan.append(
            {
                "plan": code,
                "revenue_usd": plan_revenue,
                "costs_usd": plan_costs,
                "profit_usd": plan_revenue - plan_costs,
            }
        )
    if providers is None:
        providers = provider_stats_list(since=since, until=until)
    by_provider = [
        {
            "provider": row["provider"],
            "costs_usd": _round(row["cost_total"]),
            "share_percent": _percent(row["cost_total"], costs) or Decimal("0.0"),
        }
        for row in sorted(providers, key=lambda r: (-r["cost_total"], r["provider"]))
    ]
    return Economics(
        revenue_usd=revenue,
        costs_usd=costs,
        profit_usd=revenue - costs,
        margin_percent=_percent(revenue - costs, revenue),
        by_plan=by_plan,
        by_provider=by_provider,
    )


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
    return _percent(row["ok"], row["total"])


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
                "action": "Watch the spend; abusive users are listed below.",
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
    views = dict(
        UpsellEvent.objects.values("kind").annotate(n=Count("id")).order_by().values_list("kind", "n")
    )
    purchases = CreditPurchase.objects.aggregate(count=Count("id"), buyers=Count("user_id", distinct=True))
    revenue_minor = {
        row["currency"]: row["total"] or 0
        for row in CreditPurchase.objects.values("currency").annotate(total=Sum("amount_minor")).order_by()
    }
    revenue = usd_from_minor(amounts=revenue_minor)
    count, buyers = purchases["count"] or 0, purchases["buyers"] or 0
    upsell_views = views.get(UpsellEvent.Kind.VIEW, 0) + views.get(UpsellEvent.Kind.MODAL_VIEW, 0)
    return {
        "upsell_views": upsell_views,
        "buy_clicks": views.get(UpsellEvent.Kind.CLICK, 0),
        "purchases": count,
        "conversion_percent": _percent(count, upsell_views, CENT),
        "average_basket_usd": _round(revenue / count) if count else None,
        "revenue_usd": revenue,
        "revenue_per_user_usd": _round(revenue / buyers) if buyers else None,
        "webhook_success_rate": webhook_success_rate_get(since=since),
    }


def organizations_block_get() -> dict:
    overview = organizations_overview()
    return {"summary": overview.summary, "pending": overview.pending, "linked": overview.linked}


# =============================================================================================
# Composition
# =============================================================================================


def operator_dashboard_get(*, now: datetime | None = None) -> dict:
    """Everything the operator dashboard shows (page and JSON), about 20 queries in all."""
    now = now or timezone.now()
    today = now.date()
    since_30 = today - timedelta(days=CHART_DAYS - 1)
    budget = budget_status_get(today=today)
    providers_today = provider_stats_list(since=today, until=today)
    providers_30 = provider_stats_list(since=since_30, until=today)
    abusive = users_abusive_list(today=today)
    cooling = providers_in_cooldown_list()
    window_start = now - timedelta(days=CHART_DAYS)
    failed_webhooks = stripe_events_failed_count(since=window_start)
    failed_meter = meter_events_failed_count()
    drift = drift_open_counts_get()
    economics = economics_get(since=since_30, until=today, providers=providers_30)
    return {
        "generated_at": now,
        "period": {"since": since_30, "until": today},
        "budget": budget,
        "users": {
            "active_today": users_active_today_count(today=today),
            "avg_cost_per_user": users_avg_cost_today_get(today=today),
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
