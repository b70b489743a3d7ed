"""The operator's daily spend cap (``DAILY_BUDGET_USD``, UTC day, global/env keys only).

The live counter is an integer of micro-USD in Redis. A call reserves its *maximum* cost with
one script (INCRBY, undone past the cap) and records the hold in the day's hold set (member
``<call id>:<amount>``, scored by when it goes stale). Releasing or settling removes the member
and moves the counter in the same script, so a hold is undone at most once whoever gets there
first: the call's own ``finally``, or ``budget_holds_sweep`` (beat) when the call's process
died. The database (``DailySpend``) is the durable side: a missing counter is rebuilt from the
day's row plus the holds still live.

A settle may only pass the cap when the provider reported more than the reservation counted;
the overshoot is then logged and flagged by the reconciliation (``budget_overshoot_find``).
"""

from __future__ import annotations

import logging
import math
import time
from datetime import date
from decimal import Decimal

from django.conf import settings
from django_redis import get_redis_connection

from core.cache_identity import cache_key
from core.money import usd

from .models import DailySpend

logger = logging.getLogger("tollgate.proxy")

MICRO = Decimal(1_000_000)
KEY_TTL_SECONDS = 2 * 24 * 3600

RESERVE_LUA = """
-- KEYS: counter, holds. ARGV: amount, cap, member, stale-at (epoch s), ttl.
-- -1: counter missing (rebuild it from the database); 0: over the cap (nothing held); 1: held.
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local total = redis.call('INCRBY', KEYS[1], ARGV[1])
if total > tonumber(ARGV[2]) then
  redis.call('DECRBY', KEYS[1], ARGV[1])
  return 0
end
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[5])
return 1
"""

SETTLE_LUA = """
-- Settle or release holds. ARGV[1]: cap, ARGV[2]: n holds, then per hold: member, reserved,
-- actual (0 for a release). KEYS: (counter, holds) per hold, then keys to delete (the call
-- path ends providers' failure runs in the same round trip). A hold already gone (swept) adds
-- the actual cost alone; a missing counter is left missing (the next reserve rebuilds it from
-- the database). Returns the overshoot past the cap caused by each hold (0 when none).
local cap, n = tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {}
for h = 0, n - 1 do
  local i, j = 2 * h + 1, 3 + 3 * h
  local reserved, actual = tonumber(ARGV[j + 1]), tonumber(ARGV[j + 2])
  local delta = actual
  if redis.call('ZREM', KEYS[i + 1], ARGV[j]) == 1 then delta = actual - reserved end
  local over = 0
  if delta ~= 0 and redis.call('EXISTS', KEYS[i]) == 1 then
    local total = redis.call('INCRBY', KEYS[i], delta)
    if delta > 0 and total > cap then over = math.min(delta, total - cap) end
  end
  out[#out + 1] = over
end
for k = 2 * n + 1, #KEYS do redis.call('DEL', KEYS[k]) end
return out
"""

SWEEP_LUA = """
-- KEYS: counter, holds. ARGV: now (epoch s). Undo the holds gone stale; {count, micro-USD}.
local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
local freed = 0
for _, member in ipairs(stale) do
  freed = freed + tonumber(string.match(member, ':(%d+)$'))
  redis.call('ZREM', KEYS[2], member)
end
if freed > 0 and redis.call('EXISTS', KEYS[1]) == 1 then redis.call('DECRBY', KEYS[1], freed) end
return {#stale, freed}
"""


def usd_to_micro(amount: Decimal) -> int:
    """USD → integer micro-USD, rounded up (a reservation must never be too small)."""
    return int(math.ceil(Decimal(amount) * MICRO))


def micro_to_usd(amount: int) -> Decimal:
    return usd(Decimal(amount) / MICRO)


def budget_cap_micro() -> int:
    return usd_to_micro(settings.DAILY_BUDGET_USD)


def budget_key(day: date) -> str:
    return f"proxy:budget:{day.isoformat()}"


def budget_holds_key(day: date) -> str:
    return f"proxy:budget-holds:{day.isoformat()}"


def hold_member(*, hold_id, amount_micro: int) -> str:
    return f"{hold_id}:{amount_micro}"


def hold_stale_at() -> int:
    """When a hold becomes the sweeper's: no live call outlives ``STALE_RESERVATION_SECONDS``."""
    return int(time.time()) + settings.STALE_RESERVATION_SECONDS


def reserve_script_args(*, day: date, amount_micro: int, hold_id) -> tuple[list, list]:
    """(keys, args) of ``RESERVE_LUA``: shared by this module and the async call path."""
    keys = [cache_key(budget_key(day)), cache_key(budget_holds_key(day))]
    member = hold_member(hold_id=hold_id, amount_micro=amount_micro)
    return keys, [amount_micro, budget_cap_micro(), member, hold_stale_at(), KEY_TTL_SECONDS]


def settle_script_item(*, day: date, hold_id, reserved_micro: int, actual_micro: int) -> tuple[list, list]:
    """(keys, args) of one hold in ``SETTLE_LUA`` (the caller puts the cap and count first)."""
    keys = [cache_key(budget_key(day)), cache_key(budget_holds_key(day))]
    return keys, [hold_member(hold_id=hold_id, amount_micro=reserved_micro), reserved_micro, actual_micro]


def _redis():
    return get_redis_connection("default")


_scripts: dict[tuple[int, str], object] = {}


def _script(name: str, lua: str):
    """The script bound to the current client (a new client, e.g. after a settings change,
    gets its own: a script object remembers the client it was registered on)."""
    client = _redis()
    script = _scripts.get((id(client), name))
    if script is None:
        if len(_scripts) > 64:
            _scripts.clear()
        script = _scripts[(id(client), name)] = client.register_script(lua)
    return script


def budget_counter_ensure(day: date) -> None:
    """Seed a missing counter from the database plus the day's live holds (no-op if present)."""
    client = _redis()
    key = cache_key(budget_key(day))
    if client.exists(key):
        return
    spent = DailySpend.objects.filter(day=day).values_list("spent_usd", flat=True).first() or Decimal(0)
    live = client.zrangebyscore(cache_key(budget_holds_key(day)), int(time.time()), "+inf")
    held = sum(int(member.rsplit(b":", 1)[1]) for member in live)
    client.set(key, usd_to_micro(spent) + held, ex=KEY_TTL_SECONDS, nx=True)


def budget_reserve(*, day: date, amount_micro: int, hold_id) -> bool:
    """Hold ``amount_micro`` of the day's budget; False (and nothing held) past the cap."""
    if amount_micro <= 0:
        return True
    keys, args = reserve_script_args(day=day, amount_micro=amount_micro, hold_id=hold_id)
    for _ in range(3):
        held = _script("reserve", RESERVE_LUA)(keys=keys, args=args)
        if held >= 0:
            return held == 1
        budget_counter_ensure(day)
    raise RuntimeError("budget counter unavailable")


def budget_settle(*, day: date, hold_id, reserved_micro: int, actual_micro: int) -> None:
    """Replace the hold by the actual cost (0: a release). Idempotent per hold."""
    if reserved_micro <= 0 and actual_micro <= 0:
        return
    keys, args = settle_script_item(
        day=day, hold_id=hold_id, reserved_micro=reserved_micro, actual_micro=actual_micro
    )
    overshoots = _script("settle", SETTLE_LUA)(keys=keys, args=[budget_cap_micro(), 1, *args])
    budget_overshoot_log(day=day, overshoot_micro=sum(int(o) for o in overshoots))


def budget_release(*, day: date, hold_id, amount_micro: int) -> None:
    budget_settle(day=day, hold_id=hold_id, reserved_micro=amount_micro, actual_micro=0)


def budget_overshoot_log(*, day: date, overshoot_micro: int) -> None:
    if overshoot_micro > 0:
        logger.error(
            "daily budget overshoot",
            extra={"day": day.isoformat(), "overshoot_usd": str(micro_to_usd(overshoot_micro))},
        )


def budget_holds_sweep(*, day: date, now: float | None = None) -> tuple[int, int]:
    """Undo the day's holds whose call cannot be running any more: (holds, micro-USD freed)."""
    keys = [cache_key(budget_key(day)), cache_key(budget_holds_key(day))]
    count, freed = _script("sweep", SWEEP_LUA)(keys=keys, args=[int(now if now is not None else time.time())])
    if count:
        logger.warning("released stale budget holds", extra={"count": count, "micro_usd": freed})
    return int(count), int(freed)


def budget_spent_get(*, day: date) -> int:
    """Live spend in micro-USD, reservations in flight included."""
    budget_counter_ensure(day)
    return int(_redis().get(cache_key(budget_key(day))) or 0)


def budget_overshoot_find(*, now) -> list[tuple[date, Decimal]]:
    """Days of the last week whose recorded spend passed today's cap: (day, overshoot USD)."""
    cap = Decimal(settings.DAILY_BUDGET_USD)
    since = now.date().toordinal() - 7
    rows = DailySpend.objects.filter(day__gte=date.fromordinal(since), spent_usd__gt=cap)
    return [(row.day, usd(row.spent_usd - cap)) for row in rows.order_by("day")]
