from datetime import timedelta

import pytest
from django.utils import timezone

from billing.models import Meter, PlanQuota, UsageCounter
from billing.selectors import period_bounds
from dashboards.selectors import customer
from dashboards.tests.factories import ApiKeyFactory, RollupFactory, UsageEventFactory

pytestmark = pytest.mark.django_db


def _counter(user, meter, used, now, reserved=0):
    quota = PlanQuota.objects.get(plan__code="free", meter=meter)
    start, end = period_bounds(period=quota.period, now=now)
    UsageCounter.objects.create(
        user=user,
        meter=meter,
        period=quota.period,
        period_start=start,
        period_end=end,
        used=used,
        reserved=reserved,
    )
    return quota


@pytest.mark.parametrize(
    ("share", "level", "percent"),
    [(0, "ok", 0), (79, "ok", 79), (80, "warn", 80), (99, "warn", 99), (100, "full", 100)],
)
def test_quota_bar_colours_at_80_and_100_percent(user, share, level, percent):
    now = timezone.now()
    quota = PlanQuota.objects.filter(plan__code="free", limit__gt=0).order_by("meter").first()
    assert quota is not None, "the free plan has a limited meter"
    PlanQuota.objects.filter(pk=quota.pk).update(limit=1000)
    # The plan catalogue is reloaded: every test starts with an empty cache (new version).
    _counter(user, quota.meter, used=share * 10 - 5 if share else 0, now=now, reserved=5 if share else 0)
    bar = next(b for b in customer.quota_bars_get(user=user, now=now) if b.meter == quota.meter)
    assert (bar.level, bar.percent, bar.limit) == (level, percent, 1000)
    assert bar.used == share * 10  # reservations in flight count as used
    assert bar.remaining == 1000 - share * 10


def test_daily_series_fills_missing_days_and_sums_providers(user, other_user):
    today = timezone.now().date()
    RollupFactory(user=user, provider="groq", day=today, tokens=100, emails=0, requests=2)
    RollupFactory(user=user, provider="instantly", day=today, tokens=0, emails=3, requests=3)
    RollupFactory(user=user, provider="groq", day=today - timedelta(days=29), tokens=7)
    RollupFactory(user=user, provider="groq", day=today - timedelta(days=30), tokens=999)  # outside
    RollupFactory(user=other_user, provider="groq", day=today, tokens=5000)  # someone else
    series = customer.usage_daily_series_get(user=user, today=today)
    assert len(series) == 30
    assert series[0].day == today - timedelta(days=29) and series[0].tokens == 7
    assert (series[-1].tokens, series[-1].emails, series[-1].requests) == (100, 3, 5)
    assert sum(d.tokens for d in series) == 107


def test_provider_totals(user):
    today = timezone.now().date()
    RollupFactory(user=user, provider="groq", day=today, requests=2, errors=1)
    RollupFactory(user=user, provider="groq", day=today - timedelta(days=1), requests=3)
    RollupFactory(user=user, provider="openai", day=today, requests=1)
    assert [
        (r["provider"], r["requests"], r["errors"])
        for r in customer.usage_provider_totals_get(user=user, today=today)
    ] == [("groq", 5, 1), ("openai", 1, 0)]


def test_recent_calls_are_the_users_newest_hundred(user, other_user, django_assert_num_queries):
    now = timezone.now()
    UsageEventFactory.create_batch(3, user=other_user)
    for i in range(105):
        UsageEventFactory(user=user, created_at=now - timedelta(seconds=i), total_tokens=i)
    with django_assert_num_queries(1):
        calls = list(customer.usage_recent_calls_list(user=user))
    assert len(calls) == 100
    assert [c.total_tokens for c in calls[:3]] == [0, 1, 2]
    assert {c.user_id for c in calls} == {user.pk}


def test_recent_calls_filter_by_http_status(user):
    key = ApiKeyFactory(user=user)
    UsageEventFactory(user=user, api_key=key, status_code=402, error_code="insufficient_credits")
    UsageEventFactory(user=user, api_key=key, status_code=429)
    assert [c.status_code for c in customer.usage_recent_calls_list(user=user, status="402")] == [402]
    assert len(customer.usage_recent_calls_list(user=user, api_key_id=key.pk, status="error")) == 2


def test_plan_card_for_free_user(user):
    now = timezone.now()
    card = customer.plan_card_get(user=user, now=now)
    assert card.plan.code == "free" and card.status == "free" and not card.has_subscription
    assert card.quota_reset_at.day == 1 and card.quota_reset_at > now
    assert Meter.LLM_TOKENS in {b.meter for b in customer.quota_bars_get(user=user, now=now)}
