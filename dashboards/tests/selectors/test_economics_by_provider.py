"""Revenue and margin per provider: the range's revenue (cash: plans and credit packs) allocated
by each provider's share of the credits charged, against fixtures small enough to compute by
hand; on the operator page (with the links behind the numbers) and in its JSON."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from dashboards.selectors import economics
from dashboards.tests.factories import (
    RollupFactory,
    UsageEventFactory,
    credit_purchase_create,
    personal_workspace_new,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def today(midday):
    return midday.date()


@pytest.fixture
def three_providers(settings, today, catalog):
    """100.00 USD of revenue (one credit pack); groq charged 200 credits and cost 80.00,
    openai 100 credits and 10.00, deepseek nothing and 1.50; groq's 999 credits 40 days ago
    are outside the range."""
    settings.EXCHANGE_RATES_TO_USD = {"usd": Decimal(1)}
    a, b = personal_workspace_new(), personal_workspace_new()
    credit_purchase_create(workspace=a, amount_minor=10_000, currency="usd")
    RollupFactory(
        workspace=a, provider="groq", day=today, requests=4, charge_credits=150, cost_usd=Decimal("60")
    )
    RollupFactory(
        workspace=b,
        provider="groq",
        day=today - timedelta(days=2),
        requests=3,
        charge_credits=50,
        cost_usd=Decimal("20"),
    )
    RollupFactory(
        workspace=a, provider="openai", day=today, requests=5, charge_credits=100, cost_usd=Decimal("10")
    )
    RollupFactory(workspace=b, provider="deepseek", day=today, requests=2, cost_usd=Decimal("1.5"))
    RollupFactory(workspace=a, provider="groq", day=today - timedelta(days=40), charge_credits=999)


# --- the allocation ---------------------------------------------------------------------------


def test_revenue_is_split_by_credits_charged_and_adds_up_exactly():
    # 1:2 → 33.333… and 66.666…, rounded to 33.33 and 66.67: already 100.00.
    assert economics.revenue_by_provider_allocate(revenue=Decimal("100.00"), credits={"a": 1, "b": 2}) == {
        "a": Decimal("33.33"),
        "b": Decimal("66.67"),
    }
    # 1:1:4 → 16.67 + 16.67 + 66.67 = 100.01: the largest share gives the cent back.
    shares = economics.revenue_by_provider_allocate(
        revenue=Decimal("100.00"), credits={"a": 1, "b": 1, "c": 4}
    )
    assert shares == {"a": Decimal("16.67"), "b": Decimal("16.67"), "c": Decimal("66.66")}
    assert sum(shares.values()) == Decimal("100.00")
    # 1:1:1 of 10.00 → 3.33 × 3 = 9.99: the missing cent goes to the first of the tied largest.
    shares = economics.revenue_by_provider_allocate(
        revenue=Decimal("10.00"), credits={"b": 1, "a": 1, "c": 1}
    )
    assert shares == {"a": Decimal("3.34"), "b": Decimal("3.33"), "c": Decimal("3.33")}


def test_a_provider_without_credits_gets_nothing_and_no_credits_at_all_splits_nothing():
    assert economics.revenue_by_provider_allocate(revenue=Decimal("50.00"), credits={"a": 0, "b": 7}) == {
        "a": Decimal("0.00"),
        "b": Decimal("50.00"),
    }
    assert economics.revenue_by_provider_allocate(revenue=Decimal("50.00"), credits={"a": 0, "b": 0}) is None
    assert economics.revenue_by_provider_allocate(revenue=Decimal("50.00"), credits={}) is None


# --- economics_get ----------------------------------------------------------------------------


def test_each_provider_has_its_allocated_revenue_and_margin(three_providers, today):
    result = economics.economics_get(since=today - timedelta(days=29), until=today)

    assert (result.revenue_usd, result.costs_usd) == (Decimal("100.00"), Decimal("91.50"))
    assert result.by_provider == [
        {
            "provider": "groq",
            "costs_usd": Decimal("80.00"),
            "requests_count": 7,
            "share_percent": Decimal("87.4"),  # 80 / 91.5
            "charge_credits": 200,
            "revenue_usd": Decimal("66.67"),  # 100 × 200/300
            "profit_usd": Decimal("-13.33"),
            "margin_percent": Decimal("-20.0"),  # -13.33 / 66.67 = -19.99…%
        },
        {
            "provider": "openai",
            "costs_usd": Decimal("10.00"),
            "requests_count": 5,
            "share_percent": Decimal("10.9"),
            "charge_credits": 100,
            "revenue_usd": Decimal("33.33"),  # 100 × 100/300
            "profit_usd": Decimal("23.33"),
            "margin_percent": Decimal("70.0"),  # 23.33 / 33.33 = 69.99…%
        },
        {
            "provider": "deepseek",
            "costs_usd": Decimal("1.50"),
            "requests_count": 2,
            "share_percent": Decimal("1.6"),
            "charge_credits": 0,
            "revenue_usd": Decimal("0.00"),
            "profit_usd": Decimal("-1.50"),
            "margin_percent": None,  # no revenue to divide by
        },
    ]
    assert sum(row["revenue_usd"] for row in result.by_provider) == result.revenue_usd


def test_nothing_charged_leaves_revenue_per_provider_unknown(settings, today, catalog):
    settings.EXCHANGE_RATES_TO_USD = {"usd": Decimal(1)}
    credit_purchase_create(workspace=personal_workspace_new(), amount_minor=2_000, currency="usd")
    RollupFactory(provider="groq", day=today, cost_usd=Decimal("3"))

    (row,) = economics.economics_get(since=today, until=today).by_provider

    assert (row["charge_credits"], row["revenue_usd"], row["profit_usd"], row["margin_percent"]) == (
        0,
        None,
        None,
        None,
    )


def test_more_providers_cost_no_more_queries(settings, today, catalog):
    settings.EXCHANGE_RATES_TO_USD = {"usd": Decimal(1)}
    credit_purchase_create(workspace=personal_workspace_new(), amount_minor=2_000, currency="usd")
    RollupFactory(provider="groq", day=today, charge_credits=3, cost_usd=Decimal("1"))

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            economics.economics_get(since=today, until=today)
        return len(captured)

    one = queries()
    for provider in ("openai", "deepseek", "mistral", "anthropic"):
        RollupFactory(provider=provider, day=today, charge_credits=5, cost_usd=Decimal("1"))
    assert queries() == one


# --- the operator page and its JSON -----------------------------------------------------------


def _cells(html: str, provider: str) -> dict[str, str]:
    row = re.search(rf'<tr data-provider-cost="{provider}">(.*?)</tr>', html, re.S).group(1)
    return dict(re.findall(r"<td class=\"n\" data-(\w+)>(.*?)</td>", row))


def test_the_page_shows_credits_revenue_and_margin_per_provider(three_providers, client, staff, today):
    groq_call = UsageEventFactory(provider="groq", charge_credits=150)
    UsageEventFactory(provider="openai", charge_credits=100)
    UsageEventFactory(provider="groq", created_at=groq_call.created_at - timedelta(days=40))  # out of range
    client.force_login(staff)

    html = client.get("/admin/dashboard/").content.decode()

    for header in ("Credits charged", "Revenue (allocated)", "Profit", "Margin"):
        assert f'<th class="n">{header}</th>' in html
    assert "split between providers in proportion to the credits" in html
    groq = _cells(html, "groq")
    link, credits = re.fullmatch(r'<a href="([^"]+)">(.*)</a>', groq["credits"]).groups()
    assert (credits, groq["revenue"], groq["profit"], groq["margin"]) == ("200", "66.67", "-13.33", "-20.0%")
    openai = _cells(html, "openai")
    assert (openai["revenue"], openai["profit"], openai["margin"]) == ("33.33", "23.33", "70.0%")
    deepseek = _cells(html, "deepseek")
    assert (deepseek["revenue"], deepseek["profit"], deepseek["margin"]) == ("0.00", "-1.50", "—")
    # The credits link opens the usage log of that provider over the range.
    listed = client.get(link.replace("&amp;", "&"))
    assert listed.status_code == 200
    assert [event.pk for event in listed.context["cl"].result_list] == [groq_call.pk]


def test_the_page_shows_a_dash_when_nothing_was_charged(client, staff, today, catalog):
    RollupFactory(provider="groq", day=today, cost_usd=Decimal("3"))
    client.force_login(staff)

    groq = _cells(client.get("/admin/dashboard/").content.decode(), "groq")

    assert (groq["revenue"], groq["profit"], groq["margin"]) == ("—", "—", "—")


def test_the_page_in_french(three_providers, client, staff):
    client.force_login(staff)

    html = client.get("/admin/dashboard/", HTTP_ACCEPT_LANGUAGE="fr").content.decode()

    assert "Crédits facturés" in html and "Revenus (répartis)" in html
    assert "au prorata des crédits facturés" in html


def test_the_json_has_the_same_numbers(three_providers, api_client, staff):
    api_client.force_authenticate(staff)

    body = api_client.get("/api/admin/dashboard").json()

    assert body["economics"]["by_provider"] == [
        {
            "provider": "groq",
            "costs_usd": 80.0,
            "requests_count": 7,
            "share_percent": 87.4,
            "charge_credits": 200,
            "revenue_usd": 66.67,
            "profit_usd": -13.33,
            "margin_percent": -20.0,
        },
        {
            "provider": "openai",
            "costs_usd": 10.0,
            "requests_count": 5,
            "share_percent": 10.9,
            "charge_credits": 100,
            "revenue_usd": 33.33,
            "profit_usd": 23.33,
            "margin_percent": 70.0,
        },
        {
            "provider": "deepseek",
            "costs_usd": 1.5,
            "requests_count": 2,
            "share_percent": 1.6,
            "charge_credits": 0,
            "revenue_usd": 0.0,
            "profit_usd": -1.5,
            "margin_percent": None,
        },
    ]
