"""A fast-lane worker's slice of the day's budget (``proxy.fastlane._BudgetSlices``).

The day's budget counter lives in Redis; each test runs its holds on its own event loop and
closes that loop's pool and Redis client before the loop ends.
"""

import asyncio
import threading
from decimal import Decimal

import pytest
from django.utils import timezone

from core.fastio import fast_lane_close
from proxy import budget, fastlane

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

AMOUNT = 1_000  # micro-USD per call


@pytest.fixture
def sliced(midday, settings):
    settings.PROXY_FAST_LANE = True
    settings.PROXY_BUDGET_SLICE = 4
    settings.PROXY_QUOTA_BATCH_IDLE = 60.0
    settings.PROXY_QUOTA_BATCH_MAX_AGE = 60.0
    day = timezone.now().date()
    budget.budget_counter_ensure(day)
    return day


def _cap(settings, calls: int) -> None:
    settings.DAILY_BUDGET_USD = Decimal(calls * AMOUNT) / Decimal(1_000_000)


def _run(main):
    async def wrapped():
        try:
            return await main()
        finally:
            await fastlane.budget_slices_drain()
            await fast_lane_close()

    return asyncio.run(wrapped())


def _counting_scripts(monkeypatch) -> list[str]:
    names: list[str] = []
    real = fastlane._script_run

    def counting(name, lua, **kwargs):
        names.append(name)
        return real(name, lua, **kwargs)

    monkeypatch.setattr(fastlane, "_script_run", counting)
    return names


def test_a_slice_serves_the_next_calls_and_goes_back_whole(sliced, settings, monkeypatch):
    _cap(settings, 1_000)
    scripts = _counting_scripts(monkeypatch)
    seen = {}

    async def main():
        held = [await fastlane._budget_reserve(day=sliced, amount_micro=AMOUNT) for _ in range(5)]
        seen["counter"] = await asyncio.to_thread(budget.budget_spent_get, day=sliced)
        seen["scripts"] = scripts.count("budget")
        return held

    assert _run(main) == [True] * 5
    assert seen["scripts"] == 1  # the first call's hold took four calls' worth more
    assert seen["counter"] == 5 * AMOUNT
    assert budget.budget_spent_get(day=sliced) == 5 * AMOUNT  # nothing left to give back: all used


def test_near_the_cap_each_call_holds_alone_and_the_cap_still_refuses(sliced, settings, monkeypatch):
    """A slice needs four times its size free: with room for 10 calls, 4 calls' worth is too much."""
    _cap(settings, 10)
    scripts = _counting_scripts(monkeypatch)

    async def main():
        return [await fastlane._budget_reserve(day=sliced, amount_micro=AMOUNT) for _ in range(12)]

    assert _run(main) == [True] * 10 + [False] * 2
    assert scripts.count("budget") == 12
    assert budget.budget_spent_get(day=sliced) == 10 * AMOUNT


def test_a_failed_calls_hold_goes_back_through_the_slice(sliced, settings):
    _cap(settings, 1_000)
    seen = {}

    async def main():
        await fastlane._budget_reserve(day=sliced, amount_micro=AMOUNT)  # the slice holds 4 more
        await fastlane._budget_release(day=sliced, amount_micro=AMOUNT)  # into the slice
        seen["counter"] = await asyncio.to_thread(budget.budget_spent_get, day=sliced)

    _run(main)

    assert seen["counter"] == 5 * AMOUNT  # still held, by the slice
    assert budget.budget_spent_get(day=sliced) == 0  # given back at the drain


def test_two_workers_racing_never_pass_the_cap(sliced, settings):
    _cap(settings, 100)
    granted: list[bool] = []
    lock = threading.Lock()

    async def holds():
        results = await asyncio.gather(
            *(fastlane._budget_reserve(day=sliced, amount_micro=AMOUNT) for _ in range(80))
        )
        with lock:
            granted.extend(results)

    workers = [threading.Thread(target=_run, args=(holds,)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)

    assert len(granted) == 160
    assert 0 < granted.count(True) <= 100
    assert budget.budget_spent_get(day=sliced) == granted.count(True) * AMOUNT
