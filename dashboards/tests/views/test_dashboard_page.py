from datetime import timedelta

import pytest
from django.utils import timezone

from billing.models import Plan
from credits.models import LedgerEntry
from dashboards.tests.factories import ApiKeyFactory, RollupFactory, SubscriptionFactory, UsageEventFactory

pytestmark = pytest.mark.django_db


def test_dashboard_needs_login(client):
    response = client.get("/dashboard/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_dashboard_shows_plan_quotas_keys_charts_and_calls(
    midday, client, user, django_assert_max_num_queries
):
    today = timezone.now().date()
    key = ApiKeyFactory(user=user, name="backend")
    RollupFactory(user=user, provider="groq", day=today, requests=3, tokens=1500)
    RollupFactory(user=user, provider="deepseek", day=today - timedelta(days=2), requests=2, tokens=700)
    for _ in range(3):
        UsageEventFactory(user=user, api_key=key, provider="groq", total_tokens=500)
    UsageEventFactory(user=user, api_key=key, status_code=502, error_code="upstream_error", is_fallback=True)
    client.force_login(user)
    with django_assert_max_num_queries(20):
        response = client.get("/dashboard/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="plan-card" data-plan="free"' in html
    assert 'data-meter="llm_tokens"' in html
    assert "backend" in html and key.prefix in html
    # Charts come from the rollups: today's bar carries today's tokens.
    assert f'data-day="{today.isoformat()}" data-value="1500"' in html
    assert 'data-provider="groq"' in html
    # Last calls: four rows, the failed one flagged.
    assert html.count('data-status="200"') == 3
    assert 'data-status="502"' in html and "fallback" in html


def test_dashboard_paid_plan_and_quota_colours(client, user):
    pro = Plan.objects.filter(price_minor__gt=0).order_by("price_minor").first()
    SubscriptionFactory(user=user, plan=pro, current_period_end=timezone.now() + timedelta(days=20))
    client.force_login(user)
    html = client.get("/dashboard/").content.decode()
    assert f'data-plan="{pro.code}"' in html
    assert "Manage billing" in html and "Renews on" in html


def test_dashboard_filters_calls_by_key_and_status(client, user, other_user):
    mine = ApiKeyFactory(user=user)
    other = ApiKeyFactory(user=user)
    foreign = ApiKeyFactory(user=other_user)
    UsageEventFactory(user=user, api_key=mine, status_code=200)
    UsageEventFactory(user=user, api_key=mine, status_code=429, error_code="quota_exceeded")
    UsageEventFactory(user=user, api_key=other, status_code=200)
    client.force_login(user)
    html = client.get(f"/dashboard/?key={mine.pk}&status=error").content.decode()
    assert html.count('data-status="429"') == 1 and 'data-status="200"' not in html
    html = client.get("/dashboard/?status=ok").content.decode()
    assert html.count('data-status="200"') == 2
    # Another user's key id is not a filter: ignored with a note, nothing leaks.
    html = client.get(f"/dashboard/?key={foreign.pk}&status=bogus").content.decode()
    assert "Unknown key filter ignored." in html and "Unknown status filter ignored." in html
    assert html.count("data-status=") == 3


def test_dashboard_credit_spend_chart_for_credit_users(midday, client, user):
    LedgerEntry.objects.create(
        user=user, kind="purchase", amount=100, balance_after=100, idempotency_key="t:p"
    )
    LedgerEntry.objects.create(
        user=user, kind="consume", amount=-7, balance_after=93, idempotency_key="t:c", endpoint="/x"
    )
    client.force_login(user)
    html = client.get("/dashboard/").content.decode()
    assert 'id="chart-credits"' in html
    assert f'data-day="{timezone.now().date().isoformat()}" data-value="7"' in html


def test_dashboard_hides_global_keys_from_non_staff(client, user, staff):
    client.force_login(user)
    assert "Global key (operator)" not in client.get("/dashboard/").content.decode()
    client.force_login(staff)
    assert "Global key (operator)" in client.get("/dashboard/").content.decode()
