from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import Role
from billing.models import Meter, PlanQuota, UsageCounter
from billing.selectors import period_bounds
from dashboards.selectors import customer
from dashboards.tests.factories import ApiKeyFactory, RollupFactory, UsageEventFactory, team_workspace_create

pytestmark = pytest.mark.django_db


def _counter(workspace, meter, used, now, reserved=0):
    quota = PlanQuota.objects.get(plan__code="free", meter=meter)
    start, end = period_bounds(period=quota.period, now=now)
    UsageCounter.objects.create(
        workspace=workspace,
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
def test_quota_bar_colours_at_80_and_100_percent(workspace, share, level, percent):
    now = timezone.now()
    quota = PlanQuota.objects.filter(plan__code="free", limit__gt=0).order_by("meter").first()
    assert quota is not None, "the free plan has a limited meter"
    PlanQuota.objects.filter(pk=quota.pk).update(limit=1000)
    # The plan catalogue is reloaded: every test starts with an empty cache (new version).
    _counter(workspace, quota.meter, used=share * 10 - 5 if share else 0, now=now, reserved=5 if share else 0)
    bar = next(b for b in customer.quota_bars_get(workspace=workspace, now=now) if b.meter == quota.meter)
    assert (bar.level, bar.percent, bar.limit) == (level, percent, 1000)
    assert bar.used == share * 10  # reservations in flight count as used
    assert bar.remaining == 1000 - share * 10


def test_daily_series_fills_missing_days_and_sums_providers(workspace, other_workspace):
    today = timezone.now().date()
    RollupFactory(workspace=workspace, provider="groq", day=today, tokens=100, emails=0, requests=2)
    RollupFactory(workspace=workspace, provider="instantly", day=today, tokens=0, emails=3, requests=3)
    RollupFactory(workspace=workspace, provider="groq", day=today - timedelta(days=29), tokens=7)
    RollupFactory(workspace=workspace, provider="groq", day=today - timedelta(days=30), tokens=999)  # outside
    RollupFactory(workspace=other_workspace, provider="groq", day=today, tokens=5000)  # someone else
    series = customer.usage_daily_series_get(workspace=workspace, today=today)
    assert len(series) == 30
    assert series[0].day == today - timedelta(days=29) and series[0].tokens == 7
    assert (series[-1].tokens, series[-1].emails, series[-1].requests) == (100, 3, 5)
    assert sum(d.tokens for d in series) == 107


def test_provider_totals(workspace):
    today = timezone.now().date()
    RollupFactory(workspace=workspace, provider="groq", day=today, requests=2, errors=1)
    RollupFactory(workspace=workspace, provider="groq", day=today - timedelta(days=1), requests=3)
    RollupFactory(workspace=workspace, provider="openai", day=today, requests=1)
    assert [
        (r["provider"], r["requests"], r["errors"])
        for r in customer.usage_provider_totals_get(workspace=workspace, today=today)
    ] == [("groq", 5, 1), ("openai", 1, 0)]


def test_recent_calls_are_the_workspaces_newest_ten(workspace, other_workspace, django_assert_num_queries):
    now = timezone.now()
    UsageEventFactory.create_batch(3, workspace=other_workspace)
    for i in range(15):
        UsageEventFactory(workspace=workspace, created_at=now - timedelta(seconds=i), total_tokens=i)
    with django_assert_num_queries(1):
        calls = list(customer.usage_recent_calls_list(workspace=workspace))
    assert len(calls) == 10  # the rest are on the Activity page
    assert [c.total_tokens for c in calls[:3]] == [0, 1, 2]
    assert {c.workspace_id for c in calls} == {workspace.pk}


def test_recent_calls_filter_by_http_status(user, workspace):
    key = ApiKeyFactory(workspace=workspace, created_by=user)
    UsageEventFactory(workspace=workspace, api_key=key, status_code=402, error_code="insufficient_credits")
    UsageEventFactory(workspace=workspace, api_key=key, status_code=429)
    assert [c.status_code for c in customer.usage_recent_calls_list(workspace=workspace, status="402")] == [
        402
    ]
    assert len(customer.usage_recent_calls_list(workspace=workspace, api_key_id=key.pk, status="error")) == 2


def test_plan_card_for_free_workspace(workspace):
    now = timezone.now()
    card = customer.plan_card_get(workspace=workspace, now=now)
    assert card.plan.code == "free" and card.status == "free" and not card.has_subscription
    assert card.quota_reset_at.day == 1 and card.quota_reset_at > now
    assert Meter.LLM_TOKENS in {b.meter for b in customer.quota_bars_get(workspace=workspace, now=now)}


def test_team_workspace_shows_every_members_calls_and_nothing_of_their_personal_ones(user, other_user):
    """The dashboard's tenant is the workspace: a team's calls are the team's, whichever member's
    key made them, and a member's personal workspace stays apart."""
    team = team_workspace_create(owner=user, members={other_user: Role.DEVELOPER})
    today = timezone.now().date()
    mine = ApiKeyFactory(workspace=team, created_by=user)
    theirs = ApiKeyFactory(workspace=team, created_by=other_user)
    UsageEventFactory(workspace=team, api_key=mine, total_tokens=11)
    UsageEventFactory(workspace=team, api_key=theirs, total_tokens=22)
    UsageEventFactory(workspace=user.personal_workspace, total_tokens=33)
    RollupFactory(workspace=team, day=today, tokens=33)
    RollupFactory(workspace=user.personal_workspace, day=today, tokens=1000)

    calls = customer.usage_recent_calls_list(workspace=team)

    assert sorted(c.total_tokens for c in calls) == [11, 22]
    assert customer.usage_daily_series_get(workspace=team, today=today)[-1].tokens == 33
    assert [
        c.total_tokens for c in customer.usage_recent_calls_list(workspace=team, api_key_id=theirs.pk)
    ] == [22]
