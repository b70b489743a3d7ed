from datetime import UTC, datetime

import pytest
import time_machine

from billing.models import QuotaReservation, UsageCounter
from billing.services import QuotaExceeded, quota_release, quota_reserve, quota_settle

from ..factories import SubscriptionFactory, UserFactory

# Each test reserves in "this month" (or day), then reads that period's counter.
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("midday")]


def _counter(workspace, meter):
    return UsageCounter.objects.get(workspace=workspace, meter=meter)


def test_reserve_then_settle_charges_actual_and_frees_the_hold():
    workspace = UserFactory().personal_workspace
    reservation = quota_reserve(workspace=workspace, meter="llm_tokens", amount=1000)
    assert (_counter(workspace, "llm_tokens").used, _counter(workspace, "llm_tokens").reserved) == (0, 1000)

    quota_settle(reservation=reservation, actual=250)

    counter = _counter(workspace, "llm_tokens")
    assert (counter.used, counter.reserved) == (250, 0)
    reservation.refresh_from_db()
    assert reservation.status == QuotaReservation.Status.SETTLED
    assert reservation.actual == 250


def test_settle_and_release_run_once():
    workspace = UserFactory().personal_workspace
    reservation = quota_reserve(workspace=workspace, meter="llm_tokens", amount=100)
    quota_settle(reservation=reservation, actual=100)
    quota_settle(reservation=reservation, actual=100)
    quota_release(reservation=reservation)
    counter = _counter(workspace, "llm_tokens")
    assert (counter.used, counter.reserved) == (100, 0)


def test_release_returns_everything():
    workspace = UserFactory().personal_workspace
    reservation = quota_reserve(workspace=workspace, meter="llm_tokens", amount=5000)
    quota_release(reservation=reservation)
    quota_release(reservation=reservation)
    counter = _counter(workspace, "llm_tokens")
    assert (counter.used, counter.reserved) == (0, 0)
    assert QuotaReservation.objects.get(pk=reservation.pk).status == QuotaReservation.Status.RELEASED


def test_reserve_refuses_past_the_limit_counting_held_units():
    workspace = UserFactory().personal_workspace  # free plan: 100 000 tokens per month
    quota_reserve(workspace=workspace, meter="llm_tokens", amount=60_000)
    with pytest.raises(QuotaExceeded) as exc_info:
        quota_reserve(workspace=workspace, meter="llm_tokens", amount=40_001)
    status = exc_info.value.status
    assert exc_info.value.meter == "llm_tokens"
    assert (status.used, status.reserved, status.limit, status.remaining) == (0, 60_000, 100_000, 40_000)
    assert status.reset_at.day == 1
    # exactly the rest still fits
    quota_reserve(workspace=workspace, meter="llm_tokens", amount=40_000)
    assert _counter(workspace, "llm_tokens").reserved == 100_000


def test_meter_not_included_in_plan_is_refused():
    workspace = UserFactory().personal_workspace  # free plan: emails limit 0
    with pytest.raises(QuotaExceeded) as exc_info:
        quota_reserve(workspace=workspace, meter="emails", amount=1)
    assert exc_info.value.status.limit == 0


def test_unlimited_meter_always_reserves():
    workspace = UserFactory().personal_workspace
    SubscriptionFactory(workspace=workspace)  # business: requests unlimited
    reservation = quota_reserve(workspace=workspace, meter="requests", amount=10**9)
    quota_settle(reservation=reservation, actual=10**9)
    assert _counter(workspace, "requests").used == 10**9


def test_settle_above_reserved_is_capped_at_the_limit():
    workspace = UserFactory().personal_workspace
    first = quota_reserve(workspace=workspace, meter="llm_tokens", amount=90_000)
    quota_settle(reservation=first, actual=90_000)
    second = quota_reserve(workspace=workspace, meter="llm_tokens", amount=1_000)
    quota_settle(reservation=second, actual=50_000)  # the caller under-reserved
    assert _counter(workspace, "llm_tokens").used == 100_000


def test_month_rollover_is_exact_at_midnight_utc():
    workspace = UserFactory().personal_workspace
    with time_machine.travel(datetime(2026, 1, 31, 23, 59, 59, tzinfo=UTC), tick=False):
        quota_settle(
            reservation=quota_reserve(workspace=workspace, meter="llm_tokens", amount=100_000), actual=100_000
        )
        with pytest.raises(QuotaExceeded):
            quota_reserve(workspace=workspace, meter="llm_tokens", amount=1)
    with time_machine.travel(datetime(2026, 2, 1, 0, 0, 0, tzinfo=UTC), tick=False):
        reservation = quota_reserve(workspace=workspace, meter="llm_tokens", amount=1)
    counters = list(
        UsageCounter.objects.filter(workspace=workspace, meter="llm_tokens").order_by("period_start")
    )
    assert [(c.period_start.month, c.used, c.reserved) for c in counters] == [(1, 100_000, 0), (2, 0, 1)]
    assert reservation.counter_id == counters[1].pk


def test_day_rollover_for_daily_messages():
    workspace = UserFactory().personal_workspace  # free plan: 3 requests per day
    with time_machine.travel(datetime(2026, 3, 10, 23, 59, 59, tzinfo=UTC), tick=False):
        for _ in range(3):
            quota_settle(reservation=quota_reserve(workspace=workspace, meter="requests", amount=1), actual=1)
        with pytest.raises(QuotaExceeded) as exc_info:
            quota_reserve(workspace=workspace, meter="requests", amount=1)
        assert exc_info.value.status.reset_at == datetime(2026, 3, 11, tzinfo=UTC)
    with time_machine.travel(datetime(2026, 3, 11, 0, 0, 0, tzinfo=UTC), tick=False):
        quota_reserve(workspace=workspace, meter="requests", amount=1)
    assert UsageCounter.objects.filter(workspace=workspace, meter="requests").count() == 2


def test_reserve_hot_path_query_count(django_assert_max_num_queries):
    workspace = UserFactory().personal_workspace
    quota_reserve(workspace=workspace, meter="llm_tokens", amount=1)  # warms the plan caches and counter
    with django_assert_max_num_queries(5):  # counter id, savepoint, update, insert, release
        reservation = quota_reserve(workspace=workspace, meter="llm_tokens", amount=1)
    with django_assert_max_num_queries(6):  # savepoint, status update, counter update, alert read
        quota_settle(reservation=reservation, actual=1)
