"""Each operator number against fixtures small enough to compute by hand."""

from datetime import timedelta
from decimal import Decimal

import pytest

from accounts.models import InvalidKeyDay, Role
from billing.models import StripeEvent
from core.models import ReconciliationDrift
from dashboards.selectors import operator
from dashboards.tests.factories import (
    DailySpendFactory,
    OrganizationFactory,
    RollupFactory,
    StripeEventFactory,
    UsageReportFactory,
    UserFactory,
    credit_purchase_create,
    personal_workspace_new,
    team_workspace_create,
    upsell_event_create,
)
from organizations.models import UsageReport
from proxy import budget as proxy_budget
from proxy.models import RateLimitedDay
from proxy.router import provider_failure_record

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
    budget = operator.budget_status_get(today=today)
    assert budget.spent_usd == Decimal(spent)
    assert budget.limit_usd == Decimal("50")
    assert budget.percent_used == Decimal(percent)
    assert budget.alert_level == level
    assert budget.remaining_usd == max(Decimal("50") - Decimal(spent), Decimal(0))


def test_budget_counts_reservations_in_flight(settings, today):
    """The live counter (DB spend + reservations) is what the router compares with the cap."""
    settings.DAILY_BUDGET_USD = Decimal("10")
    DailySpendFactory(day=today, spent_usd=Decimal("2"))
    assert proxy_budget.budget_reserve(day=today, amount_micro=3_000_000, hold_id="in-flight")
    assert operator.budget_status_get(today=today).spent_usd == Decimal("5")


# --- customers (workspaces) ------------------------------------------------------------------


def test_active_customers_are_workspaces_and_average_cost_is_per_workspace(today):
    a, b = personal_workspace_new(), personal_workspace_new()
    RollupFactory(workspace=a, provider="groq", day=today, cost_usd=Decimal("0"))
    RollupFactory(workspace=a, provider="openai", day=today, cost_usd=Decimal("1.50"))
    RollupFactory(workspace=b, provider="openai", day=today, cost_usd=Decimal("0.25"))
    RollupFactory(
        workspace=personal_workspace_new(), provider="openai", day=today - timedelta(days=1), cost_usd=9
    )
    # A team whose two members both called is one customer.
    team = team_workspace_create(owner=UserFactory(), members={UserFactory(): Role.DEVELOPER})
    RollupFactory(workspace=team, provider="groq", day=today, cost_usd=Decimal("0.25"))
    assert operator.workspaces_active_today_count(today=today) == 3
    assert operator.workspaces_avg_cost_today_get(today=today) == Decimal("0.666667")


def test_average_cost_without_customers_is_zero(today):
    assert operator.workspaces_avg_cost_today_get(today=today) == Decimal("0")


def _flagged(rows, *fields):
    return [tuple(r[f] for f in ("workspace_id", *fields)) for r in rows]


def test_abusive_workspaces_by_requests_or_errors(settings, today):
    settings.ABUSE_REQUESTS_PER_DAY = 100
    settings.ABUSE_ERRORS_PER_DAY = 10
    loud, failing, fine = personal_workspace_new(), personal_workspace_new(), personal_workspace_new()
    RollupFactory(workspace=loud, provider="groq", day=today, requests=60)
    RollupFactory(workspace=loud, provider="openai", day=today, requests=40)  # 100 across providers
    RollupFactory(workspace=failing, day=today, requests=12, errors=10)
    RollupFactory(workspace=fine, day=today, requests=99, errors=9)
    RollupFactory(workspace=fine, day=today - timedelta(days=1), requests=500)  # yesterday does not count
    rows = operator.workspaces_abusive_list(today=today)
    assert _flagged(rows, "owner_email", "requests_today", "errors_today", "reasons") == [
        (loud.pk, loud.personal_owner.email, 100, 0, ["requests"]),
        (failing.pk, failing.personal_owner.email, 12, 10, ["errors"]),
    ]


def test_a_team_is_flagged_once_with_its_name_and_earliest_owner(settings, today):
    settings.ABUSE_REQUESTS_PER_DAY = 100
    founder, cofounder, developer = UserFactory(), UserFactory(), UserFactory()
    team = team_workspace_create(
        owner=founder, members={cofounder: Role.OWNER, developer: Role.DEVELOPER}, name="Loud team"
    )
    RollupFactory(workspace=team, provider="groq", day=today, requests=150)

    (row,) = operator.workspaces_abusive_list(today=today)

    assert (row["workspace_id"], row["workspace_name"], row["owner_email"]) == (
        team.pk,
        "Loud team",
        founder.email,
    )


def test_abusive_workspaces_include_keys_kept_past_their_rate_limit(settings, today):
    settings.ABUSE_REQUESTS_PER_DAY = 100
    settings.ABUSE_ERRORS_PER_DAY = 10
    settings.ABUSE_RATE_LIMITED_MINUTES_PER_DAY = 30
    hammering, quiet_but_loud, almost = (
        personal_workspace_new(),
        personal_workspace_new(),
        personal_workspace_new(),
    )
    RateLimitedDay.objects.create(workspace=hammering, day=today, minutes=30)  # refused only: no rollup
    RollupFactory(workspace=quiet_but_loud, day=today, requests=150)
    RateLimitedDay.objects.create(workspace=quiet_but_loud, day=today, minutes=3)
    RateLimitedDay.objects.create(workspace=almost, day=today, minutes=29)
    RateLimitedDay.objects.create(workspace=almost, day=today - timedelta(days=1), minutes=500)  # yesterday

    rows = operator.workspaces_abusive_list(today=today)

    assert _flagged(rows, "requests_today", "errors_today", "rate_limited_minutes_today", "reasons") == [
        (quiet_but_loud.pk, 150, 0, 3, ["requests"]),
        (hammering.pk, 0, 0, 30, ["rate_limited"]),
    ]


def test_abusive_workspaces_include_dead_keys_still_being_tried(settings, today):
    settings.ABUSE_INVALID_KEY_MINUTES_PER_DAY = 10
    leaked, almost, also_limited = (
        personal_workspace_new(),
        personal_workspace_new(),
        personal_workspace_new(),
    )
    InvalidKeyDay.objects.create(workspace=leaked, day=today, minutes=10)  # refused only: no rollup
    InvalidKeyDay.objects.create(workspace=almost, day=today, minutes=9)
    InvalidKeyDay.objects.create(workspace=almost, day=today - timedelta(days=1), minutes=500)  # yesterday
    InvalidKeyDay.objects.create(workspace=also_limited, day=today, minutes=12)
    RateLimitedDay.objects.create(
        workspace=also_limited, day=today, minutes=settings.ABUSE_RATE_LIMITED_MINUTES_PER_DAY
    )

    rows = operator.workspaces_abusive_list(today=today)

    assert sorted(
        _flagged(rows, "rate_limited_minutes_today", "invalid_key_minutes_today", "reasons")
    ) == sorted(
        [
            (leaked.pk, 0, 10, ["invalid_keys"]),
            (
                also_limited.pk,
                settings.ABUSE_RATE_LIMITED_MINUTES_PER_DAY,
                12,
                ["rate_limited", "invalid_keys"],
            ),
        ]
    )


# --- alerts, webhooks, credits, organizations -------------------------------------------------


def test_failed_webhooks_and_success_rate(now):
    StripeEventFactory.create_batch(3, status=StripeEvent.Status.PROCESSED)
    StripeEventFactory(status=StripeEvent.Status.IGNORED)
    StripeEventFactory(status=StripeEvent.Status.FAILED)
    StripeEventFactory(status=StripeEvent.Status.FAILED, received_at=now - timedelta(days=40))
    since = now - timedelta(days=30)
    assert operator.stripe_events_failed_count(since=since) == 1
    assert operator.webhook_success_rate_get(since=since) == Decimal("80.0")  # 4 of 5


def test_webhook_success_rate_without_events_is_none(now):
    assert operator.webhook_success_rate_get(since=now) is None


def test_failed_meter_events():
    UsageReportFactory(billing_status=UsageReport.BillingStatus.FAILED)
    UsageReportFactory(billing_status=UsageReport.BillingStatus.SENT)
    assert operator.meter_events_failed_count() == 1


def test_providers_in_cooldown_read_the_router_state(settings):
    settings.PROXY_COOLDOWN_FAILURES = 2
    provider_failure_record(provider="openai")
    assert operator.providers_in_cooldown_list() == []
    provider_failure_record(provider="openai")
    assert operator.providers_in_cooldown_list() == ["openai"]


def test_alerts_list_severity_and_actions(today, settings):
    settings.DAILY_BUDGET_USD = Decimal("10")
    DailySpendFactory(day=today, spent_usd=Decimal("9.5"))
    budget = operator.budget_status_get(today=today)
    alerts = operator.operator_alerts_list(
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
    budget = operator.budget_status_get(today=today)
    assert (
        operator.operator_alerts_list(
            budget=budget, cooling=[], failed_webhooks=0, failed_meter_events=0, drift={}
        )
        == []
    )


def test_open_drift_counts_per_source(now):
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

    assert operator.drift_open_counts_get() == {}
    drift("credits.ledger", "workspace:1")
    drift("credits.ledger", "workspace:2")
    drift("credits.ledger", "workspace:3", resolved=True)
    drift("organizations.meter", "report:9")
    assert operator.drift_open_counts_get() == {"credits.ledger": 2, "organizations.meter": 1}


def test_credits_overview(settings, now):
    settings.EXCHANGE_RATES_TO_USD = {"eur": Decimal("1.00")}
    a, b = personal_workspace_new(), personal_workspace_new()
    for _ in range(6):
        upsell_event_create(workspace=a)
    for _ in range(2):
        upsell_event_create(workspace=b, kind="modal_view")
    upsell_event_create(workspace=b, kind="click")
    credit_purchase_create(workspace=a, amount_minor=1900)
    credit_purchase_create(workspace=a, amount_minor=7900)
    StripeEventFactory(status=StripeEvent.Status.PROCESSED)
    overview = operator.credits_overview_get(since=now - timedelta(days=30))
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
    block = operator.organizations_block_get()
    assert block["summary"] == {"total": 2, "linked": 1, "pending": 1}
    assert block["pending"] == [pending] and block["linked"] == [linked]
