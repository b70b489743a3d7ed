from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.models import Role
from dashboards.tests.factories import (
    DailySpendFactory,
    OrganizationFactory,
    RollupFactory,
    StripeEventFactory,
    UserFactory,
    credit_purchase_create,
    personal_workspace_new,
    team_workspace_create,
)

pytestmark = pytest.mark.django_db
URL = "/api/admin/dashboard"


def test_anonymous_gets_401_and_customers_403(api_client, user):
    response = api_client.get(URL)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    api_client.force_authenticate(user)
    response = api_client.get(URL)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


def test_shape_and_values(midday, api_client, staff, settings):
    settings.DAILY_BUDGET_USD = Decimal("50")
    settings.EXCHANGE_RATES_TO_USD = {"eur": Decimal("1.08"), "usd": Decimal(1)}
    today = timezone.now().date()
    DailySpendFactory(day=today, spent_usd=Decimal("46.15"))
    customer = personal_workspace_new()
    RollupFactory(
        workspace=customer,
        provider="openrouter",
        day=today,
        requests=30,
        tokens=9000,
        cost_usd=Decimal("5.23"),
        errors=3,
        fallbacks=2,
    )
    RollupFactory(
        workspace=customer, provider="groq", day=today - timedelta(days=3), requests=150, tokens=1000
    )
    credit_purchase_create(workspace=customer, amount_minor=1900)  # 20.52 USD
    OrganizationFactory(name="Acme Corp")
    StripeEventFactory(status="failed")
    api_client.force_authenticate(staff)
    response = api_client.get(URL)
    assert response.status_code == 200
    body = response.json()
    assert body["budget"] == {
        "spent_usd": 46.15,
        "limit_usd": 50.0,
        "remaining_usd": 3.85,
        "percent_used": 92.3,
        "alert_level": "critical",
    }
    assert body["users"] == {
        "active_today": 1,
        "avg_cost_per_user": 5.23,
        "abusive_count": 0,
        "abusive_users": [],
    }
    assert body["providers"]["today"] == [
        {
            "provider": "openrouter",
            "requests_count": 30,
            "cost_total": 5.23,
            "tokens": 9000,
            "errors_count": 3,
            "error_rate": 10.0,
            "fallback_count": 2,
        },
    ]
    assert [p["provider"] for p in body["providers"]["last_30_days"]] == ["groq", "openrouter"]
    economics = body["economics"]
    assert (economics["revenue_usd"], economics["costs_usd"], economics["profit_usd"]) == (20.52, 5.23, 15.29)
    assert economics["margin_percent"] == 74.5
    assert {
        "plan": "credits",
        "revenue_usd": 20.52,
        "costs_usd": 0.0,
        "profit_usd": 20.52,
        "margin_percent": 100.0,
    } in economics["by_plan"]
    codes = [alert["code"] for alert in body["alerts"]]
    assert codes[0] == "budget" and body["alerts"][0]["level"] == "critical" and "webhooks_failed" in codes
    assert body["organizations"]["summary"] == {"total": 1, "linked": 0, "pending": 1}
    assert body["organizations"]["pending"][0]["name"] == "Acme Corp"
    assert body["organizations"]["pending"][0]["subscription_status"] == "pending"
    assert body["credits"]["purchases"] == 1 and body["credits"]["webhook_success_rate"] == 0.0


def test_query_count_is_bounded(api_client, staff, django_assert_max_num_queries):
    today = timezone.now().date()
    for i in range(20):
        RollupFactory(
            workspace=personal_workspace_new(),
            provider=["groq", "openai"][i % 2],
            day=today - timedelta(days=i),
            cost_usd=Decimal("0.5"),
        )
        OrganizationFactory()
    api_client.force_authenticate(staff)
    with django_assert_max_num_queries(30):  # 5 of them: the business block and its drill-down
        assert api_client.get(URL).status_code == 200


def test_flagged_customers_are_workspaces(midday, api_client, staff, settings):
    settings.ABUSE_REQUESTS_PER_DAY = 10
    owner, developer = UserFactory(email="owner@example.com"), UserFactory()
    team = team_workspace_create(owner=owner, members={developer: Role.DEVELOPER}, name="Busy team")
    RollupFactory(workspace=team, provider="groq", requests=6)
    RollupFactory(workspace=team, provider="openai", requests=6)  # the members' calls add up
    api_client.force_authenticate(staff)

    users = api_client.get(URL).json()["users"]

    assert (users["active_today"], users["abusive_count"]) == (1, 1)
    assert users["abusive_users"] == [
        {
            "workspace_id": team.pk,
            "workspace_name": "Busy team",
            "owner_email": "owner@example.com",
            "requests_today": 12,
            "errors_today": 0,
            "rate_limited_minutes_today": 0,
            "invalid_key_minutes_today": 0,
            "reasons": ["requests"],
        }
    ]
