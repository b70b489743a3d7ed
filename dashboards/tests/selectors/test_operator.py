"""Each operator number against fixtures small enough to compute by hand."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.models import InvalidKeyDay
from billing.models import CheckoutSession, Plan, StripeEvent
from dashboards import selectors
from dashboards.tests.factories import (
    DailySpendFactory,
    OrganizationFactory,
    RollupFactory,
    StripeEventFactory,
    SubscriptionFactory,
    UsageReportFactory,
    UserFactory,
    credit_purchase_create,
    invoice_paid_event,
    upsell_event_create,
)
from organizations.models import UsageReport
from proxy.models import RateLimitedDay

pytestmark = pytest.mark.django_db


@pytest.fixture
def now(midday):
    """Noon today, and the clock too: rows made "now" are on ``today`` however long the test runs."""
    return midday


@pytest.fixture
def today(now):
    return now.date()


# --- budget -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spent", "percent", "level"),
    [
        ("0", "0.00", "ok"),
        ("37.40", "74.80", "ok"),
        ("37.50", "75.00", "warning"),
        ("44.99", "89.98", "warning"),
        ("45.00", "90.00", "critical"),
        ("60", "120.00", "critical"),
    ],
)
def test_budget_status_levels(settings, today, spent, percent, level):
    settings.DAILY_BUDGET_USD = Decimal("50")
    DailySpendFactory(day=today, spent_usd=Decimal(spent))
    budget = selectors.budget_status_get(today=today)
    assert budget.spent_usd == Decimal(spent)
    assert budget.limit_usd == Decimal("50")
    assert budget.percent_used == Decimal(percent)
    assert budget.alert_level == level
    assert budget.remaining_usd == max(Decimal("50") - Decimal(spent), Decimal(0))


def test_budget_counts_reservations_in_flight(settings, today):
    """The live counter (DB spend + reservations) is what the router compares with the cap."""
    from proxy import budget as proxy_budget

    settings.DAILY_BUDGET_USD = Decimal("10")
    DailySpendFactory(day=today, spent_usd=Decimal("2"))
    assert proxy_budget.budget_reserve(day=today, amount_micro=3_000_000, hold_id="in-flight")
    assert selectors.budget_status_get(today=today).spent_usd == Decimal("5")


# --- users ------------------------------------------------------------------------------------


def test_active_users_and_average_cost(today):
    a, b = UserFactory(), UserFactory()
    RollupFactory(user=a, provider="groq", day=today, cost_usd=Decimal("0"))
    RollupFactory(user=a, provider="openai", day=today, cost_usd=Decimal("1.50"))
    RollupFactory(user=b, provider="openai", day=today, cost_usd=Decimal("0.25"))
    RollupFactory(user=UserFactory(), provider="openai", day=today - timedelta(days=1), cost_usd=Decimal(9))
    assert selectors.users_active_today_count(today=today) == 2
    assert selectors.users_avg_cost_today_get(today=today) == Decimal("0.875000")


def test_average_cost_without_users_is_zero(today):
    assert selectors.users_avg_cost_today_get(today=today) == Decimal("0")


def test_abusive_users_by_requests_or_errors(settings, today):
    settings.ABUSE_REQUESTS_PER_DAY = 100
    settings.ABUSE_ERRORS_PER_DAY = 10
    loud, failing, fine = UserFactory(), UserFactory(), UserFactory()
    RollupFactory(user=loud, provider="groq", day=today, requests=60)
    RollupFactory(user=loud, provider="openai", day=today, requests=40)  # 100 across providers
    RollupFactory(user=failing, day=today, requests=12, errors=10)
    RollupFactory(user=fine, day=today, requests=99, errors=9)
    RollupFactory(user=fine, day=today - timedelta(days=1), requests=500)  # yesterday does not count
    rows = selectors.users_abusive_list(today=today)
    assert [(r["email"], r["requests_today"], r["errors_today"], r["reasons"]) for r in rows] == [
        (loud.email, 100, 0, ["requests"]),
        (failing.email, 12, 10, ["errors"]),
    ]


def test_abusive_users_include_keys_kept_past_their_rate_limit(settings, today):
    settings.ABUSE_REQUESTS_PER_DAY = 100
    settings.ABUSE_ERRORS_PER_DAY = 10
    settings.ABUSE_RATE_LIMITED_MINUTES_PER_DAY = 30
    hammering, quiet_but_loud, almost = UserFactory(), UserFactory(), UserFactory()
    RateLimitedDay.objects.create(user=hammering, day=today, minutes=30)  # refused only: no rollup
    RollupFactory(user=quiet_but_loud, day=today, requests=150)
    RateLimitedDay.objects.create(user=quiet_but_loud, day=today, minutes=3)
    RateLimitedDay.objects.create(user=almost, day=today, minutes=29)
    RateLimitedDay.objects.create(user=almost, day=today - timedelta(days=1), minutes=500)  # yesterday

    rows = selectors.users_abusive_list(today=today)

    assert [
        (r["email"], r["requests_today"], r["errors_today"], r["rate_limited_minutes_today"], r["reasons"])
        for r in rows
    ] == [
        (quiet_but_loud.email, 150, 0, 3, ["requests"]),
        (hammering.email, 0, 0, 30, ["rate_limited"]),
    ]


def test_abusive_users_include_owners_of_dead_keys_still_being_tried(settings, today):
    settings.ABUSE_INVALID_KEY_MINUTES_PER_DAY = 10
    leaked, almost, also_limited = UserFactory(), UserFactory(), UserFactory()
    InvalidKeyDay.objects.create(user=leaked, day=today, minutes=10)  # refused only: no rollup
    InvalidKeyDay.objects.create(user=almost, day=today, minutes=9)
    InvalidKeyDay.objects.create(user=almost, day=today - timedelta(days=1), minutes=500)  # yesterday
    InvalidKeyDay.objects.create(user=also_limited, day=today, minutes=12)
    RateLimitedDay.objects.create(
        user=also_limited, day=today, minutes=settings.ABUSE_RATE_LIMITED_MINUTES_PER_DAY
    )

    rows = selectors.users_abusive_list(today=today)

    assert sorted(
        (r["email"], r["rate_limited_minutes_today"], r["invalid_key_minutes_today"], r["reasons"])
        for r in rows
    ) == sorted(
        [
            (leaked.email, 0, 10, ["invalid_keys"]),
            (
                also_limited.email,
                settings.ABUSE_RATE_LIMITED_MINUTES_PER_DAY,
                12,
                ["rate_limited", "invalid_keys"],
            ),
        ]
    )


# --- providers and costs ----------------------------------------------------------------------


def test_provider_stats_today_and_window(today):
    u1, u2 = UserFactory(), UserFactory()
    RollupFactory(
        user=u1,
        provider="openai",
        day=today,
        requests=8,
        tokens=800,
        cost_usd=Decimal("0.4"),
        errors=2,
        fallbacks=1,
    )
    RollupFactory(user=u2, provider="openai", day=today, requests=2, tokens=200, cost_usd=Decimal("0.1"))
    RollupFactory(user=u1, provider="groq", day=today - timedelta(days=10), requests=30, tokens=3000)
    RollupFactory(user=u1, provider="groq", day=today - timedelta(days=40), requests=999)  # outside 30 days
    assert selectors.provider_stats_list(since=today, until=today) == [
        {
            "provider": "openai",
            "requests_count": 10,
            "cost_total": Decimal("0.500000"),
            "tokens": 1000,
            "errors_count": 2,
            "error_rate": Decimal("20.0"),
            "fallback_count": 1,
        },
    ]
    window = selectors.provider_stats_list(since=today - timedelta(days=29), until=today)
    assert [(r["provider"], r["requests_count"], r["error_rate"]) for r in window] == [
        ("groq", 30, Decimal("0.0")),
        ("openai", 10, Decimal("20.0")),
    ]


def test_costs_total_and_by_plan(today, catalog):
    paid_plan = Plan.objects.filter(price_minor__gt=0).order_by("price_minor").first()
    subscriber, free_user = UserFactory(), UserFactory()
    SubscriptionFactory(user=subscriber, plan=paid_plan)
    RollupFactory(user=subscriber, provider="openai", day=today, cost_usd=Decimal("1.25"))
    RollupFactory(
        user=subscriber, provider="anthropic", day=today - timedelta(days=3), cost_usd=Decimal("0.75")
    )
    RollupFactory(user=free_user, provider="deepseek", day=today, cost_usd=Decimal("0.10"))
    since = today - timedelta(days=29)
    assert selectors.costs_usd_get(since=since, until=today) == Decimal("2.100000")
    assert selectors.costs_by_plan_get(since=since, until=today) == {
        paid_plan.code: Decimal("2.000000"),
        "free": Decimal("0.100000"),
    }


# --- revenue ----------------------------------------------------------------------------------


def test_usd_conversion_uses_configured_rates(settings):
    settings.EXCHANGE_RATES_TO_USD = {"usd": Decimal(1), "eur": Decimal("1.08"), "jpy": Decimal("0.0067")}
    # 19.00 EUR * 1.08 + 5.00 USD + 1000 JPY (zero-decimal) * 0.0067 = 20.52 + 5 + 6.70
    assert selectors.usd_from_minor(amounts={"eur": 1900, "usd": 500, "jpy": 1000}) == Decimal("32.22")
    # A currency without a rate is left out, not guessed.
    assert selectors.usd_from_minor(amounts={"chf": 1000}) == Decimal("0.00")


def test_invoice_revenue_by_plan(today, catalog):
    plan = Plan.objects.filter(price_minor__gt=0).order_by("price_minor").first()
    sub = SubscriptionFactory(plan=plan)
    invoice_paid_event(invoice_id="in_1", subscription=sub.stripe_subscription_id, amount_paid=1900)
    invoice_paid_event(invoice_id="in_2", subscription=sub.stripe_subscription_id, amount_paid=1900)
    # The same invoice delivered under a second event id counts once.
    invoice_paid_event(invoice_id="in_2", subscription=sub.stripe_subscription_id, amount_paid=1900)
    invoice_paid_event(
        invoice_id="in_old",
        subscription=sub.stripe_subscription_id,
        amount_paid=1900,
        received_at=timezone.now() - timedelta(days=45),
    )
    invoice_paid_event(
        invoice_id="in_bad", subscription="sub_x", amount_paid=500, status=StripeEvent.Status.FAILED
    )
    CheckoutSession.objects.create(
        user=UserFactory(),
        kind="plan",
        mode="subscription",
        line_item={},
        metadata={"plan_code": plan.code},
        amount_minor=1900,
        currency="eur",
        success_url="http://x/s",
        cancel_url="http://x/c",
        is_simulated=True,
        checkout_reference="cs_sim_1",
        status=CheckoutSession.Status.COMPLETE,
    )
    result = selectors.invoice_revenue_by_plan_get(since=today - timedelta(days=29), until=today)
    assert result == {plan.code: {"eur": 5700}}


def test_credit_revenue_in_period(today):
    buyer = UserFactory()
    credit_purchase_create(user=buyer, amount_minor=1900)
    credit_purchase_create(user=buyer, amount_minor=500, currency="usd")
    assert selectors.credit_revenue_minor_get(since=today, until=today) == {"eur": 1900, "usd": 500}
    assert (
        selectors.credit_revenue_minor_get(since=today - timedelta(days=5), until=today - timedelta(days=1))
        == {}
    )


def test_economics_revenue_costs_margin(settings, today, catalog):
    settings.EXCHANGE_RATES_TO_USD = {"usd": Decimal(1), "eur": Decimal("1.10")}
    plan = Plan.objects.filter(price_minor__gt=0).order_by("price_minor").first()
    sub = SubscriptionFactory(plan=plan)
    invoice_paid_event(invoice_id="in_e", subscription=sub.stripe_subscription_id, amount_paid=2000)  # 22 USD
    credit_purchase_create(user=UserFactory(), amount_minor=800, currency="usd")  # 8 USD
    RollupFactory(user=sub.user, provider="openai", day=today, cost_usd=Decimal("6"))
    economics = selectors.economics_get(since=today - timedelta(days=29), until=today)
    assert economics.revenue_usd == Decimal("30.00")
    assert economics.costs_usd == Decimal("6.00")
    assert economics.profit_usd == Decimal("24.00")
    assert economics.margin_percent == Decimal("80.0")
    assert economics.by_plan == [
        {
            "plan": "credits",
            "revenue_usd": Decimal("8.00"),
            "costs_usd": Decimal("0.00"),
            "profit_usd": Decimal("8.00"),
        },
        {
            "plan": plan.code,
            "revenue_usd": Decimal("22.00"),
            "costs_usd": Decimal("6.00"),
            "profit_usd": Decimal("16.00"),
        },
    ]
    assert economics.by_provider == [
        {"provider": "openai", "costs_usd": Decimal("6.00"), "share_percent": Decimal("100.0")}
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
    from billing.chargily import plan_chargily_checkout_start
    from billing.models import PaymentTransaction
    from credits.models import CreditPack
    from credits.services import credit_pack_checkout_start

    settings.EXCHANGE_RATES_TO_USD = {"usd": Decimal(1), "eur": Decimal("1.08"), "dzd": Decimal("0.0074")}
    pro = Plan.objects.get(code="pro")
    sub = SubscriptionFactory(plan=pro)
    invoice_paid_event(invoice_id="in_pro", subscription=sub.stripe_subscription_id, amount_paid=4900)

    student_buyer, pack_buyer = UserFactory(), UserFactory()
    back = "http://testserver/dashboard/"
    _chargily_pay(
        client,
        plan_chargily_checkout_start(
            user=student_buyer, plan_code="student", success_url=back, failure_url=back
        ),
    )
    pack = CreditPack.objects.create(
        code="pack_dzd", name="Pack DZD", credits=500, price_minor=2900, price_dzd_minor=250_000
    )
    _chargily_pay(
        client,
        credit_pack_checkout_start(
            user=pack_buyer, pack_code=pack.code, success_url=back, cancel_url=back, gateway="chargily"
        ),
    )
    paid = PaymentTransaction.objects.filter(status=PaymentTransaction.Status.PAID)
    assert sorted(paid.values_list("kind", "amount_minor", "currency")) == [
        ("credit_pack", 250_000, "dzd"),
        ("plan", 159_000, "dzd"),
    ]

    since = today - timedelta(days=29)
    assert selectors.plan_revenue_by_plan_get(since=since, until=today) == {
        "pro": {"eur": 4900},
        "student": {"dzd": 159_000},
    }
    assert selectors.credit_revenue_minor_get(since=since, until=today) == {"dzd": 250_000}
    economics = selectors.economics_get(since=since, until=today)
    assert economics.revenue_usd == Decimal("83.19")
    assert {row["plan"]: row["revenue_usd"] for row in economics.by_plan} == {
        "credits": Decimal("18.50"),
        "pro": Decimal("52.92"),
        "student": Decimal("11.77"),
    }


def test_chargily_plan_revenue_ignores_unpaid_and_old_periods(chargily_simulated, today, catalog, client):
    from billing.chargily import plan_chargily_checkout_start
    from billing.models import PaymentTransaction

    back = "http://testserver/dashboard/"
    paid_user, failed_user = UserFactory(), UserFactory()
    _chargily_pay(
        client,
        plan_chargily_checkout_start(user=paid_user, plan_code="student", success_url=back, failure_url=back),
    )
    failed = plan_chargily_checkout_start(
        user=failed_user, plan_code="student", success_url=back, failure_url=back
    )
    client.post(f"/payment/chargily/simulated-checkout/{failed['session_id']}/", {"action": "failed"})
    assert selectors.chargily_plan_revenue_by_plan_get(since=today, until=today) == {
        "student": {"dzd": 159_000}
    }
    PaymentTransaction.objects.update(completed_at=timezone.now() - timedelta(days=40))
    assert selectors.chargily_plan_revenue_by_plan_get(since=today - timedelta(days=29), until=today) == {}


def test_economics_without_revenue_has_no_margin(today):
    assert selectors.economics_get(since=today, until=today).margin_percent is None


# --- alerts, webhooks, credits, organizations -------------------------------------------------


def test_failed_webhooks_and_success_rate(now):
    StripeEventFactory.create_batch(3, status=StripeEvent.Status.PROCESSED)
    StripeEventFactory(status=StripeEvent.Status.IGNORED)
    StripeEventFactory(status=StripeEvent.Status.FAILED)
    StripeEventFactory(status=StripeEvent.Status.FAILED, received_at=now - timedelta(days=40))
    since = now - timedelta(days=30)
    assert selectors.stripe_events_failed_count(since=since) == 1
    assert selectors.webhook_success_rate_get(since=since) == Decimal("80.0")  # 4 of 5


def test_webhook_success_rate_without_events_is_none(now):
    assert selectors.webhook_success_rate_get(since=now) is None


def test_failed_meter_events():
    UsageReportFactory(billing_status=UsageReport.BillingStatus.FAILED)
    UsageReportFactory(billing_status=UsageReport.BillingStatus.SENT)
    assert selectors.meter_events_failed_count() == 1


def test_providers_in_cooldown_read_the_router_state(settings):
    from proxy.router import provider_failure_record

    settings.PROXY_COOLDOWN_FAILURES = 2
    provider_failure_record(provider="openai")
    assert selectors.providers_in_cooldown_list() == []
    provider_failure_record(provider="openai")
    assert selectors.providers_in_cooldown_list() == ["openai"]


def test_alerts_list_severity_and_actions(today, settings):
    settings.DAILY_BUDGET_USD = Decimal("10")
    DailySpendFactory(day=today, spent_usd=Decimal("9.5"))
    budget = selectors.budget_status_get(today=today)
    alerts = selectors.operator_alerts_list(
        budget=budget, cooling=["groq"], failed_webhooks=2, failed_meter_events=1, drift={"credits.ledger": 3}
    )
    assert [(a["level"], a["code"]) for a in alerts] == [
        ("critical", "budget"),
        ("critical", "ledger_drift"),
        ("warning", "provider_cooldown"),
        ("warning", "webhooks_failed"),
        ("warning", "meter_events_failed"),
    ]
    assert "DAILY_BUDGET_USD" in alerts[0]["action"] and "95.00%" in alerts[0]["message"]


def test_no_alerts_when_all_is_well(today):
    budget = selectors.budget_status_get(today=today)
    assert (
        selectors.operator_alerts_list(
            budget=budget, cooling=[], failed_webhooks=0, failed_meter_events=0, drift={}
        )
        == []
    )


def test_open_drift_counts_per_source(now):
    from core.models import ReconciliationDrift

    def drift(source, subject, resolved=False):
        ReconciliationDrift.objects.create(
            source=source,
            subject=subject,
            expected="1",
            actual="2",
            detected_at=now,
            last_seen_at=now,
            resolved_at=now if resolved else None,
        )

    assert selectors.drift_open_counts_get() == {}
    drift("credits.ledger", "user:1")
    drift("credits.ledger", "user:2")
    drift("credits.ledger", "user:3", resolved=True)
    drift("organizations.meter", "report:9")
    assert selectors.drift_open_counts_get() == {"credits.ledger": 2, "organizations.meter": 1}


def test_credits_overview(settings, now):
    settings.EXCHANGE_RATES_TO_USD = {"eur": Decimal("1.00")}
    a, b = UserFactory(), UserFactory()
    for _ in range(6):
        upsell_event_create(user=a)
    for _ in range(2):
        upsell_event_create(user=b, kind="modal_view")
    upsell_event_create(user=b, kind="click")
    credit_purchase_create(user=a, amount_minor=1900)
    credit_purchase_create(user=a, amount_minor=7900)
    StripeEventFactory(status=StripeEvent.Status.PROCESSED)
    overview = selectors.credits_overview_get(since=now - timedelta(days=30))
    assert overview == {
        "upsell_views": 8,
        "buy_clicks": 1,
        "purchases": 2,
        "conversion_percent": Decimal("25.00"),
        "average_basket_usd": Decimal("49.00"),
        "revenue_usd": Decimal("98.00"),
        "revenue_per_user_usd": Decimal("98.00"),
        "webhook_success_rate": Decimal("100.0"),
    }


def test_organizations_block_splits_pending_and_linked():
    pending = OrganizationFactory(name="Acme")
    linked = OrganizationFactory(name="Prod", stripe_subscription_id="sub_1", stripe_customer_id="cus_1")
    block = selectors.organizations_block_get()
    assert block["summary"] == {"total": 2, "linked": 1, "pending": 1}
    assert block["pending"] == [pending] and block["linked"] == [linked]
