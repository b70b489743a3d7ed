from decimal import Decimal

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from accounts.models import Role
from accounts.tenancy import SESSION_WORKSPACE_KEY
from dashboards.tests.factories import (
    ApiKeyFactory,
    DailySpendFactory,
    RollupFactory,
    UsageEventFactory,
    team_workspace_create,
)

pytestmark = pytest.mark.django_db


def test_metrics_needs_token_or_allowed_address(client, settings):
    settings.METRICS_TOKEN = "s3cret-scrape-token"
    settings.METRICS_ALLOWED_IPS = []
    assert client.get("/metrics").status_code == 403
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong")
    assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-scrape-token").status_code == 200
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 403
    settings.METRICS_ALLOWED_IPS = ["127.0.0.1"]
    assert client.get("/metrics").status_code == 200  # the test client's REMOTE_ADDR


def test_metrics_values(midday, client, settings, workspace):
    settings.METRICS_ALLOWED_IPS = ["127.0.0.1"]
    settings.DAILY_BUDGET_USD = Decimal("20")
    today = timezone.now().date()
    DailySpendFactory(day=today, spent_usd=Decimal("5"))
    RollupFactory(
        workspace=workspace, provider="groq", day=today, requests=7, errors=2, cost_usd=Decimal("0")
    )
    UsageEventFactory(workspace=workspace, latency_ms=100)
    UsageEventFactory(workspace=workspace, latency_ms=300, status_code=504)
    body = client.get("/metrics").content.decode()
    assert 'tollgate_requests_today{provider="groq"} 7' in body
    assert 'tollgate_errors_today{provider="groq"} 2' in body
    assert "tollgate_requests_5m 2" in body
    assert "tollgate_request_latency_ms_sum_5m 400" in body
    assert "tollgate_upstream_errors_5m 1" in body
    assert "tollgate_budget_percent_used 25.00" in body
    assert "tollgate_spend_usd_today 5.000000" in body


def test_docs_page_uses_a_key_prefix_of_the_users_workspace(client, user, workspace):
    response = client.get("/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "sk_agentai_YOUR_KEY" in html and "quota_exceeded" in html and "X-RateLimit-Remaining" in html
    key = ApiKeyFactory(workspace=workspace, created_by=user, prefix="sk_agentai_Zq9x")
    client.force_login(user)
    html = client.get("/docs/").content.decode()
    assert f"{key.prefix}…" in html and 'base_url="http://' in html
    assert "/api/proxy/v1/chat/completions" in html


def test_docs_page_shows_a_key_the_user_created_not_another_members(client, user, other_user):
    team = team_workspace_create(owner=other_user, members={user: Role.DEVELOPER})
    ApiKeyFactory(workspace=team, created_by=other_user, prefix="sk_agentai_Th3r")
    mine = ApiKeyFactory(workspace=team, created_by=user, prefix="sk_agentai_M1ne")
    client.force_login(user)
    session = client.session
    session[SESSION_WORKSPACE_KEY] = team.pk
    session.save()

    html = client.get("/docs/").content.decode()

    assert f"{mine.prefix}…" in html and "sk_agentai_Th3r" not in html


def test_docs_page_with_a_foreign_workspace_header_shows_no_key(client, user, other_user, other_workspace):
    ApiKeyFactory(workspace=other_workspace, created_by=other_user, prefix="sk_agentai_N0pe")
    client.force_login(user)

    response = client.get("/docs/", HTTP_X_WORKSPACE=str(other_workspace.pk))

    assert response.status_code == 200 and "sk_agentai_N0pe" not in response.content.decode()


def test_metrics_include_the_latency_histograms_beside_the_gauges(client, settings):
    settings.METRICS_ALLOWED_IPS = ["127.0.0.1"]
    client.get("/docs/")
    client.get("/no-such-page-3f9a")

    response = client.get("/metrics")

    body = response.content.decode()
    assert response["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    families = {family.name: family for family in text_string_to_metric_families(body)}
    assert families["tollgate_budget_limit_usd"].type == "gauge"  # the database gauges are still there
    histogram = families["tollgate_request_duration_seconds"]
    assert histogram.type == "histogram"
    routes = {sample.labels["route"] for sample in histogram.samples}
    assert {"/docs/", "unmatched"} <= routes and not any("no-such-page" in route for route in routes)
    [docs] = [
        sample.value
        for sample in histogram.samples
        if sample.name.endswith("_count")
        and sample.labels == {"route": "/docs/", "method": "GET", "status_class": "2xx"}
    ]
    assert docs >= 1
