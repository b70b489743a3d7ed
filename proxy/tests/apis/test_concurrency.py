"""Real threads against PostgreSQL (and Redis): limits hold under concurrency."""

import threading
from decimal import Decimal

import pytest
from django.db import connections
from rest_framework.test import APIClient

from billing.models import UsageCounter
from proxy.budget import budget_cap_micro, budget_spent_get
from proxy.models import DailySpend, UsageEvent

from ..factories import global_key_set, plan_configure

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

URL = "/api/proxy/v1/chat/completions"
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 50}


def _fire(plaintext: str, count: int) -> list[dict]:
    barrier = threading.Barrier(count)
    results: list[dict] = []
    lock = threading.Lock()

    def worker():
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
        barrier.wait()
        try:
            response = client.post(URL, BODY, format="json")
            with lock:
                results.append({"status": response.status_code, "body": response.json()})
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_fifty_calls_racing_for_ten_requests_exactly_ten_succeed(midday, caller, fake_upstream):
    user, plaintext, _client = caller
    workspace = user.personal_workspace
    plan_configure(weights={"groq": 100}, limits={"requests": 10, "llm_tokens": None, "emails": 0})
    global_key_set("groq")

    results = _fire(plaintext, 50)

    statuses = sorted(r["status"] for r in results)
    assert statuses.count(200) == 10
    assert statuses.count(429) == 40
    counter = UsageCounter.objects.get(workspace=workspace, meter="requests")
    assert counter.used == 10 <= 10 and counter.reserved == 0
    assert UsageEvent.objects.filter(status_code=200).count() == 10
    assert len(fake_upstream.requests) == 10


def test_fifty_concurrent_calls_never_pass_the_daily_budget(midday, caller, fake_upstream, settings):
    _user, plaintext, _client = caller
    plan_configure(weights={"openrouter": 100}, fallback_provider="groq")
    global_key_set("openrouter")
    global_key_set("groq")
    # One call reserves ≤ 513 micro-USD and costs 175: room for 9 reservations at once.
    settings.DAILY_BUDGET_USD = Decimal("0.005")

    results = _fire(plaintext, 50)

    assert all(r["status"] == 200 for r in results), results
    paid = [r for r in results if r["body"]["provider"] == "openrouter"]
    diverted = [r for r in results if r["body"]["budget_fallback"]]
    assert paid and diverted
    assert len(paid) + len(diverted) == 50
    spent = DailySpend.objects.get().spent_usd
    assert spent == Decimal("0.000175") * len(paid)
    assert spent <= settings.DAILY_BUDGET_USD
    assert budget_spent_get(day=DailySpend.objects.get().day) <= budget_cap_micro()
