"""Keeps the bench from rotting: a tiny run through a live Tollgate, then the accounting check.

Tollgate is served by uvicorn (ASGI, as in production) in a thread against the test database;
every provider base URL points at the bench's fake upstream. The check must pass after real
calls and must fail when the books are tampered with — otherwise it proves nothing.
"""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models import F

from bench import loadgen
from bench.accounting import accounting_check
from bench.fake_upstream import FakeUpstream
from bench.routes import ROUTES
from bench.setup import LLM_PROVIDERS, bench_tenant_create
from billing.models import UsageCounter
from billing.services import plan_catalog_seed
from proxy.models import UsageDailyRollup, UsageEvent
from proxy.tests.live import uvicorn_served

PROXY_PATH = "/api/proxy/v1/chat/completions"


@pytest.fixture
def upstream(settings):
    with FakeUpstream(latency_ms=1) as fake:
        settings.PROVIDER_BASE_URLS = {code: fake.base_url for code in LLM_PROVIDERS}
        settings.SANDBOX_PROVIDER_ENABLED = False
        settings.DAILY_BUDGET_USD = 50
        yield fake


@pytest.fixture
def live_tollgate(transactional_db):
    with uvicorn_served() as (base_url, _thread):
        yield base_url


@pytest.fixture
def tenant(transactional_db):
    plan_catalog_seed()
    return bench_tenant_create()


@pytest.mark.postgres
@pytest.mark.redis
def test_smoke_run_at_concurrency_2_adds_up(upstream, live_tollgate, tenant):
    url = live_tollgate + PROXY_PATH
    calls = loadgen.calls_run(url=url, total=8, concurrency=2, auth=tenant.api_key)
    streams = loadgen.streams_run(url=url, count=2, auth=tenant.api_key)

    assert calls.requests == 8 and calls.errors == 0, calls.statuses
    assert streams.completed == 2 and streams.errors == 0
    assert upstream.server.chat_requests == 10  # every call really went upstream

    ok = calls.ok + streams.completed
    report = accounting_check(
        workspace_id=tenant.workspace_id, client_ok_min=ok, client_ok_max=ok, timeout_s=10
    )
    assert report.ok, report.problems
    assert report.figures["ok_events"] == 10
    assert report.figures["quota_llm_tokens_used"] == report.figures["tokens"] > 0


@pytest.mark.postgres
@pytest.mark.redis
def test_accounting_check_catches_tampered_books(upstream, live_tollgate, tenant):
    loadgen.calls_run(url=live_tollgate + PROXY_PATH, total=2, concurrency=2, auth=tenant.api_key)
    assert accounting_check(
        workspace_id=tenant.workspace_id, client_ok_min=2, client_ok_max=2, timeout_s=10
    ).ok

    # The client saw more successes than were logged.
    report = accounting_check(workspace_id=tenant.workspace_id, client_ok_min=3, wait=False)
    assert not report.ok and "usage events" in report.problems[0]

    # Quota used drifts from the events, and a reservation is left open.
    UsageCounter.objects.filter(workspace_id=tenant.workspace_id, meter="llm_tokens").update(
        used=1, reserved=5
    )
    report = accounting_check(workspace_id=tenant.workspace_id, wait=False)
    assert not report.ok
    assert any("quota llm_tokens used = 1" in p for p in report.problems)
    assert any("units reserved" in p for p in report.problems)


@pytest.mark.postgres
@pytest.mark.redis
def test_accounting_check_compares_rollups_with_the_events_day_by_day(upstream, live_tollgate, tenant):
    loadgen.calls_run(url=live_tollgate + PROXY_PATH, total=2, concurrency=2, auth=tenant.api_key)
    assert accounting_check(
        workspace_id=tenant.workspace_id, client_ok_min=2, client_ok_max=2, timeout_s=10
    ).ok

    # The same totals, on the wrong day: a settle that dated the rollup differently.
    rollups = UsageDailyRollup.objects.filter(workspace_id=tenant.workspace_id)
    (day,) = set(rollups.values_list("day", flat=True))
    rollups.update(day=day - timedelta(days=1))
    report = accounting_check(workspace_id=tenant.workspace_id, wait=False)
    assert not report.ok
    assert any(f"rollups on {day - timedelta(days=1)} count 2 calls" in p for p in report.problems)
    assert any(f"rollups on {day} count 0 calls" in p for p in report.problems)


@pytest.mark.django_db
def test_bench_setup_refuses_outside_the_bench(monkeypatch):
    monkeypatch.delenv("TOLLGATE_BENCH", raising=False)
    with pytest.raises(CommandError, match="TOLLGATE_BENCH=1"):
        call_command("bench_setup")


def _route_run(route, url: str, key: str, *, total: int):
    bearer, headers = route.auth(key)
    return loadgen.calls_run(
        url=url + route.path, total=total, concurrency=2, auth=bearer, body=route.body, headers=headers
    )


@pytest.mark.postgres
@pytest.mark.redis
def test_api_surface_routes_are_billed_exactly_route_by_route(upstream, live_tollgate, tenant):
    endpoints = {}
    for route in ROUTES:
        calls = _route_run(route, live_tollgate, tenant.api_key, total=4)
        assert calls.requests == 4 and calls.errors == 0, (route.path, calls.statuses)
        # The route's body is fixed, so every call of it is billed what the upstream reported last.
        endpoints[route.path] = {"ok_min": 4, "ok_max": 4, "usage": dict(upstream.server.last_usage)}
    assert upstream.server.embedding_requests == 4
    assert upstream.server.chat_requests == 8  # Responses and Messages reach the upstream as chat

    report = accounting_check(
        workspace_id=tenant.workspace_id,
        client_ok_min=12,
        client_ok_max=12,
        endpoints=endpoints,
        timeout_s=10,
    )
    assert report.ok, report.problems
    per_route = report.figures["endpoints"]
    assert set(per_route) == {route.path for route in ROUTES}
    for figures in per_route.values():
        assert figures["ok_events"] == 4
        assert figures["tokens"] == 4 * figures["tokens_per_call"] > 0
    assert report.figures["quota_llm_tokens_used"] == sum(f["tokens"] for f in per_route.values())

    # One Messages call billed a token short, and clients that saw one more embeddings call.
    messages = UsageEvent.objects.filter(workspace_id=tenant.workspace_id, endpoint="/api/proxy/v1/messages")
    short = messages.order_by("id").first()
    messages.filter(pk=short.pk).update(
        prompt_tokens=F("prompt_tokens") - 1, total_tokens=F("total_tokens") - 1
    )
    endpoints["/api/proxy/v1/embeddings"]["ok_min"] = 5
    report = accounting_check(workspace_id=tenant.workspace_id, endpoints=endpoints, wait=False)
    assert not report.ok
    assert any(p.startswith("/api/proxy/v1/messages: 4 calls billed") for p in report.problems), (
        report.problems
    )
    assert any("5 successful /api/proxy/v1/embeddings calls" in p for p in report.problems)
    assert not any("/api/proxy/v1/responses" in p for p in report.problems)


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.wrk
def test_routes_driven_by_wrk_add_up(upstream, live_tollgate, tenant):
    """As the bench drives them: wrk with each route's body and headers (the Messages route's key
    in ``x-api-key``), then the range the bench gives the accounting check."""
    endpoints, ok_min, ok_max = {}, 0, 0
    for route in ROUTES:
        bearer, headers = route.auth(tenant.api_key)
        stats = loadgen.wrk_run(
            url=live_tollgate + route.path,
            connections=2,
            duration_s=1,
            auth=bearer,
            body=route.body,
            headers=headers,
        )
        assert stats.ok > 0 and stats.errors == 0, (route.path, stats.statuses)
        high = stats.ok + 2 + stats.timeouts  # calls cut off when wrk stops may still succeed
        endpoints[route.path] = {
            "ok_min": stats.ok,
            "ok_max": high,
            "usage": dict(upstream.server.last_usage),
        }
        ok_min, ok_max = ok_min + stats.ok, ok_max + high
    report = accounting_check(
        workspace_id=tenant.workspace_id,
        client_ok_min=ok_min,
        client_ok_max=ok_max,
        endpoints=endpoints,
        timeout_s=10,
    )
    assert report.ok, report.problems
