"""MRR, subscriptions, churn and failed payments against fixtures small enough to compute by
hand; the date range; and the changelist each number links to lists the rows it counts."""

import uuid
from datetime import date, timedelta
from decimal import Decimal

import pytest

from billing.models import Gateway, PaymentTransaction, Plan, Subscription
from dashboards.selectors import business
from dashboards.tests.factories import (
    StaffFactory,
    StripeEventFactory,
    SubscriptionFactory,
    personal_workspace_new,
)

pytestmark = pytest.mark.django_db

ACTIVE, TRIALING, PAST_DUE, CANCELED = (
    Subscription.Status.ACTIVE,
    Subscription.Status.TRIALING,
    Subscription.Status.PAST_DUE,
    Subscription.Status.CANCELED,
)


@pytest.fixture
def now(midday):
    return midday


@pytest.fixture
def plans(db):
    monthly = Plan.objects.create(
        code="t-monthly", name="T monthly", price_minor=1000, currency="eur", price_dzd_minor=300000
    )
    yearly = Plan.objects.create(
        code="t-yearly", name="T yearly", price_minor=12000, currency="eur", interval=Plan.Interval.YEAR
    )
    return monthly, yearly


def sub(plan, *, activated_at, status=ACTIVE, ended_at=None, **kw):
    return SubscriptionFactory(plan=plan, status=status, activated_at=activated_at, ended_at=ended_at, **kw)


def failed_payment(*, completed_at, status=PaymentTransaction.Status.FAILED):
    return PaymentTransaction.objects.create(
        workspace=personal_workspace_new(),
        gateway=Gateway.CHARGILY,
        kind=PaymentTransaction.Kind.PLAN,
        reference=f"ref-{uuid.uuid4()}",
        amount_minor=300000,
        currency="dzd",
        status=status,
        completed_at=completed_at,
    )


# --- now ----------------------------------------------------------------------------------------


def test_mrr_counts_monthly_and_yearly_paid_plans_and_not_trials(now, plans, settings):
    settings.EXCHANGE_RATES_TO_USD = {"eur": Decimal("1.08"), "dzd": Decimal("0.0074")}
    monthly, yearly = plans
    week_ago = now - timedelta(days=7)
    sub(monthly, activated_at=week_ago)  # 10.00 EUR
    sub(yearly, activated_at=week_ago)  # 120.00 EUR a year = 10.00 EUR a month
    sub(monthly, activated_at=week_ago, status=PAST_DUE)  # still paying (Stripe retries)
    sub(monthly, activated_at=week_ago, status=TRIALING)  # a trial is not revenue yet
    sub(monthly, activated_at=week_ago, gateway=Gateway.CHARGILY)  # 3 000 DZD
    sub(monthly, activated_at=week_ago - timedelta(days=30), status=CANCELED, ended_at=week_ago)

    live = business.subscriptions_live_get()

    assert live["mrr"]["by_currency_minor"] == {"dzd": 300000, "eur": 3000}
    assert live["mrr"]["usd"] == Decimal("54.60")  # 30 EUR * 1.08 + 3 000 DZD * 0.0074
    assert (live["paid"], live["trials"]) == (4, 1)
    rows = {row["plan"]: row for row in live["by_plan"]}
    assert (rows["t-monthly"]["paid"], rows["t-monthly"]["trials"]) == (3, 1)
    assert (rows["t-yearly"]["paid"], rows["t-yearly"]["trials"]) == (1, 0)
    assert rows["t-yearly"]["mrr"]["by_currency_minor"] == {"eur": 1000}


# --- the 12-week trend --------------------------------------------------------------------------


def test_twelve_iso_weeks_oldest_first_the_last_one_now(now, plans):
    weeks = business.weeks_list(now=now)
    assert len(weeks) == 12
    mondays = [monday for monday, _, _ in weeks]
    assert all(monday.isoweekday() == 1 for monday in mondays)
    assert all(b - a == timedelta(weeks=1) for a, b in zip(mondays, mondays[1:], strict=False))
    assert weeks[-1][1] <= now and weeks[-1][2] == now
    points = business.business_overview_get(now=now)["trend"]
    assert [p["week"] for p in points] == mondays


def test_weekly_mrr_follows_when_subscriptions_started_and_ended(now, plans):
    monthly, _ = plans
    weeks = business.weeks_list(now=now)
    sub(monthly, activated_at=weeks[6][1] + timedelta(days=1))  # from week 6 on
    sub(
        monthly,
        activated_at=weeks[0][1] - timedelta(days=60),
        status=CANCELED,
        ended_at=weeks[9][1] + timedelta(days=2),
    )

    points = business.subscriptions_weekly_get(weeks=weeks)

    assert [p["mrr"]["by_currency_minor"].get("eur", 0) for p in points] == [1000] * 6 + [2000] * 3 + [
        1000
    ] * 3
    assert [p["paid"] for p in points] == [1] * 6 + [2] * 3 + [1] * 3


def test_churn_of_a_week_counts_a_cancel_but_not_a_replacement(now, plans):
    monthly, yearly = plans
    weeks = business.weeks_list(now=now)
    _, start, end = weeks[-2]  # last full week
    long_ago, midweek = start - timedelta(days=40), start + timedelta(days=3)
    canceled = sub(monthly, activated_at=long_ago, status=CANCELED, ended_at=midweek)
    replacement = sub(yearly, activated_at=midweek)
    replaced = sub(
        monthly,
        workspace=replacement.workspace,
        activated_at=long_ago,
        status=CANCELED,
        ended_at=midweek,
        replaced_by=replacement,
        replaced_at=midweek,
    )
    sub(monthly, activated_at=long_ago)  # stays

    week = business.subscriptions_weekly_get(weeks=weeks)[-2]

    assert (week["live_at_start"], week["churned"], week["churn_percent"]) == (3, 1, Decimal("33.3"))
    assert canceled.pk != replaced.pk


def test_failed_payments_per_week(now, plans):
    weeks = business.weeks_list(now=now)
    this_week, last_week = weeks[-1][1], weeks[-2][1]
    failed_payment(completed_at=this_week + timedelta(minutes=5))
    failed_payment(completed_at=last_week + timedelta(days=1))
    failed_payment(completed_at=this_week + timedelta(minutes=5), status=PaymentTransaction.Status.PAID)
    StripeEventFactory(type="invoice.payment_failed", received_at=this_week + timedelta(minutes=1))
    StripeEventFactory(type="invoice.paid", received_at=this_week + timedelta(minutes=1))

    points = business.payments_failed_weekly_get(weeks=weeks)

    assert (points[-1]["transactions"], points[-1]["invoices"], points[-1]["total"]) == (1, 1, 2)
    assert (points[-2]["transactions"], points[-2]["invoices"], points[-2]["total"]) == (1, 0, 1)
    assert sum(p["total"] for p in points[:-2]) == 0


def test_business_block_is_four_queries_whatever_the_rows(now, plans, django_assert_max_num_queries):
    monthly, yearly = plans
    for i in range(12):
        sub([monthly, yearly][i % 2], activated_at=now - timedelta(weeks=i))
        failed_payment(completed_at=now - timedelta(weeks=i))
    with django_assert_max_num_queries(4):
        business.business_overview_get(now=now)


# --- the date range -----------------------------------------------------------------------------

TODAY = date(2026, 6, 15)
DEFAULT = (date(2026, 5, 17), TODAY)


@pytest.mark.parametrize(
    ("since", "until", "expected", "noted"),
    [
        (None, None, DEFAULT, False),
        ("2026-06-01", "2026-06-10", (date(2026, 6, 1), date(2026, 6, 10)), False),
        ("2026-06-01", None, (date(2026, 6, 1), TODAY), False),
        ("01/06/2026", "2026-06-10", DEFAULT, True),
        ("2026-06-10", "2026-06-01", DEFAULT, True),  # reversed
        ("2026-06-01", "2026-07-01", DEFAULT, True),  # future
        ("2024-01-01", "2026-06-01", DEFAULT, True),  # longer than a year
        ("2026-02-30", None, DEFAULT, True),  # no such day
    ],
)
def test_date_range_parse(since, until, expected, noted):
    period = business.date_range_parse(since=since, until=until, today=TODAY)
    assert (period.since, period.until) == expected
    assert bool(period.notes) is noted


def test_page_and_json_answer_a_bad_range_with_the_default_and_a_note(now, client, api_client, catalog):
    staff = StaffFactory()
    client.force_login(staff)
    response = client.get("/admin/dashboard/", {"since": "yesterday", "until": "2026-13-01"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "data-range-note" in html and "showing the last 30 days" in html
    api_client.force_authenticate(staff)
    body = api_client.get("/api/admin/dashboard", {"since": "2026-06-10", "until": "2026-06-01"}).json()
    assert body["period"]["since"] == (now.date() - timedelta(days=29)).isoformat()
    assert body["period"]["notes"] == ["The start date is after the end date; showing the last 30 days."]
    assert len(body["business"]["trend"]) == 12 and body["business"]["trials_url"].startswith("/admin/")


def test_a_valid_range_sets_the_economics_period(now, client, catalog):
    client.force_login(StaffFactory())
    since = now.date() - timedelta(days=3)
    response = client.get("/admin/dashboard/", {"since": since.isoformat(), "until": now.date().isoformat()})
    assert response.context["data"]["period"] == {"since": since, "until": now.date()}
    assert "data-range-note" not in response.content.decode()


# --- every number links to the list behind it -----------------------------------------------------


def _listed(client, url: str, model, *rows) -> set[int]:
    """Which of ``rows`` the admin changelist at ``url`` lists (by their change links)."""
    response = client.get(url)
    assert response.status_code == 200, url
    html = response.content.decode()
    return {
        row.pk
        for row in rows
        if f"/admin/{model._meta.app_label}/{model._meta.model_name}/{row.pk}/change/" in html
    }


def test_the_links_list_the_rows_each_number_counts(now, plans, client, catalog):
    client.force_login(StaffFactory())
    monthly, yearly = plans
    weeks = business.weeks_list(now=now)
    _, start, _ = weeks[-1]
    long_ago = start - timedelta(days=40)
    paid = sub(monthly, activated_at=long_ago)
    other_plan = sub(yearly, activated_at=long_ago)
    trial = sub(monthly, activated_at=long_ago, status=TRIALING)
    churned = sub(monthly, activated_at=long_ago, status=CANCELED, ended_at=start + timedelta(minutes=30))
    replacement = sub(yearly, activated_at=start + timedelta(minutes=30))
    replaced = sub(
        monthly,
        workspace=replacement.workspace,
        activated_at=long_ago,
        status=CANCELED,
        ended_at=start + timedelta(minutes=30),
        replaced_by=replacement,
        replaced_at=start + timedelta(minutes=30),
    )
    failed = failed_payment(completed_at=start + timedelta(minutes=5))
    old_failure = failed_payment(completed_at=start - timedelta(days=1))
    invoice = StripeEventFactory(type="invoice.payment_failed", received_at=start + timedelta(minutes=1))
    other_event = StripeEventFactory(type="invoice.paid", received_at=start + timedelta(minutes=1))

    block = business.business_overview_get(now=now)
    everyone = (paid, other_plan, trial, churned, replacement, replaced)

    assert _listed(client, block["trials_url"], Subscription, *everyone) == {trial.pk}
    assert _listed(client, block["paid_url"], Subscription, *everyone) == {
        paid.pk,
        other_plan.pk,
        replacement.pk,
    }
    by_plan = {row["plan"]: row for row in block["by_plan"]}
    assert _listed(client, by_plan["t-monthly"]["paid_url"], Subscription, *everyone) == {paid.pk}
    assert block["churn_this_week"]["churned"] == 1
    assert _listed(client, block["churn_this_week"]["url"], Subscription, *everyone) == {churned.pk}
    week = block["failed_this_week"]
    assert (week["transactions"], week["invoices"]) == (1, 1)
    assert _listed(client, week["transactions_url"], PaymentTransaction, failed, old_failure) == {failed.pk}
    assert _listed(client, week["invoices_url"], type(invoice), invoice, other_event) == {invoice.pk}


def test_the_page_shows_the_numbers_with_their_links(now, plans, client, catalog):
    client.force_login(StaffFactory())
    monthly, _ = plans
    sub(monthly, activated_at=now - timedelta(days=3), status=TRIALING)
    html = client.get("/admin/dashboard/").content.decode()
    block = business.business_overview_get(now=now)
    assert block["trials"] == 1
    assert f'href="{block["trials_url"].replace("&", "&amp;")}" data-number="trials">1</a>' in html
    assert html.count('class="chart ') >= 5 and 'id="business-weeks"' in html
