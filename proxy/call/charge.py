"""The customer-facing charge of a call: what it is worth to the customer, in credits at the
endpoint's ``credits.EndpointCost`` rate (whether plan quota or credits paid it) and in money at
the plan's price per credit (``billing.Plan.credit_price_micros``, else the list price per
credit of the smallest active pack in the plan's currency).

The same figure is stored on the usage event (``charge_credits``, ``charge_micros``) and counted
by the key limits in ``credits`` and ``money``, so a limit in money and the Activity page agree.
The rates are kept in process for ``CHARGE_RATES_CACHE_SECONDS`` (like the price catalogue) and
captured on the call's ``Funding`` when it is admitted: settling costs no query and charges the
prices the call was admitted at.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from billing.services import money_micros_per_minor as micros_per_minor
from credits import selectors as credit_selectors

from ..dbcall import db_call

# Seconds a worker keeps endpoint costs and pack prices before reading them again (an admin edit
# shows within this delay), as the price catalogue does.
CHARGE_RATES_CACHE_SECONDS = 30

# EndpointCost.unit -> the meter whose units the credit price counts (as ``funding``).
COST_UNIT_METERS = {"tokens": "llm_tokens", "emails": "emails", "requests": "requests"}
# Aliases priced like the endpoint they wrap (as ``funding``).
COST_ENDPOINT_ALIASES = {
    "/api/v2/chat": "/api/proxy/v1/chat/completions",
    "/api/proxy/v1/messages": "/api/proxy/v1/chat/completions",
    "/api/proxy/v1/responses": "/api/proxy/v1/chat/completions",
}


@dataclass(frozen=True)
class Charge:
    credits: int = 0
    micros: int = 0  # millionths of the major unit of ``currency``
    currency: str = ""


@dataclass(frozen=True)
class ChargeRate:
    """How one call of an endpoint is charged on a plan: the endpoint's credit cost (None: the
    endpoint has none, the call is worth 0) and what a credit is worth in ``currency``."""

    cost: object | None  # credits.EndpointCost
    credit_price_micros: int
    currency: str

    def credits_for(self, meters: dict[str, int], *, cost=None) -> int:
        """Credits for a call counting ``meters`` (meter -> units), as ``EndpointCost.cost_for``."""
        cost = cost if cost is not None else self.cost
        if cost is None:
            return 0
        meter = COST_UNIT_METERS.get(str(getattr(cost, "unit", "") or ""))
        if meter is None:
            return cost.cost_for(0)
        return cost.cost_for(meters.get(meter, 1 if meter == "requests" else 0))

    def charge_for(self, credits: int) -> Charge:
        return Charge(credits=credits, micros=credits * self.credit_price_micros, currency=self.currency)


NO_CHARGE_RATE = ChargeRate(cost=None, credit_price_micros=0, currency="")


@dataclass
class _Rates:
    costs: dict  # endpoint -> EndpointCost | None
    pack_prices: dict[str, int]  # currency -> micros per credit (smallest active pack)
    loaded_at: float


_rates: _Rates | None = None
_rates_lock = threading.Lock()


def _pack_prices_load() -> dict[str, int]:
    """Per currency, the list price per credit of the smallest active pack, in micros (DZD from
    the packs' Chargily price)."""
    smallest: dict[str, tuple[int, int, int]] = {}  # currency -> (credits, price_minor, micros)
    for pack in credit_selectors.credit_pack_list():
        prices = [(pack.currency.lower(), pack.price_minor)]
        if pack.price_dzd_minor:
            prices.append(("dzd", pack.price_dzd_minor))
        for currency, price_minor in prices:
            micros = int(
                (Decimal(price_minor * micros_per_minor(currency)) / pack.credits).quantize(
                    Decimal(1), ROUND_HALF_UP
                )
            )
            key = (pack.credits, price_minor, micros)
            if currency not in smallest or key < smallest[currency]:
                smallest[currency] = key
    return {currency: key[2] for currency, key in smallest.items()}


def charge_rates_is_fresh(endpoint: str) -> bool:
    """Whether ``charge_rate_get`` answers for ``endpoint`` without a query."""
    current = _rates
    return (
        current is not None
        and time.monotonic() - current.loaded_at < CHARGE_RATES_CACHE_SECONDS
        and COST_ENDPOINT_ALIASES.get(endpoint, endpoint) in current.costs
    )


def charge_rates_load(endpoint: str) -> None:
    """(Re)load the rates, and ``endpoint``'s cost (in a thread: queries)."""
    global _rates
    endpoint = COST_ENDPOINT_ALIASES.get(endpoint, endpoint)
    with _rates_lock:
        current = _rates
        if current is None or time.monotonic() - current.loaded_at >= CHARGE_RATES_CACHE_SECONDS:
            endpoints = {endpoint, *(current.costs if current is not None else ())}
            costs = {name: credit_selectors.endpoint_cost_get(endpoint=name) for name in endpoints}
            _rates = _Rates(costs=costs, pack_prices=_pack_prices_load(), loaded_at=time.monotonic())
        elif endpoint not in current.costs:
            current.costs = {**current.costs, endpoint: credit_selectors.endpoint_cost_get(endpoint=endpoint)}


def charge_rates_invalidate() -> None:
    """Forget the in-process rates (tests and admin edits that must show at once)."""
    global _rates
    _rates = None


def charge_rate_get(*, endpoint: str, plan) -> ChargeRate:
    """The rate of ``endpoint`` on ``plan``, loading what is missing or stale (a query then)."""
    if not charge_rates_is_fresh(endpoint):
        charge_rates_load(endpoint)
    rates = _rates
    if plan is None:
        return NO_CHARGE_RATE
    currency = (plan.currency or "").lower()
    price = int(getattr(plan, "credit_price_micros", 0) or 0) or rates.pack_prices.get(currency, 0)
    return ChargeRate(
        cost=rates.costs.get(COST_ENDPOINT_ALIASES.get(endpoint, endpoint)),
        credit_price_micros=price,
        currency=currency,
    )


async def charge_rate_aget(*, endpoint: str, plan) -> ChargeRate:
    """``charge_rate_get`` from the event loop: no I/O while the rates are fresh."""
    if charge_rates_is_fresh(endpoint):
        return charge_rate_get(endpoint=endpoint, plan=plan)
    return await db_call(charge_rate_get, endpoint=endpoint, plan=plan)


def charge_meters(*, meters: dict[str, int], charge: Charge) -> dict[str, int]:
    """``meters`` plus the charge as the key limits count it (``charge_credits``, ``charge_micros``)."""
    return {**meters, "charge_credits": charge.credits, "charge_micros": charge.micros}
