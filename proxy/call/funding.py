"""How a call is paid: plan quota first, credits (overage) when the quota is exhausted.

The single seam between the proxy and billing/credits. Each call reserves the maximum it can
consume, then settles to what it actually used or releases everything on failure:

- quota: ``billing.services.quota_reserve / quota_settle / quota_release`` per meter;
- credits: when any meter's quota is exhausted, the quota reservations already taken are
  released and the whole call is paid in credits at the endpoint's ``EndpointCost`` rate
  (``credits.services.credit_hold / credit_hold_settle / credit_hold_release``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.conf import settings
from django.utils import timezone

from billing import quota_pool
from billing import services as billing_services
from billing.selectors import (
    period_bounds,
    plan_for_workspace_get,
    plan_quota_get,
    quota_block,
    quota_status_build,
    quota_status_get,
)
from core.exceptions import ApiError, retry_after_seconds
from credits import selectors as credit_selectors
from credits import services as credit_services
from notifications.thresholds import key_limit_usage_observed, member_limit_usage_observed

from ..ratelimit import token_limit_headers
from .charge import COST_ENDPOINT_ALIASES, COST_UNIT_METERS, Charge, charge_meters

logger = logging.getLogger("tollgate.proxy")

UPSELL_LINKS = {"pricingUrl": "/pricing/", "creditsUrl": "/credits/"}


@dataclass
class Funding:
    """What one call holds until it settles: quota reservations and/or one credit hold."""

    endpoint: str
    reserved: dict[str, int] = field(default_factory=dict)  # meter -> units reserved
    reservations: dict = field(default_factory=dict)  # meter -> billing QuotaReservation
    credit_hold: object | None = None
    credit_cost: object | None = None  # credits.EndpointCost used for the hold
    credit_units_meter: str | None = None
    credits_charged: int = 0
    plan: object | None = None  # billing Plan of the caller (saves cache round trips)
    counters: dict[str, tuple[int, int]] = field(
        default_factory=dict
    )  # meter -> (used, reserved) after settle
    key_holds: list = field(default_factory=list)  # billing KeyUsageHold: the key's own limits
    key_currency: str = ""  # the currency of the key's money limits (the plan's)
    # What the call's charge is computed at (``charge.ChargeRate``), captured when it was admitted.
    charge_rate: object | None = None
    # What the key's limits stood at after its settle (``billing.KeyLimitReading``, for alerts).
    key_limit_readings: list = field(default_factory=list)
    # The key, its creator and the workspace the limits belong to (threshold alerts name them).
    key_id: int | None = None
    user_id: int | None = None
    workspace_id: int | None = None


def _quota_exceeded_error(*, meter: str, status, upsell: dict | None = None) -> ApiError:
    block = quota_block(status)
    reset_at = getattr(status, "reset_at", None)
    headers = {}
    if reset_at is not None:
        headers["Retry-After"] = str(retry_after_seconds((reset_at - timezone.now()).total_seconds()))
        headers.update(token_limit_headers(block) if meter == "llm_tokens" else {})
    return ApiError(
        "quota_exceeded",
        f"Your plan's {meter} quota is exhausted until {block['resetDate']}. "
        "Upgrade your plan or buy credits.",
        headers=headers,
        meter=meter,
        quota=block,
        **{**UPSELL_LINKS, **(upsell or {})},
    )


# EndpointCost.unit -> the meter whose units the credit price counts.
UNIT_METERS = COST_UNIT_METERS


def _credit_units(cost, meter_amounts: dict[str, int]) -> tuple[str | None, int]:
    meter = UNIT_METERS.get(str(getattr(cost, "unit", "") or ""))
    if meter is None:
        return None, 0
    return meter, meter_amounts.get(meter, 1 if meter == "requests" else 0)


def funding_reserve(*, workspace, endpoint: str, meters: dict[str, int], plan=None) -> Funding:
    """Reserve ``meters`` (meter -> units) on the workspace's plan quota, else in its credits:
    every member's calls draw on the same quota and balance.

    Every meter is reserved in one statement, all or nothing (``quota_reserve_many``).
    Raises ApiError 429 ``quota_exceeded`` or 402 ``insufficient_credits``; holds nothing then.
    """
    funding = Funding(endpoint=endpoint, reserved=dict(meters), plan=plan)
    try:
        reservations = billing_services.quota_reserve_many(
            workspace=workspace,
            meters=meters,
            synchronous_commit=settings.PROXY_SYNCHRONOUS_COMMIT,
            plan=plan,
        )
    except billing_services.QuotaExceeded as exc:
        _credit_hold_or_raise(
            funding=funding, workspace=workspace, meter=exc.meter, status=exc.status, meters=meters
        )
        return funding
    funding.reservations = {reservation.meter: reservation for reservation in reservations}
    return funding


def _credit_hold_or_raise(*, funding: Funding, workspace, meter: str, status, meters: dict[str, int]) -> None:
    endpoint = COST_ENDPOINT_ALIASES.get(funding.endpoint, funding.endpoint)
    cost = credit_selectors.endpoint_cost_get(endpoint=endpoint)
    if cost is None:
        raise _quota_exceeded_error(meter=meter, status=status)
    units_meter, units = _credit_units(cost, meters)
    amount = cost.cost_for(units)
    if amount <= 0:
        raise _quota_exceeded_error(meter=meter, status=status)
    try:
        funding.credit_hold = credit_services.credit_hold(
            workspace=workspace, amount=amount, reference=f"proxy:{endpoint}", endpoint=endpoint
        )
    except credit_services.InsufficientCredits as exc:
        upsell = dict(credit_selectors.credit_upsell_get(workspace=workspace))
        balance = getattr(exc, "balance", 0) or 0
        extra = {
            **upsell,
            "balance": balance,
            "available": getattr(exc, "available", balance),
            "cost": amount,
        }
        if upsell.get("hasPurchased"):
            raise ApiError(
                "insufficient_credits",
                "Your quota is exhausted and your credit balance does not cover this call.",
                meter=meter,
                quota=quota_block(status),
                **{**UPSELL_LINKS, **extra},
            ) from exc
        raise _quota_exceeded_error(meter=meter, status=status, upsell=extra) from exc
    funding.credit_cost = cost
    funding.credit_units_meter = units_meter


def funding_settle(*, funding: Funding, actual: dict[str, int], idempotency_key: str) -> None:
    """Settle every reservation to ``actual`` (meter -> units). Missing meters settle at 0."""
    if funding.reservations:
        used = {
            meter: min(actual.get(meter, 0), funding.reserved.get(meter, 0)) for meter in funding.reservations
        }
        funding.counters = billing_services.quota_settle_many(
            reservations=list(funding.reservations.values()),
            actual=used,
            synchronous_commit=settings.PROXY_SYNCHRONOUS_COMMIT,
            plan=funding.plan,
        )
    funding_key_settle(funding=funding, actual=actual)
    if funding.credit_hold is not None:
        meter = funding.credit_units_meter
        units = min(actual.get(meter, 0), funding.reserved.get(meter, 0)) if meter else 0
        charge = funding.credit_cost.cost_for(units)
        credit_services.credit_hold_settle(
            hold=funding.credit_hold, actual=charge, idempotency_key=idempotency_key
        )
        funding.credits_charged = charge


def _settled_units(*, funding: Funding, actual: dict[str, int]) -> dict[str, int]:
    return {
        meter: min(actual.get(meter, 0), funding.reserved.get(meter, 0)) for meter in funding.reservations
    }


def funding_settle_pairs(*, funding: Funding, actual: dict[str, int]) -> list[tuple]:
    """(reservation, units to charge) for each quota reservation of a quota-funded call."""
    units = _settled_units(funding=funding, actual=actual)
    return [(reservation, units[meter]) for meter, reservation in funding.reservations.items()]


def funding_settle_sql(*, funding: Funding, actual: dict[str, int], now):
    """The quota settle of a quota-funded call as SQL for the caller's single statement."""
    return billing_services.quota_settle_sql(
        reservations=list(funding.reservations.values()),
        actual=_settled_units(funding=funding, actual=actual),
        now=now,
        synchronous_commit=settings.PROXY_SYNCHRONOUS_COMMIT,
    )


def funding_settle_finish(*, funding: Funding, rows, now) -> None:
    funding.counters = billing_services.quota_settle_finish(
        reservations=list(funding.reservations.values()), rows=rows, now=now, plan=funding.plan
    )


def funding_charge(*, funding: Funding | None, actual: dict[str, int]) -> Charge:
    """The call's customer-facing charge for ``actual`` (meter -> units): credits at the
    endpoint's rate on the units the call was funded for (as a credit-funded settle charges
    them, so a call paid in credits is charged exactly what was debited), and their worth in
    the plan's currency. No query: the rate was captured when the call was admitted."""
    rate = funding.charge_rate if funding is not None else None
    if rate is None:
        return Charge()
    units = {meter: min(int(actual.get(meter, 0)), funding.reserved.get(meter, 0)) for meter in actual}
    return rate.charge_for(rate.credits_for(units, cost=funding.credit_cost))


def funding_key_settle(*, funding: Funding, actual: dict[str, int]) -> None:
    """Charge the key's own limits what the call used (``actual``: meter -> units, plus its
    charge), once; ``funding.key_limit_readings`` says where the limits stand after it."""
    if funding.key_holds:
        holds, funding.key_holds = funding.key_holds, []
        funding.key_limit_readings = billing_services.key_holds_settle(
            holds=holds,
            meters=charge_meters(meters=actual, charge=funding_charge(funding=funding, actual=actual)),
            currency=funding.key_currency,
            synchronous_commit=settings.PROXY_SYNCHRONOUS_COMMIT,
        )
        _key_limit_thresholds_observe(funding=funding)


def _key_limit_thresholds_observe(*, funding: Funding) -> None:
    """``key.limit_reached`` / ``key.limit_resolved`` for the thresholds this settle crossed
    (fired after commit, once per period; one shared-cache read while nothing changes)."""
    if funding.key_id is None or funding.workspace_id is None:
        return
    for reading in funding.key_limit_readings:
        if not reading.limit:
            continue
        where = {
            "unit": reading.unit,
            "window": reading.window,
            "period_start": reading.period_start,
            "used": reading.used,
            "limit": reading.limit,
        }
        try:
            if reading.membership_id is None:
                key_limit_usage_observed(
                    workspace_id=funding.workspace_id, api_key_id=funding.key_id, **where
                )
            elif funding.user_id is not None:
                member_limit_usage_observed(
                    workspace_id=funding.workspace_id, user_id=funding.user_id, **where
                )
        except Exception:  # an alert never fails a call that is already on the books
            logger.warning("key limit alert not evaluated", exc_info=True)


def funding_release(*, funding: Funding) -> None:
    """Give everything back (failed call). Safe to call once per funding."""
    if funding.key_holds:
        holds, funding.key_holds = funding.key_holds, []
        billing_services.key_holds_release(holds=holds, synchronous_commit=settings.PROXY_SYNCHRONOUS_COMMIT)
    if funding.reservations:
        billing_services.quota_release_many(
            reservations=list(funding.reservations.values()),
            synchronous_commit=settings.PROXY_SYNCHRONOUS_COMMIT,
        )
    funding.reservations = {}
    if funding.credit_hold is not None:
        credit_services.credit_hold_release(hold=funding.credit_hold)
        funding.credit_hold = None


def funding_quota_block(*, funding: Funding | None, workspace, meter: str) -> dict:
    """The quota block to answer with after a settle: from the settle's own RETURNING when the
    call was paid by quota (no query), else read from the counters."""
    counter = funding.counters.get(meter) if funding is not None else None
    if counter is None:
        return quota_block(quota_status_get(workspace=workspace).get(meter))
    plan = funding.plan or plan_for_workspace_get(workspace=workspace)
    rule = plan_quota_get(plan=plan, meter=meter)
    _start, reset_at = period_bounds(period=rule.period, now=timezone.now())
    used, reserved = counter
    reservation = funding.reservations.get(meter)
    if reservation is not None:  # this worker's spares are not in use: remaining counts them
        reserved = max(0, reserved - quota_pool.spare_units(reservation.counter_id))
    return quota_block(quota_status_build(rule=rule, used=used, reserved=reserved, reset_at=reset_at))
