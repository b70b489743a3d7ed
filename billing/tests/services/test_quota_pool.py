"""Spare quota reservations reserved in batches by one worker (``billing.quota_pool``).

Each test runs its calls on its own event loop with the fast lane's PostgreSQL pool, which it
closes before the loop ends. Statements are counted by wrapping ``core.fastio.db_fetch``.
"""

import asyncio
import threading
import uuid
from datetime import timedelta

import pytest
import time_machine
from asgiref.sync import sync_to_async
from django.core.cache import cache
from django.db import connection
from django.utils import timezone

from billing import quota_pool
from billing.models import PlanQuota, QuotaReservation, UsageCounter
from billing.selectors import CATALOG_VERSION_KEY, plan_for_workspace_get
from billing.services import (
    quota_release_many,
    quota_reserve_many,
    quota_reserve_many_fast,
    quota_settle_many,
)
from core import fastio
from core.fastio import fast_lane_close
from core.lifecycle import shutdown_run

from ..factories import UserFactory

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("midday"),
]

CALL = {"requests": 1, "llm_tokens": 40}


@pytest.fixture
def pooled(settings):
    settings.PROXY_QUOTA_BATCH = 4
    settings.PROXY_QUOTA_BATCH_IDLE = 60.0
    settings.PROXY_QUOTA_BATCH_MAX_AGE = 60.0
    return settings


@pytest.fixture
def statements(monkeypatch):
    """SQL of every fast-lane statement run (the pool imports ``db_fetch`` when it runs)."""
    seen: list[str] = []
    real = fastio.db_fetch

    async def counting(sql, params=(), **kwargs):
        seen.append(sql)
        return await real(sql, params, **kwargs)

    monkeypatch.setattr(fastio, "db_fetch", counting)
    return seen


def _limits(**limits):
    """The free plan (every test workspace's) with these limits; every process reloads it."""
    for meter, limit in limits.items():
        PlanQuota.objects.filter(plan__code="free", meter=meter).update(limit=limit)
    cache.set(CATALOG_VERSION_KEY, uuid.uuid4().hex, None)


def _workspace_with_counters(**limits):
    """A workspace whose counters of this period exist (the batch statement never creates them)."""
    _limits(**limits)
    workspace = UserFactory().personal_workspace
    quota_release_many(reservations=quota_reserve_many(workspace=workspace, meters=CALL))
    return workspace, plan_for_workspace_get(workspace=workspace)


def _run(main):
    async def wrapped():
        try:
            return await main()
        finally:
            await quota_pool.quota_pool_drain()
            await fast_lane_close()

    return asyncio.run(wrapped())


async def _lone(workspace, plan):
    """A first call: it gets no spares (the caller reserves alone), but the next call will."""
    assert await _take(workspace, plan) is None


async def _take(workspace, plan, meters=CALL):
    return await quota_pool.quota_reserve_pooled(
        workspace_id=workspace.pk, meters=meters, plan=plan, now=timezone.now(), synchronous_commit=False
    )


def _counters(workspace):
    return {c.meter: (c.used, c.reserved) for c in UsageCounter.objects.filter(workspace=workspace)}


def _held(workspace) -> int:
    return QuotaReservation.objects.filter(workspace=workspace, status="held").count()


def _in_thread(read):
    def run(*args):
        try:
            return read(*args)
        finally:
            connection.close()

    return sync_to_async(run, thread_sensitive=False)


_acounters = _in_thread(_counters)
_aheld = _in_thread(_held)


def test_size_classes_cover_a_call_with_at_most_a_quarter_more():
    for units in range(0, 20_000):
        size = quota_pool.size_class(units)
        assert units <= size <= units * 1.25
    assert quota_pool.size_class(50) == quota_pool.size_class(55)


def test_one_statement_reserves_the_call_and_spares_for_the_next_calls(pooled, statements):
    workspace, plan = _workspace_with_counters(llm_tokens=100_000, requests=None)
    seen: dict = {}

    async def main():
        await _lone(workspace, plan)
        first = await _take(workspace, plan)
        seen["after_first"] = (len(statements), await _acounters(workspace), await _aheld(workspace))
        rest = [await _take(workspace, plan) for _ in range(4)]  # the 4 spares
        seen["after_spares"] = len(statements)
        extra = await _take(workspace, plan)  # none left: a new batch
        seen["after_extra"] = len(statements)
        return [first, *rest, extra]

    bundles = _run(main)

    assert seen["after_first"][0] == 1
    assert seen["after_first"][1] == {"requests": (0, 5), "llm_tokens": (0, 5 * 40)}
    assert seen["after_first"][2] == 10  # 5 bundles × 2 meters, each a held row
    assert seen["after_spares"] == 1
    assert seen["after_extra"] == 2
    assert all({r.meter for r in bundle} == {"requests", "llm_tokens"} for bundle in bundles)
    assert len({r.pk for bundle in bundles for r in bundle}) == 12
    # The drain at the end released the spares the last batch left; the 6 calls still hold theirs.
    assert _counters(workspace) == {"requests": (0, 6), "llm_tokens": (0, 6 * 40)}
    assert _held(workspace) == 12


def test_more_calls_waiting_than_one_batch_holds_all_get_reservations(pooled, statements):
    workspace, plan = _workspace_with_counters(llm_tokens=100_000, requests=None)

    async def main():
        await _lone(workspace, plan)
        return await asyncio.gather(*(_take(workspace, plan) for _ in range(quota_pool.BATCH_MAX + 6)))

    bundles = _run(main)

    assert all(bundle is not None for bundle in bundles)
    assert len({r.pk for bundle in bundles for r in bundle}) == 2 * len(bundles)
    reserves = [sql for sql in statements if "generate_series" in sql]
    assert len(reserves) == 2  # a full batch, then one for the calls it could not serve


def test_a_workspace_calling_less_often_than_the_idle_time_gets_no_spares(pooled, statements):
    pooled.PROXY_QUOTA_BATCH_IDLE = 0.2
    workspace, plan = _workspace_with_counters(llm_tokens=100_000, requests=None)

    async def main():
        await _lone(workspace, plan)
        await asyncio.sleep(0.3)
        return await _take(workspace, plan)

    assert _run(main) is None  # reserves alone: its spares would be released before the next call
    assert statements == []


def test_near_the_limit_calls_reserve_alone_and_the_refusal_is_remembered(pooled, statements):
    """A batch may take at most a quarter of what is left: 5 × 40 tokens need 800 free."""
    workspace, plan = _workspace_with_counters(llm_tokens=700, requests=None)

    async def main():
        await _lone(workspace, plan)
        first = await _take(workspace, plan)
        after_first = len(statements)
        second = await _take(workspace, plan)
        return first, after_first, second, len(statements)

    first, after_first, second, after_second = _run(main)

    assert first is None and second is None  # the caller reserves alone
    assert after_first == 2  # the refused batch, then the release of the meter that fitted
    assert after_second == 2  # not asked again within REFUSAL_MEMORY_SECONDS
    assert _counters(workspace) == {"requests": (0, 0), "llm_tokens": (0, 0)}
    assert _held(workspace) == 0


def test_two_workers_racing_never_pass_the_limit(pooled):
    """Two event loops (two workers), 80 calls each, quota for 100 calls of 40 tokens."""
    workspace, plan = _workspace_with_counters(llm_tokens=4_000, requests=None)
    admitted: list = []
    lock = threading.Lock()

    async def one_call():
        held = await _take(workspace, plan)
        if held is None:
            held = await quota_reserve_many_fast(
                workspace_id=workspace.pk,
                meters=CALL,
                plan=plan,
                now=timezone.now(),
                synchronous_commit=False,
            )
        if held is not None:
            with lock:
                admitted.append(held)

    async def calls():
        await asyncio.gather(*(one_call() for _ in range(80)))

    workers = [threading.Thread(target=_run, args=(calls,)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)

    assert 0 < len(admitted) <= 100
    assert _counters(workspace) == {"requests": (0, len(admitted)), "llm_tokens": (0, 40 * len(admitted))}
    for held in admitted:
        quota_settle_many(reservations=held, actual={"requests": 1, "llm_tokens": 40})
    assert _counters(workspace) == {"requests": (len(admitted), 0), "llm_tokens": (40 * len(admitted), 0)}
    assert _held(workspace) == 0


def test_idle_spares_are_released(pooled):
    pooled.PROXY_QUOTA_BATCH_IDLE = 0.2
    workspace, plan = _workspace_with_counters(llm_tokens=100_000, requests=None)

    async def main():
        await _lone(workspace, plan)
        await _take(workspace, plan)
        before = await _acounters(workspace)
        await asyncio.sleep(0.6)
        return before, await _acounters(workspace), await _aheld(workspace)

    before, after, held = _run(main)

    assert before["llm_tokens"] == (0, 5 * 40)
    assert after == {"requests": (0, 1), "llm_tokens": (0, 40)}  # only the call's own hold
    assert held == 2


def test_a_spare_is_not_handed_out_after_its_max_age(pooled, statements):
    pooled.PROXY_QUOTA_BATCH_MAX_AGE = 0.2
    workspace, plan = _workspace_with_counters(llm_tokens=100_000, requests=None)

    async def main():
        await _lone(workspace, plan)
        await _take(workspace, plan)
        await asyncio.sleep(0.3)
        await _take(workspace, plan)
        return len(statements)

    assert _run(main) == 2  # a new batch, not an old spare
    assert _counters(workspace) == {"requests": (0, 2), "llm_tokens": (0, 80)}
    assert _held(workspace) == 4


def test_a_call_cancelled_while_waiting_for_a_batch_leaves_nothing_held(pooled):
    workspace, plan = _workspace_with_counters(llm_tokens=100_000, requests=None)

    async def main():
        await _lone(workspace, plan)
        kept = asyncio.ensure_future(_take(workspace, plan))
        cancelled = asyncio.ensure_future(_take(workspace, plan))
        await asyncio.sleep(0)  # both wait for the same batch
        cancelled.cancel()
        return await kept

    kept = _run(main)

    assert {r.meter for r in kept} == {"requests", "llm_tokens"}
    assert _counters(workspace) == {"requests": (0, 1), "llm_tokens": (0, 40)}
    assert _held(workspace) == 2


def test_a_stopping_worker_releases_its_spares(pooled):
    workspace, plan = _workspace_with_counters(llm_tokens=100_000, requests=None)

    async def main():
        await _lone(workspace, plan)
        await _take(workspace, plan)
        await shutdown_run()  # the lifespan shutdown: drains, then closes the pool

    asyncio.run(main())

    assert _counters(workspace) == {"requests": (0, 1), "llm_tokens": (0, 40)}
    assert _held(workspace) == 2


def test_a_failing_batch_statement_lets_the_call_reserve_alone(pooled, monkeypatch, caplog):
    workspace, plan = _workspace_with_counters(llm_tokens=100_000, requests=None)
    real = fastio.db_fetch

    async def failing(sql, params=(), **kwargs):
        if "generate_series" in sql:
            raise ConnectionError("connection lost")
        return await real(sql, params, **kwargs)

    monkeypatch.setattr(fastio, "db_fetch", failing)

    async def main():
        await _lone(workspace, plan)
        return await _take(workspace, plan)

    assert _run(main) is None  # the caller reserves alone (and meets the error there)
    assert "spare quota reservations not reserved" in caplog.text
    assert _held(workspace) == 0


def _counters_create(workspace) -> None:
    quota_release_many(reservations=quota_reserve_many(workspace=workspace, meters=CALL))


def test_spares_of_yesterday_are_never_handed_out_today(pooled):
    """``requests`` is a daily meter: after midnight UTC a call gets today's counter, even from
    a worker that still holds spares taken a second before midnight."""
    _limits(llm_tokens=100_000, requests=1_000)
    workspace = UserFactory().personal_workspace
    late = timezone.now().replace(hour=23, minute=59, second=59, microsecond=0)
    with time_machine.travel(late, tick=True):
        _counters_create(workspace)
        plan = plan_for_workspace_get(workspace=workspace)

    async def main():
        with time_machine.travel(late, tick=True):
            await _lone(workspace, plan)
            before = await _take(workspace, plan)
        with time_machine.travel(late + timedelta(seconds=2), tick=True):
            await _in_thread(_counters_create)(workspace)  # today's counters exist
            await _lone(workspace, plan)  # today's first call of this size in this worker
            after = await _take(workspace, plan)
        return before, after

    before, after = _run(main)

    yesterday = {r.meter: r.counter_id for r in before}
    today = {r.meter: r.counter_id for r in after}
    assert today["requests"] != yesterday["requests"]  # today's counter, not a spare of yesterday
    assert today["llm_tokens"] == yesterday["llm_tokens"]  # the month goes on
    assert _held(workspace) == 4  # the two calls' own holds; yesterday's spares were released
