"""The spend overview (``dashboards.selectors.spend``): buckets in the viewer's time zone, spend
per model and key, money per currency, who sees which keys, and only the rollup is read."""

import zoneinfo
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import Role
from core.exceptions import ApiError
from dashboards.selectors.spend import MAX_DAYS, Money, spend_period_get, spend_summary_get
from dashboards.tests.factories import ApiKeyFactory, UsageEventFactory, UserFactory, team_workspace_create
from dashboards.tests.spend_helpers import spend_row

pytestmark = pytest.mark.django_db

PARIS = zoneinfo.ZoneInfo("Europe/Paris")  # UTC+1 in December
KOLKATA = zoneinfo.ZoneInfo("Asia/Kolkata")  # UTC+5:30: days do not start on a UTC hour
NOW = datetime(2026, 12, 6, 15, 20, tzinfo=UTC)


def _utc(day: int, hour: int) -> datetime:
    return datetime(2026, 12, day, hour, tzinfo=UTC)


def _custom(zone, since: str, until: str):
    return spend_period_get(now=NOW, zone=zone, date_from=since, date_to=until)


def test_days_are_cut_in_the_viewers_time_zone(workspace):
    spend_row(workspace, _utc(5, 22), charge_credits=3)  # 23:00 in Paris, Dec 5
    spend_row(workspace, _utc(5, 23), charge_credits=7)  # 00:00 in Paris, Dec 6

    paris = spend_summary_get(workspace=workspace, period=_custom(PARIS, "2026-12-05", "2026-12-06"))
    in_utc = spend_summary_get(workspace=workspace, period=_custom(UTC, "2026-12-05", "2026-12-06"))

    assert [(b.start, b.charge_credits) for b in paris.buckets] == [
        (datetime(2026, 12, 5, tzinfo=PARIS), 3),
        (datetime(2026, 12, 6, tzinfo=PARIS), 7),
    ]
    assert [b.charge_credits for b in in_utc.buckets] == [10, 0]


def test_a_half_hour_zone_puts_each_hour_on_the_day_it_starts_in(workspace):
    spend_row(workspace, _utc(5, 18), charge_credits=1)  # 23:30 in Kolkata, Dec 5
    spend_row(workspace, _utc(5, 19), charge_credits=2)  # 00:30 in Kolkata, Dec 6

    summary = spend_summary_get(workspace=workspace, period=_custom(KOLKATA, "2026-12-06", "2026-12-06"))

    assert [b.charge_credits for b in summary.buckets] == [2]
    assert summary.totals.charge_credits == 2


def test_the_last_24_hours_are_24_hourly_buckets_ending_with_this_hour(workspace):
    spend_row(workspace, _utc(6, 15), charge_credits=4)  # this hour
    spend_row(workspace, _utc(5, 16), charge_credits=5)  # the first of the 24
    spend_row(workspace, _utc(5, 15), charge_credits=100)  # 25 hours ago: out

    period = spend_period_get(now=NOW, zone=PARIS, range_key="24h")
    summary = spend_summary_get(workspace=workspace, period=period)

    assert period.hourly and len(summary.buckets) == 24
    assert summary.buckets[0].start == _utc(5, 16).astimezone(PARIS)
    assert (summary.buckets[0].charge_credits, summary.buckets[-1].charge_credits) == (5, 4)
    assert summary.totals.charge_credits == 9


@pytest.mark.parametrize(("range_key", "days"), [("7d", 7), ("30d", 30), (None, 30)])
def test_day_ranges_end_today_in_the_viewers_zone(workspace, range_key, days):
    spend_row(workspace, _utc(5, 23), charge_credits=2)  # Dec 6 in Paris: today
    spend_row(workspace, NOW - timedelta(days=days + 1), charge_credits=100)  # before the range

    period = spend_period_get(now=NOW, zone=PARIS, range_key=range_key)
    summary = spend_summary_get(workspace=workspace, period=period)

    assert len(summary.buckets) == days
    assert (period.since, period.until) == (date(2026, 12, 6) - timedelta(days=days - 1), date(2026, 12, 6))
    assert summary.buckets[-1].charge_credits == 2
    assert summary.totals.charge_credits == 2


def test_spend_per_model_and_key_with_names_money_and_totals(workspace, other_workspace, user):
    backend = ApiKeyFactory(workspace=workspace, created_by=user, name="backend")
    batch = ApiKeyFactory(workspace=workspace, created_by=user, name="batch")
    gone = ApiKeyFactory(workspace=workspace, created_by=user, name="old")
    hour = _utc(6, 10)
    spend_row(workspace, hour, key=backend, requests=3, errors=1, prompt_tokens=30, completion_tokens=45,
              charge_credits=18, charge_micros=225_000)  # fmt: skip
    spend_row(
        workspace, _utc(6, 11), key=backend, model="gpt-4o-mini", charge_credits=2, charge_micros=25_000
    )
    spend_row(workspace, hour, key=batch, currency="usd", charge_credits=4, charge_micros=40_000)
    spend_row(workspace, hour, key=gone, charge_credits=1, charge_micros=12_500)
    spend_row(
        workspace, hour, model="/api/proxy/email/send", currency="", charge_credits=1
    )  # no key, no price
    spend_row(other_workspace, hour, charge_credits=999, charge_micros=9_990_000)  # another tenant's
    gone_id = gone.pk
    gone.delete()  # its spend stays counted, under no name

    summary = spend_summary_get(workspace=workspace, period=_custom(UTC, "2026-12-06", "2026-12-06"))

    totals = summary.totals
    assert (totals.requests, totals.errors, totals.tokens, totals.charge_credits) == (7, 1, 75, 26)
    assert [(m.currency, m.micros, m.display) for m in totals.money] == [
        ("eur", 262_500, "0.2625 EUR"),
        ("usd", 40_000, "0.04 USD"),
    ]
    assert [(row.model, row.requests, row.charge_credits) for row in summary.by_model] == [
        ("gpt-4o", 5, 23),
        ("gpt-4o-mini", 1, 2),
        ("/api/proxy/email/send", 1, 1),
    ]
    assert [(row.key_id, row.name, row.charge_credits) for row in summary.by_key] == [
        (backend.pk, "backend", 20),
        (batch.pk, "batch", 4),
        (gone_id, "Deleted key", 1),
        (None, "No key", 1),
    ]
    assert summary.by_key[0].prefix == backend.prefix
    assert summary.by_key[-1].money == []


def test_a_member_who_may_not_manage_every_key_sees_only_their_own(user):
    developer = UserFactory()
    workspace = team_workspace_create(owner=user, members={developer: Role.DEVELOPER})
    theirs = ApiKeyFactory(workspace=workspace, created_by=developer, name="dev key")
    owners = ApiKeyFactory(workspace=workspace, created_by=user, name="owner key")
    spend_row(workspace, _utc(6, 10), key=theirs, charge_credits=2)
    spend_row(workspace, _utc(6, 10), key=owners, charge_credits=50)
    spend_row(workspace, _utc(6, 10), charge_credits=7)  # no key: not theirs either
    period = _custom(UTC, "2026-12-06", "2026-12-06")

    own = spend_summary_get(workspace=workspace, period=period, created_by=developer)
    everything = spend_summary_get(workspace=workspace, period=period)

    assert [row.name for row in own.by_key] == ["dev key"] and own.totals.charge_credits == 2
    assert everything.totals.charge_credits == 59


def test_the_summary_reads_only_the_rollup_in_two_queries(workspace, user):
    key = ApiKeyFactory(workspace=workspace, created_by=user)
    UsageEventFactory(workspace=workspace, api_key=key)
    for offset in range(48):
        spend_row(workspace, NOW - timedelta(hours=offset), key=key, charge_credits=1)
    period = spend_period_get(now=NOW, zone=PARIS, range_key="30d")

    with CaptureQueriesContext(connection) as queries:
        summary = spend_summary_get(workspace=workspace, period=period)

    assert summary.totals.charge_credits == 48
    sql = [q["sql"] for q in queries.captured_queries]
    assert len(sql) == 2, sql  # the grouped rollup, the key names
    assert all("proxy_usageevent" not in text for text in sql)
    assert "proxy_usagespendhourly" in sql[0]


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"range_key": "1y"}, "range"),
        ({"range_key": "custom"}, "range"),
        ({"date_from": "2026-12-01"}, "to"),
        ({"date_to": "2026-12-01"}, "from"),
        ({"date_from": "2026-13-01", "date_to": "2026-12-01"}, "from"),
        ({"date_from": "2026-12-05", "date_to": "2026-12-01"}, "to"),
        ({"date_from": "2025-01-01", "date_to": "2026-12-01"}, "to"),  # over MAX_DAYS
        ({"range_key": "7d", "date_from": "2026-12-01", "date_to": "2026-12-02"}, "range"),
        ({"date_from": "0001-01-01", "date_to": "0001-01-02"}, "from"),
    ],
)
def test_bad_periods_name_the_parameter(params, param):
    with pytest.raises(ApiError) as caught:
        spend_period_get(now=NOW, zone=UTC, **params)
    assert (caught.value.code, caught.value.param) == ("invalid_request", param)


def test_a_custom_range_may_span_exactly_the_maximum():
    since = date(2026, 1, 1)
    until = since + timedelta(days=MAX_DAYS - 1)
    period = spend_period_get(now=NOW, zone=UTC, date_from=since.isoformat(), date_to=until.isoformat())
    assert (period.range, period.since, period.until, period.hourly) == ("custom", since, until, False)


def test_money_prints_two_decimals_at_least_and_the_micro_at_most():
    assert Money(currency="eur", micros=75_000).display == "0.075 EUR"
    assert Money(currency="usd", micros=12_000_000).display == "12.00 USD"
    assert Money(currency="eur", micros=1).amount == Decimal("0.000001")
