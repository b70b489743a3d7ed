from decimal import Decimal

import pytest

from billing.models import UsageCounter
from proxy.models import DailySpend, UsageDailyRollup, UsageEvent

from ..factories import global_key_set

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/api/proxy/deepseek/chat"
BODY = {"model": "deepseek-chat", "messages": [{"role": "user", "content": "Hello!"}]}


def test_first_call_has_the_original_shape_and_charges_the_reported_tokens(caller, fake_upstream):
    user, _plaintext, client = caller
    workspace = user.personal_workspace
    global_key_set("deepseek")

    response = client.post(URL, BODY, format="json")

    assert response.status_code == 200, response.content
    data = response.json()
    assert data["choices"][0]["message"]["content"] == "Hello! How can I help?"
    assert data["usage"]["total_tokens"] == 25
    assert data["quota"]["used"] == 25
    assert data["quota"]["limit"] == 1_000_000
    assert data["quota"]["remaining"] == 999_975
    assert data["quota"]["resetDate"].endswith("T00:00:00.000Z")
    forwarded = fake_upstream.requests[-1]
    assert forwarded["path"] == "/deepseek/chat/completions"
    assert forwarded["headers"]["Authorization"] == "Bearer sk-operator-0123456789"
    assert forwarded["json"]["model"] == "deepseek-chat"
    event = UsageEvent.objects.get(workspace=workspace)
    assert (event.prompt_tokens, event.completion_tokens, event.total_tokens) == (10, 15, 25)
    # 10 × 0.28 + 15 × 0.42 per million tokens.
    assert event.cost_usd == Decimal("0.000009")
    assert event.key_source == "global"
    assert event.status_code == 200
    counter = UsageCounter.objects.get(workspace=workspace, meter="llm_tokens")
    assert (counter.used, counter.reserved) == (25, 0)
    rollup = UsageDailyRollup.objects.get(workspace=workspace, provider="deepseek")
    assert (rollup.requests, rollup.tokens, rollup.cost_usd) == (1, 25, Decimal("0.000009"))
    assert DailySpend.objects.get().spent_usd == Decimal("0.000009")
    assert response["X-RateLimit-Limit"] == "1000"
    assert response["X-RateLimit-Remaining"] == "999"


def test_model_defaults_to_deepseek_chat(caller, fake_upstream, monkeypatch):
    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-env-0123456789")
    _user, _plaintext, client = caller

    response = client.post(URL, {"messages": [{"role": "user", "content": "Hi"}]}, format="json")

    assert response.status_code == 200, response.content
    assert fake_upstream.requests[-1]["json"]["model"] == "deepseek-chat"
    assert fake_upstream.requests[-1]["headers"]["Authorization"] == "Bearer sk-env-0123456789"
    assert UsageEvent.objects.get().key_source == "env"
