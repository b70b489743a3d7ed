"""Provider costs, revenue and margin for the operator dashboard. Nothing here writes.

Costs come from ``proxy.UsageDailyRollup``; revenue from the owning apps' selectors (billing
decodes its gateways' payments, credits sums its pack purchases). This module only converts
currencies to USD and composes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.db.models import Sum

from billing.models import Subscription
from billing.selectors import plan_revenue_by_plan_get
from core.money import minor_to_decimal, usd
from credits.selectors import credit_revenue_minor_get
from proxy.models import UsageDailyRollup

logger = logging.getLogger("tollgate.dashboards")

CENT = Decimal("0.01")
TENTH = Decimal("0.1")


def rounded(value: Decimal, quant: Decimal = CENT) -> Decimal:
    """``value`` to ``quant`` (cents by default), half up, as the dashboards show money."""
    return Decimal(value).quantize(quant, rounding=ROUND_HALF_UP)


def percent_of(part, whole, quant: Decimal = TENTH) -> Decimal | None:
    """``part / whole`` as a percentage, or None when there is nothing to divide by."""
    if not whole:
        return None
    return rounded(Decimal(part) * 100 / Decimal(whole), quant)


def period_bounds_get(*, since: date, until: date) -> tuple[datetime, datetime]:
    """The instants [start, end) covering the days ``since`` through ``until`` (UTC)."""
    tz = UTC
    start = datetime.combine(since, datetime.min.time(), tzinfo=tz)
    end = datetime.combine(until + timedelta(days=1), datetime.min.time(), tzinfo=tz)
    return start, end


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
            "error_rate": percent_of(row["errors"] or 0, row["requests"]) or Decimal("0.0"),
            "fallback_count": row["fallbacks"] or 0,
        }
        for row in rows
    ]


def costs_usd_get(*, since: date, until: date) -> Decimal:
    """Operator USD paid to providers over [since, until] (global/env keys; BYOK costs 0)."""
    total = UsageDailyRollup.objects.filter(day__gte=since, day__lte=until).aggregate(c=Sum("cost_usd"))["c"]
    return usd(total or 0)


def costs_by_plan_get(*, since: date, until: date) -> dict[str, Decimal]:
    """Operator cost split by the plan each workspace is on now (workspaces with no paid plan
    count under the default plan). Two queries: costs per workspace, then their entitled plans."""
    per_workspace = dict(
        UsageDailyRollup.objects.filter(day__gte=since, day__lte=until)
        .values("workspace_id")
        .annotate(c=Sum("cost_usd"))
        .filter(c__gt=0)
        .values_list("workspace_id", "c")
    )
    plans = dict(
        Subscription.objects.filter(
            workspace_id__in=list(per_workspace), status__in=Subscription.ENTITLED_STATUSES
        )
        .order_by("workspace_id", "created_at", "pk")
        .values_list("workspace_id", "plan__code")
    )  # ordered so the newest subscription wins in the dict
    result: dict[str, Decimal] = {}
    for workspace_id, cost in per_workspace.items():
        code = plans.get(workspace_id, settings.DEFAULT_PLAN_CODE)
        result[code] = usd(result.get(code, Decimal(0)) + cost)
    return result


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
    return rounded(total)


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
    start, end = period_bounds_get(since=since, until=until)
    plan_minor = plan_revenue_by_plan_get(start=start, end=end)
    credit_minor = credit_revenue_minor_get(start=start, end=end)
    revenue_by_plan = {code: usd_from_minor(amounts=amounts) for code, amounts in plan_minor.items()}
    if credit_minor:
        revenue_by_plan["credits"] = usd_from_minor(amounts=credit_minor)
    costs_plan = costs_by_plan_get(since=since, until=until)
    revenue = rounded(sum(revenue_by_plan.values(), Decimal(0)))
    costs = rounded(sum(costs_plan.values(), Decimal(0)))
    by_plan = []
    for code in sorted(set(revenue_by_plan) | set(costs_plan)):
        plan_revenue = rounded(revenue_by_plan.get(code, Decimal(0)))
        plan_costs = rounded(costs_plan.get(code, Decimal(0)))
        by_plan.append(
            {
                "plan": code,
                "revenue_usd": plan_revenue,
                "costs_usd": plan_costs,
                "profit_usd": plan_revenue - plan_costs,
                "margin_percent": percent_of(plan_revenue - plan_costs, plan_revenue),
            }
        )
    if providers is None:
        providers = provider_stats_list(since=since, until=until)
    by_provider = [
        {
            "provider": row["provider"],
            "costs_usd": rounded(row["cost_total"]),
            "requests_count": row["requests_count"],
            "share_percent": percent_of(row["cost_total"], costs) or Decimal("0.0"),
        }
        for row in sorted(providers, key=lambda r: (-r["cost_total"], r["provider"]))
    ]
    return Economics(
        revenue_usd=revenue,
        costs_usd=costs,
        profit_usd=revenue - costs,
        margin_percent=percent_of(revenue - costs, revenue),
        by_plan=by_plan,
        by_provider=by_provider,
    )
