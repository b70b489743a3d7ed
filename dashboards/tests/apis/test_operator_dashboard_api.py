from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from dashboards.tests.factories import (
    DailySpendFactory,
    OrganizationFactory,
    RollupFactory,
    StripeEventFactory,
    UserFactory,
    credit_purchase_create,
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
    customer = UserFactory()
    RollupFactory(
        user=customer,
        provider="openrouter",
        day=today,
        requests=30,
        tokens=9000,
        cost_usd=Decimal("5.23"),
        errors=3,
        fallbacks=2,
    )
    RollupFactory(user=customer, provider="groq", day=today - timedelta(days=3), requests=150, tokens=1000)
    credit_purchase_create(user=customer, amount_minor=1900)  # 20.52 USD
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
        user = UserFactory()
        RollupFactory(
            user=user,
            provider=["groq", "openai"][i % 2],
            day=today - timedelta(days=i),
            cost_usd=Decimal("0.5"),
        )
        OrganizationFactory()
    api_client.force_authenticate(staff)
    with django_assert_max_num_queries(30):  # 5 of them: the business block and its drill-down
        assert api_client.get(URL).status_code == 200
