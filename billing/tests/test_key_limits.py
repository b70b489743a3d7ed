"""An API key's own limits: reserve (all or nothing, counters created on first use), settle to
actual, release, once each, and the stale sweep (PostgreSQL)."""

from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings

from accounts.tests.factories import api_key_for
from billing.models import KeyUsageCounter, KeyUsageHold
from billing.services import (
    KeyLimitExceeded,
    KeyLimitReading,
    key_holds_release,
    key_holds_settle,
    key_limits_reserve,
    quota_reservations_release_stale,
)
from billing.services.key_limits import TOTAL_PERIOD_START, key_limit_period

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

NOON = datetime(2026, 3, 14, 12, 0, tzinfo=UTC)
LIMITS = (("requests", "day", 2), ("tokens", "month", 1000))


@pytest.fixture
def api_key(db):
    return api_key_for()[0]


def _state(api_key) -> dict:
    return {(c.unit, c.window): (c.used, c.reserved) for c in KeyUsageCounter.objects.filter(api_key=api_key)}


def test_periods():
    assert key_limit_period(window="day", now=NOON) == (
        datetime(2026, 3, 14, tzinfo=UTC),
        datetime(2026, 3, 15, tzinfo=UTC),
    )
    assert key_limit_period(window="month", now=NOON) == (
        datetime(2026, 3, 1, tzinfo=UTC),
        datetime(2026, 4, 1, tzinfo=UTC),
    )
    assert key_limit_period(window="total", now=NOON) == (TOTAL_PERIOD_START, None)


def test_reserve_creates_the_counters_and_settles_to_actual(api_key):
    holds = key_limits_reserve(
        api_key_id=api_key.pk, limits=LIMITS, meters={"requests": 1, "llm_tokens": 300}, now=NOON
    )
    assert _state(api_key) == {("requests", "day"): (0, 1), ("tokens", "month"): (0, 300)}

    key_holds_settle(holds=holds, meters={"requests": 1, "llm_tokens": 120}, now=NOON)
    key_holds_settle(holds=holds, meters={"requests": 1, "llm_tokens": 120}, now=NOON)  # once

    assert _state(api_key) == {("requests", "day"): (1, 0), ("tokens", "month"): (120, 0)}
    assert sorted(KeyUsageHold.objects.values_list("status", "actual")) == [("settled", 1), ("settled", 120)]


def test_all_or_nothing_when_one_limit_does_not_fit(api_key):
    with pytest.raises(KeyLimitExceeded) as refused:
        key_limits_reserve(
            api_key_id=api_key.pk, limits=LIMITS, meters={"requests": 1, "llm_tokens": 1001}, now=NOON
        )
    status = refused.value.status
    assert (status.unit, status.window, status.limit, status.used) == ("tokens", "month", 1000, 0)
    assert status.resets_at == datetime(2026, 4, 1, tzinfo=UTC)
    assert _state(api_key) == {("requests", "day"): (0, 0), ("tokens", "month"): (0, 0)}
    assert not KeyUsageHold.objects.exists()


def test_in_flight_holds_count_and_a_release_gives_them_back(api_key):
    meters = {"requests": 1, "llm_tokens": 10}
    first = key_limits_reserve(api_key_id=api_key.pk, limits=LIMITS, meters=meters, now=NOON)
    key_limits_reserve(api_key_id=api_key.pk, limits=LIMITS, meters=meters, now=NOON)
    with pytest.raises(KeyLimitExceeded) as refused:
        key_limits_reserve(api_key_id=api_key.pk, limits=LIMITS, meters=meters, now=NOON)
    assert (refused.value.status.unit, refused.value.status.used) == ("requests", 2)

    key_holds_release(holds=first, now=NOON)
    key_holds_release(holds=first, now=NOON)  # once

    assert _state(api_key)[("requests", "day")] == (0, 1)
    key_limits_reserve(api_key_id=api_key.pk, limits=LIMITS, meters=meters, now=NOON)


def test_the_next_day_is_a_new_counter(api_key):
    meters = {"requests": 1, "llm_tokens": 0}
    limits = (("requests", "day", 1),)
    key_holds_settle(
        holds=key_limits_reserve(api_key_id=api_key.pk, limits=limits, meters=meters, now=NOON),
        meters=meters,
        now=NOON,
    )
    with pytest.raises(KeyLimitExceeded):
        key_limits_reserve(api_key_id=api_key.pk, limits=limits, meters=meters, now=NOON)
    assert key_limits_reserve(
        api_key_id=api_key.pk, limits=limits, meters=meters, now=NOON + timedelta(days=1)
    )


def test_the_stale_sweep_releases_a_dead_callers_key_holds(api_key):
    key_limits_reserve(
        api_key_id=api_key.pk, limits=LIMITS, meters={"requests": 1, "llm_tokens": 50}, now=NOON
    )

    quota_reservations_release_stale(now=NOON + timedelta(seconds=settings.STALE_RESERVATION_SECONDS - 1))
    assert _state(api_key)[("requests", "day")] == (0, 1)

    quota_reservations_release_stale(now=NOON + timedelta(seconds=settings.STALE_RESERVATION_SECONDS + 1))
    assert _state(api_key) == {("requests", "day"): (0, 0), ("tokens", "month"): (0, 0)}
    assert set(KeyUsageHold.objects.values_list("status", flat=True)) == {"released"}


def test_credit_and_money_limits_count_the_charge_and_settle_says_where_each_limit_stands(api_key):
    limits = (("credits", "day", 10), ("money", "month", 5))  # money: 5 cents
    meters = {"requests": 1, "llm_tokens": 40, "charge_credits": 4, "charge_micros": 40_000}
    holds = key_limits_reserve(api_key_id=api_key.pk, limits=limits, meters=meters, currency="eur", now=NOON)
    assert _state(api_key) == {("credits", "day"): (0, 4), ("money", "month"): (0, 40_000)}

    readings = key_holds_settle(
        holds=holds,
        meters={"requests": 1, "llm_tokens": 15, "charge_credits": 2, "charge_micros": 20_000},
        currency="eur",
        now=NOON,
    )

    assert _state(api_key) == {("credits", "day"): (2, 0), ("money", "month"): (20_000, 0)}
    day, month = datetime(2026, 3, 14, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)
    assert sorted(readings, key=lambda r: r.unit) == [
        KeyLimitReading(unit="credits", window="day", period_start=day, used=2, limit=10),
        KeyLimitReading(unit="money", window="month", period_start=month, used=2, limit=5, currency="eur"),
    ]
    assert key_holds_settle(holds=holds, meters={}, currency="eur", now=NOON) == []  # once

    with pytest.raises(KeyLimitExceeded) as refused:  # 2 + 4 cents would pass 5
        key_limits_reserve(api_key_id=api_key.pk, limits=limits, meters=meters, currency="eur", now=NOON)
    status = refused.value.status
    assert (status.unit, status.limit, status.used, status.currency) == ("money", 5, 2, "eur")


def test_a_money_limit_in_a_zero_decimal_currency(api_key):
    limits = (("money", "total", 3),)  # 3 yen
    meters = {"charge_micros": 1_500_000}  # 1.5 yen
    key_limits_reserve(api_key_id=api_key.pk, limits=limits, meters=meters, currency="jpy", now=NOON)
    key_limits_reserve(api_key_id=api_key.pk, limits=limits, meters=meters, currency="jpy", now=NOON)
    with pytest.raises(KeyLimitExceeded) as refused:
        key_limits_reserve(api_key_id=api_key.pk, limits=limits, meters=meters, currency="jpy", now=NOON)
    assert (refused.value.status.limit, refused.value.status.used) == (3, 3)
