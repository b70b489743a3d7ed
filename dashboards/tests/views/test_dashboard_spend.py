"""The dashboard's Spend card (range links, custom dates, the chart by day or hour in the viewer's
time zone, the tables by model and key) and its last-10-calls table that links to Activity."""

from datetime import UTC, datetime

import pytest
import time_machine

from dashboards.tests.factories import ApiKeyFactory, UsageEventFactory
from dashboards.tests.spend_helpers import spend_row

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 12, 6, 15, 20, tzinfo=UTC)


@pytest.fixture
def clock():
    with time_machine.travel(NOW, tick=False):
        yield NOW


def _spend_chart(html: str) -> str:
    start = html.index('id="chart-spend"')
    return html[start : html.index("</figure>", start)]


def test_the_spend_card_shows_the_last_30_days_by_model_and_key(clock, client, user, workspace):
    key = ApiKeyFactory(workspace=workspace, created_by=user, name="backend")
    spend_row(workspace, datetime(2026, 12, 6, 9, tzinfo=UTC), key=key, requests=2, prompt_tokens=20,
              completion_tokens=30, charge_credits=12, charge_micros=150_000)  # fmt: skip
    spend_row(workspace, datetime(2026, 12, 2, 9, tzinfo=UTC), model="/api/proxy/email/send", currency="",
              charge_credits=3)  # fmt: skip
    client.force_login(user)

    html = client.get("/dashboard/").content.decode()

    assert 'id="spend" data-range="30d"' in html
    assert "Spend, last 30 days" in html
    chart = _spend_chart(html)
    assert chart.count('class="bar"') == 30
    assert 'data-day="2026-12-06" data-value="12"' in chart
    assert 'data-day="2026-12-02" data-value="3"' in chart
    assert '<tr data-model="gpt-4o">' in html and '<tr data-model="/api/proxy/email/send">' in html
    assert f'<tr data-key-id="{key.pk}">' in html and "0.15 EUR" in html
    assert '<tr data-key-id="">' in html and "No key" in html
    assert 'aria-current="page" data-range="30d"' in html


def test_the_24h_range_draws_hours_and_a_custom_range_days(clock, client, user, workspace):
    spend_row(workspace, datetime(2026, 12, 6, 14, tzinfo=UTC), charge_credits=4)
    client.force_login(user)

    hourly = client.get("/dashboard/", {"range": "24h"}).content.decode()
    custom = client.get("/dashboard/", {"from": "2026-12-01", "to": "2026-12-06"}).content.decode()

    assert 'id="spend" data-range="24h"' in hourly and "Spend, last 24 h" in hourly
    assert _spend_chart(hourly).count('class="bar"') == 24
    assert 'data-day="2026-12-06T14:00:00+00:00" data-value="4"' in hourly
    assert 'id="spend" data-range="custom"' in custom
    assert _spend_chart(custom).count('class="bar"') == 6
    assert 'name="from" id="spend-from" value="2026-12-01"' in custom


def test_days_follow_the_viewers_time_zone(clock, client, user, workspace):
    user.time_zone = "Europe/Paris"
    user.save(update_fields=["time_zone"])
    spend_row(workspace, datetime(2026, 12, 5, 23, tzinfo=UTC), charge_credits=5)  # Dec 6 in Paris
    client.force_login(user)

    html = client.get("/dashboard/", {"range": "7d"}).content.decode()

    assert "Days in Europe/Paris" in html
    assert 'data-day="2026-12-06" data-value="5"' in _spend_chart(html)


def test_bad_spend_parameters_show_the_last_30_days_with_a_note(clock, client, user):
    client.force_login(user)

    response = client.get("/dashboard/", {"from": "2026-12-09", "to": "2026-12-01"})

    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="spend" data-range="30d"' in html
    assert "to must be on or after from. Showing the last 30 days." in html


def test_the_dashboard_keeps_the_last_10_calls_and_links_to_activity(client, user, workspace):
    key = ApiKeyFactory(workspace=workspace, created_by=user)
    for _ in range(12):
        UsageEventFactory(workspace=workspace, api_key=key, status_code=200)
    client.force_login(user)

    html = client.get("/dashboard/").content.decode()

    assert html.count('data-status="200"') == 10
    assert "Last 10 calls" in html
    assert 'href="/activity/" id="see-all-activity"' in html
