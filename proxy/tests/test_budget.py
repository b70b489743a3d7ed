import threading
import time
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from django.core.cache import cache

from core.fastio import cache_key
from proxy.budget import (
    budget_holds_sweep,
    budget_key,
    budget_overshoot_find,
    budget_release,
    budget_reserve,
    budget_settle,
    budget_spent_get,
    usd_to_micro,
)
from proxy.models import DailySpend

DAY = date(2026, 1, 26)


@pytest.mark.django_db
def test_reserve_refuses_past_the_cap_and_holds_nothing(settings):
    settings.DAILY_BUDGET_USD = Decimal("0.01")  # 10 000 micro-USD

    assert budget_reserve(day=DAY, amount_micro=6000, hold_id="a") is True
    assert budget_reserve(day=DAY, amount_micro=6000, hold_id="b") is False
    assert budget_spent_get(day=DAY) == 6000
    budget_settle(day=DAY, hold_id="a", reserved_micro=6000, actual_micro=1000)
    assert budget_spent_get(day=DAY) == 1000
    assert budget_reserve(day=DAY, amount_micro=9000, hold_id="c") is True


@pytest.mark.django_db
def test_counter_is_rebuilt_from_the_database_when_the_cache_lost_it(settings):
    settings.DAILY_BUDGET_USD = Decimal("1")
    DailySpend.objects.create(day=DAY, spent_usd=Decimal("0.999"))

    assert budget_spent_get(day=DAY) == usd_to_micro(Decimal("0.999"))
    assert budget_reserve(day=DAY, amount_micro=2000, hold_id="a") is False
    assert budget_reserve(day=DAY, amount_micro=1000, hold_id="b") is True


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_reservations_never_pass_the_cap(settings):
    settings.DAILY_BUDGET_USD = Decimal("0.01")  # room for exactly 10 × 1 000 micro-USD
    budget_spent_get(day=DAY)
    barrier = threading.Barrier(50)
    results = []

    def worker(index):
        barrier.wait()
        results.append(budget_reserve(day=DAY, amount_micro=1000, hold_id=index))

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert results.count(True) == 10
    assert budget_spent_get(day=DAY) == 10_000


@pytest.mark.django_db
def test_a_hold_is_undone_once_whoever_undoes_it(settings):
    settings.DAILY_BUDGET_USD = Decimal("0.01")
    assert budget_reserve(day=DAY, amount_micro=4000, hold_id="a") is True

    budget_release(day=DAY, hold_id="a", amount_micro=4000)
    budget_release(day=DAY, hold_id="a", amount_micro=4000)  # a second exit path: no effect
    budget_settle(day=DAY, hold_id="a", reserved_micro=4000, actual_micro=0)

    assert budget_spent_get(day=DAY) == 0


@pytest.mark.django_db
def test_the_sweeper_frees_the_holds_of_a_call_that_died(settings):
    settings.DAILY_BUDGET_USD = Decimal("0.01")
    settings.STALE_RESERVATION_SECONDS = 600
    assert budget_reserve(day=DAY, amount_micro=4000, hold_id="died") is True
    assert budget_reserve(day=DAY, amount_micro=3000, hold_id="live") is True

    assert budget_holds_sweep(day=DAY, now=time.time() + 60) == (0, 0)  # both still running
    assert budget_holds_sweep(day=DAY, now=time.time() + 601) == (2, 7000)
    assert budget_spent_get(day=DAY) == 0
    # The swept call settling late adds its actual cost alone, not minus a hold it no longer has.
    budget_settle(day=DAY, hold_id="died", reserved_micro=4000, actual_micro=1500)
    assert budget_spent_get(day=DAY) == 1500


@pytest.mark.django_db
def test_a_rebuilt_counter_counts_the_live_holds(settings):
    settings.DAILY_BUDGET_USD = Decimal("1")
    DailySpend.objects.create(day=DAY, spent_usd=Decimal("0.5"))
    assert budget_reserve(day=DAY, amount_micro=200_000, hold_id="a") is True
    cache.client.get_client().delete(cache_key(budget_key(DAY)))  # Redis lost the counter

    assert budget_spent_get(day=DAY) == 700_000


@pytest.mark.django_db
def test_a_settle_past_the_cap_is_logged_and_flagged(settings, caplog):
    settings.DAILY_BUDGET_USD = Decimal("0.01")
    assert budget_reserve(day=DAY, amount_micro=9000, hold_id="a") is True

    budget_settle(day=DAY, hold_id="a", reserved_micro=9000, actual_micro=12_000)
    DailySpend.objects.create(day=DAY, spent_usd=Decimal("0.012"))

    assert any(r.getMessage() == "daily budget overshoot" for r in caplog.records)
    now = datetime(DAY.year, DAY.month, DAY.day, 12, tzinfo=UTC)
    assert budget_overshoot_find(now=now) == [(DAY, Decimal("0.002000"))]
