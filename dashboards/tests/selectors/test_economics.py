"""Costs, revenue and margin against fixtures small enough to compute by hand."""

from datetime import timedelta
from decimal import Decimal

import pytest

from billing.models import PaymentTransaction, Plan
from billing.selectors import plan_revenue_by_plan_get
from billing.services import plan_chargily_checkout_start
from credits.models import CreditPack
from credits.selectors import credit_revenue_minor_get
from credits.services import credit_pack_checkout_start
from dashboards.selectors import economics
from dashboards.tests.factories import (
    RollupFactory,
    SubscriptionFactory,
    credit_purchase_create,
    invoice_paid_event,
    personal_workspace_new,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def now(midday):
    """Noon today, and the clock too: rows made "now" are on ``today`` however long the test runs."""
    return midday


@pytest.fixture
def today(now):
    return now.date()


# --- providers and costs ----------------------------------------------------------------------


def test_provider_stats_today_and_window(today):
    w1, w2 = personal_workspace_new(), personal_workspace_new()
    RollupFactory(
        workspace=w1,
        provider="openai",
        day=today,
        requests=8,
        tokens=800,
        cost_usd=Decimal("0.4"),
        errors=2,
        fallbacks=1,
    )
    RollupFactory(workspace=w2, provider="openai", day=today, requests=2, tokens=200, cost_usd=Decimal("0.1"))
    RollupFactory(workspace=w1, provider="groq", day=today - timedelta(days=10), requests=30, tokens=3000)
    RollupFactory(
        workspace=w1, provider="groq", day=today - timedelta(days=40), requests=999
    )  # outside 30 days
    assert economics.provider_stats_list(since=today, until=today) == [
        {
            "provider": "openai",
            "requests_count": 10,
            "cost_total": Decimal("0.500000"),
            "tokens": 1000,
            "errors_count": 2,
            "error_rate": Decimal("20.0"),
            "fallback_count": 1,
            "charge_credits": 0,
        },
    ]
    window = economics.provider_stats_list(since=today - timedelta(days=29), until=today)
    assert [(r["provider"], r["requests_count"], r["error_rate"]) for r in window] == [
        ("groq", 30, Decimal("0.0")),
        ("openai", 10, Decimal("20.0")),
    ]


def test_costs_total_and_by_plan(today, catalog):
    paid_plan = Plan.objects.filter(price_minor__gt=0).order_by("price_minor").first()
    subscriber, free_workspace = personal_workspace_new(), personal_workspace_new()
    SubscriptionFactory(workspace=subscriber, plan=paid_plan)
    RollupFactory(workspace=subscriber, provider="openai", day=today, cost_usd=Decimal("1.25"))
    RollupFactory(
        workspace=subscriber, provider="anthropic", day=today - timedelta(days=3), cost_usd=Decimal("0.75")
    )
    RollupFactory(workspace=free_workspace, provider="deepseek", day=today, cost_usd=Decimal("0.10"))
    since = today - timedelta(days=29)
    assert economics.costs_usd_get(since=since, until=today) == Decimal("2.100000")
    assert economics.costs_by_plan_get(since=since, until=today) == {
        paid_plan.code: Decimal("2.000000"),
        "free": Decimal("0.100000"),
    }


# --- revenue ----------------------------------------------------------------------------------


def test_usd_conversion_uses_configured_rates(settings):
    settings.EXCHANGE_RATES_TO_USD = {"usd": Decimal(1), "eur": Decimal("1.08"), "jpy": Decimal("0.0067")}
    # 19.00 EUR * 1.08 + 5.00 USD + 1000 JPY (zero-decimal) * 0.0067 = 20.52 + 5 + 6.70
    assert economics.usd_from_minor(amounts={"eur": 1900, "usd": 500, "jpy": 1000}) == Decimal("32.22")
    # A currency without a rate is left out, not guessed.
    assert economics.usd_from_minor(amounts={"chf": 1000}) == Decimal("0.00")


def test_economics_revenue_costs_margin(settings, today, catalog):
    settings.EXCHANGE_RATES_TO_USD = {"usd": Decimal(1), "eur": Decimal("1.10")}
    plan = Plan.objects.filter(price_minor__gt=0).order_by("price_minor").first()
    sub = SubscriptionFactory(plan=plan)
    invoice_paid_event(invoice_id="in_e", subscription=sub.stripe_subscription_id, amount_paid=2000)  # 22 USD
    credit_purchase_create(workspace=personal_workspace_new(), amount_minor=800, currency="usd")  # 8 USD
    RollupFactory(workspace=sub.workspace, provider="openai", day=today, cost_usd=Decimal("6"))
    result = economics.economics_get(since=today - timedelta(days=29), until=today)
    assert result.revenue_usd == Decimal("30.00")
    assert result.costs_usd == Decimal("6.00")
    assert result.profit_usd == Decimal("24.00")
    assert result.margin_percent == Decimal("80.0")
    assert result.by_plan == [
        {
            "plan": "credits",
            "revenue_usd": Decimal("8.00"),
            "costs_usd": Decimal("0.00"),
            "profit_usd": Decimal("8.00"),
            "margin_percent": Decimal("100.0"),
        },
        {
            "plan": plan.code,
            "revenue_usd": Decimal("22.00"),
            "costs_usd": Decimal("6.00"),
            "profit_usd": Decimal("16.00"),
            "margin_percent": Decimal("72.7"),
        },
    ]
    assert result.by_provider == [
        {
            "provider": "openai",
            "costs_usd": Decimal("6.00"),
            "requests_count": 1,
            "share_percent": Decimal("100.0"),
            "charge_credits": 0,
            "revenue_usd": None,  # nothing charged: nothing to split the revenue by
            "profit_usd": None,
            "margin_percent": None,
        }
    ]


@pytest.fixture
def chargily_simulated(settings):
    """Chargily's offline page (DEBUG, no API key): payments go through the real webhook."""
    settings.DEBUG = True
    settings.CHARGILY_API_KEY = ""
    settings.CHARGILY_SECRET_KEY = "chargily_dashboard_tests_secret"
    settings.SITE_URL = "http://testserver"
    settings.CHECKOUT_REDIRECT_HOSTS = ["testserver"]
    return settings


def _chargily_pay(client, session: dict) -> None:
    page = f"/payment/chargily/simulated-checkout/{session['session_id']}/"
    assert client.post(page, {"action": "paid"}).status_code == 302


def test_economics_counts_chargily_plans_once_and_packs_once(
    settings, chargily_simulated, today, catalog, client
):
    """Hand-computed: a Stripe invoice of 49.00 EUR (x 1.08 = 52.92 USD), a Student period paid
    with Chargily, 1 590 DZD (x 0.0074 = 11.766 -> 11.77 USD) and a pack paid with Chargily,
    2 500 DZD (x 0.0074 = 18.50 USD): 83.19 USD. The Chargily pack is both a payment transaction
    and a CreditPurchase; it counts once, as credits."""

    settings.EXCHANGE_RATES_TO_USD = {"usd": Decimal(1), "eur": Decimal("1.08"), "dzd": Decimal("0.0074")}
    pro = Plan.objects.get(code="pro")
    sub = SubscriptionFactory(plan=pro)
    invoice_paid_event(invoice_id="in_pro", subscription=sub.stripe_subscription_id, amount_paid=4900)

    student_buyer, pack_buyer = personal_workspace_new(), personal_workspace_new()
    back = "http://testserver/dashboard/"
    _chargily_pay(
        client,
        plan_chargily_checkout_start(
            workspace=student_buyer, plan_code="student", success_url=back, failure_url=back
        ),
    )
    pack = CreditPack.objects.create(
        code="pack_dzd", name="Pack DZD", credits=500, price_minor=2900, price_dzd_minor=250_000
    )
    _chargily_pay(
        client,
        credit_pack_checkout_start(
            workspace=pack_buyer, pack_code=pack.code, success_url=back, cancel_url=back, gateway="chargily"
        ),
    )
    paid = PaymentTransaction.objects.filter(status=PaymentTransaction.Status.PAID)
    assert sorted(paid.values_list("kind", "amount_minor", "currency")) == [
        ("credit_pack", 250_000, "dzd"),
        ("plan", 159_000, "dzd"),
    ]

    since = today - timedelta(days=29)
    start, end = economics.period_bounds_get(since=since, until=today)
    assert plan_revenue_by_plan_get(start=start, end=end) == {
        "pro": {"eur": 4900},
        "student": {"dzd": 159_000},
    }
    assert credit_revenue_minor_get(start=start, end=end) == {"dzd": 250_000}
    result = economics.economics_get(since=since, until=today)
    assert result.revenue_usd == Decimal("83.19")
    assert {row["plan"]: row["revenue_usd"] for row in result.by_plan} == {
        "credits": Decimal("18.50"),
        "pro": Decimal("52.92"),
        "student": Decimal("11.77"),
    }


def test_economics_without_revenue_has_no_margin(today):
    assert economics.economics_get(since=today, until=today).margin_percent is None
