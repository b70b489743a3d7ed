import threading
from datetime import date
from decimal import Decimal

import pytest

from proxy.budget import budget_reserve, budget_settle, budget_spent_get, usd_to_micro
from proxy.models import DailySpend

DAY = date(2026, 1, 26)


@pytest.mark.django_db
def test_reserve_refuses_past_the_cap_and_holds_nothing(settings):
    settings.DAILY_BUDGET_USD = Decimal("0.01")  # 10 000 micro-USD

    assert budget_reserve(day=DAY, amount_micro=6000) is True
    assert budget_reserve(day=DAY, amount_micro=6000) is False
    assert budget_spent_get(day=DAY) == 6000
    budget_settle(day=DAY, reserved_micro=6000, actual_micro=1000)
    assert budget_spent_get(day=DAY) == 1000
    assert budget_reserve(day=DAY, amount_micro=9000) is True


@pytest.mark.django_db
def test_counter_is_rebuilt_from_the_database_when_the_cache_lost_it(settings):
    settings.DAILY_BUDGET_USD = Decimal("1")
    DailySpend.objects.create(day=DAY, spent_usd=Decimal("0.999"))

    assert budget_spent_get(day=DAY) == usd_to_micro(Decimal("0.999"))
    assert budget_reserve(day=DAY, amount_micro=2000) is False
    assert budget_reserve(day=DAY, amount_micro=1000) is True


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_reservations_never_pass_the_cap(settings):
    settings.DAILY_BUDGET_USD = Decimal("0.01")  # room for exactly 10 × 1 000 micro-USD
    budget_spent_get(day=DAY)
    barrier = threading.Barrier(50)
    results = []

    def worker():
        barrier.wait()
        results.append(budget_reserve(day=DAY, amount_micro=1000))

    threads = [threading.Thread(target=worker) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert results.count(True) == 10
    assert budget_spent_get(day=DAY) == 10_000
