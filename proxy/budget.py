"""The operator's daily spend cap (``DAILY_BUDGET_USD``, UTC day, global/env keys only).

The live counter is an integer of micro-USD in the shared cache. A call reserves its *maximum*
cost with one atomic INCR and checks the result: if it passes the cap the INCR is undone and the
call goes elsewhere, so concurrent calls can never overshoot together. Settling moves the
counter to the actual cost. The database (``DailySpend``) is the durable side: when the cache
key is missing (Redis restart, new day) it is rebuilt from the row before the first INCR.
"""

from __future__ import annotations

import math
from datetime import date
from decimal import Decimal

from django.conf import settings
from django.core.cache import cache

from core.money import usd

from .models import DailySpend

MICRO = Decimal(1_000_000)
KEY_TTL_SECONDS = 2 * 24 * 3600


def usd_to_micro(amount: Decimal) -> int:
    """USD → integer micro-USD, rounded up (a reservation must never be too small)."""
    return int(math.ceil(Decimal(amount) * MICRO))


def micro_to_usd(amount: int) -> Decimal:
    return usd(Decimal(amount) / MICRO)


def budget_cap_micro() -> int:
    return usd_to_micro(settings.DAILY_BUDGET_USD)


def budget_key(day: date) -> str:
    return f"proxy:budget:{day.isoformat()}"


def budget_counter_ensure(day: date) -> None:
    """Seed the cache counter from the database when it is missing (``add`` is a no-op if present)."""
    key = budget_key(day)
    if cache.get(key) is not None:
        return
    spent = DailySpend.objects.filter(day=day).values_list("spent_usd", flat=True).first() or Decimal(0)
    cache.add(key, usd_to_micro(spent), KEY_TTL_SECONDS)


def _incr(day: date, delta: int) -> int:
    key = budget_key(day)
    for _ in range(3):
        try:
            return cache.incr(key, delta) if delta >= 0 else cache.decr(key, -delta)
        except ValueError:  # expired or evicted between calls: rebuild from the database
            budget_counter_ensure(day)
    raise RuntimeError("budget counter unavailable")


def budget_reserve(*, day: date, amount_micro: int) -> bool:
    """Reserve ``amount_micro`` of today's budget; False (and nothing held) when it would pass the cap."""
    if amount_micro <= 0:
        return True
    try:
        total = cache.incr(budget_key(day), amount_micro)
    except ValueError:
        budget_counter_ensure(day)
        total = _incr(day, amount_micro)
    if total > budget_cap_micro():
        _incr(day, -amount_micro)
        return False
    return True


def budget_release(*, day: date, amount_micro: int) -> None:
    if amount_micro > 0:
        _incr(day, -amount_micro)


def budget_settle(*, day: date, reserved_micro: int, actual_micro: int) -> None:
    """Replace the reservation by the actual cost on the live counter."""
    delta = actual_micro - reserved_micro
    if delta:
        _incr(day, delta)


def budget_spent_get(*, day: date) -> int:
    """Live spend in micro-USD, reservations in flight included."""
    budget_counter_ensure(day)
    return int(cache.get(budget_key(day)) or 0)
