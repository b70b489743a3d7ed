"""Provider costs, revenue and margin for the operator dashboard. Nothing here writes.

Costs and credits charged come from ``proxy.UsageDailyRollup``; revenue from the owning apps'
selectors (billing decodes its gateways' payments, credits sums its pack purchases). This module
only converts currencies to USD and composes.

Revenue is cash (subscriptions and credit packs), not earned per call, so no provider earns any
by itself: a provider's revenue is the period's revenue allocated in proportion to its share of
the credits charged over the period (every call's ``charge_credits``, whether plan quota or
credits paid it), and its margin is that allocation minus its cost.
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
    """Per provider over [since, until]: calls, operator cost, tokens, error rate (%), fallbacks,
    credits charged (at the endpoints' rates, whoever paid)."""
    rows = (
        UsageDailyRollup.objects.filter(day__gte=since, day__lte=until)
        .values("provider")
        .annotate(
            requests=Sum("requests"),
            cost=Sum("cost_usd"),
            tokens=Sum("tokens"),
            errors=Sum("errors"),
            fallbacks=Sum("fallbacks"),
            charge=Sum("charge_credits"),
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
            "charge_credits": row["charge"] or 0,
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


def revenue_by_provider_allocate(*, revenue: Decimal, credits: dict[str, int]) -> dict[str, Decimal] | None:
    """``revenue`` (USD, cents) split between providers in proportion to the credits charged on
    each, each share rounded to the cent; the shares add up to ``revenue`` exactly (the rounding
    remainder goes to the largest share, ties to the first provider by name). A provider with no
    credits gets 0. None when nothing was charged: there is nothing to split by."""
    total = sum(credits.values())
    if not total:
        return None
    shares = {provider: rounded(revenue * count / total) for provider, count in credits.items()}
    remainder = revenue - sum(shares.values(), Decimal(0))
    if remainder:
        largest = min(credits, key=lambda provider: (-credits[provider], provider))
        shares[largest] += remainder
    return shares


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
    [since, until], by plan and by provider (the revenue allocated by credits charged:
    ``revenue_by_provider_allocate``; None when nothing was charged). ``providers``: the range's
    ``provider_stats_list`` rows when the caller has them already."""
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
    allocated = revenue_by_provider_allocate(
        revenue=revenue, credits={row["provider"]: row["charge_credits"] for row in providers}
    )
    by_provider = []
    for row in sorted(providers, key=lambda r: (-r["cost_total"], r["provider"])):
        provider_costs = rounded(row["cost_total"])
        provider_revenue = allocated[row["provider"]] if allocated is not None else None
        profit = provider_revenue - provider_costs if provider_revenue is not None else None
        by_provider.append(
            {
                "provider": row["provider"],
                "costs_usd": provider_costs,
                "requests_count": row["requests_count"],
                "share_percent": percent_of(row["cost_total"], costs) or Decimal("0.0"),
                "charge_credits": row["charge_credits"],
                "revenue_usd": provider_revenue,
                "profit_usd": profit,
                "margin_percent": percent_of(profit, provider_revenue) if profit is not None else None,
            }
        )
    return Economics(
        revenue_usd=revenue,
        costs_usd=costs,
        profit_usd=revenue - costs,
        margin_percent=percent_of(revenue - costs, revenue),
        by_plan=by_plan,
        by_provider=by_provider,
    )
