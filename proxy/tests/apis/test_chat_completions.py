"""The OpenAI-compatible routed endpoint: routing, fallback matrix, BYOK, budget, errors."""

from decimal import Decimal

import pytest

from billing.models import UsageCounter
from proxy.models import UsageEvent

from ..factories import global_key_set, plan_configure, workspace_key_set

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/api/proxy/v1/chat/completions"
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 50}


def _counters(workspace):
    return {c.meter: (c.used, c.reserved) for c in UsageCounter.objects.filter(workspace=workspace)}


def test_routes_gpt4o_on_free_to_groq_llama_and_reports_provider_and_cost(caller, fake_upstream):
    user, _plaintext, client = caller
    plan_configure(weights={"groq": 100})
    global_key_set("groq")

    response = client.post(URL, BODY, format="json")

    assert response.status_code == 200, response.content
    data = response.json()
    assert data["provider"] == "groq"
    assert data["fallback"] is False
    assert data["budget_fallback"] is False
    assert data["cost"] == 0
    assert data["quota"]["used"] == 25
    assert fake_upstream.requests[-1]["path"] == "/groq/chat/completions"
    assert fake_upstream.requests[-1]["json"]["model"] == "llama-3.3-70b-versatile"
    event = UsageEvent.objects.get()
    assert (event.model, event.upstream_model, event.provider) == (
        "gpt-4o",
        "llama-3.3-70b-versatile",
        "groq",
    )


def test_v2_chat_wraps_the_prompt_into_one_user_message(caller, fake_upstream):
    plan_configure(weights={"groq": 100})
    global_key_set("groq")
    _user, _plaintext, client = caller

    response = client.post("/api/v2/chat", {"prompt": "Bonjour", "model": "gpt-4o"}, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["provider"] == "groq"
    assert fake_upstream.requests[-1]["json"]["messages"] == [{"role": "user", "content": "Bonjour"}]


@pytest.mark.parametrize(
    ("mode", "status", "code"),
    [
        ("timeout", 504, "upstream_timeout"),
        ("500", 502, "upstream_error"),
        ("503", 502, "upstream_error"),
        ("429", 429, "upstream_rate_limited"),  # issue 25: a rate limit stays one
        ("refused", 502, "upstream_error"),
        ("garbage", 502, "upstream_error"),
        ("redirect", 502, "upstream_error"),
    ],
)
def test_fallback_matrix_all_providers_failing(caller, fake_upstream, settings, mode, status, code):
    user, _plaintext, client = caller
    workspace = user.personal_workspace
    plan_configure(weights={"openrouter": 100}, fallback_provider="groq")
    global_key_set("openrouter")
    global_key_set("groq")
    settings.PROXY_UPSTREAM_TIMEOUT = 0.3
    fake_upstream.sleep_seconds = 1.0
    if mode == "refused":
        settings.PROVIDER_BASE_URLS = {
            **settings.PROVIDER_BASE_URLS,
            "openrouter": "http://127.0.0.1:9",
            "groq": "http://127.0.0.1:9",
        }
    else:
        fake_upstream.mode = mode

    response = client.post(URL, BODY, format="json")

    assert response.status_code == status, response.content
    assert response.json()["error"]["code"] == code
    if mode != "refused":
        assert [r["path"] for r in fake_upstream.requests] == [
            "/openrouter/chat/completions",
            "/groq/chat/completions",
        ]
    event = UsageEvent.objects.get()
    assert event.status_code == status
    assert event.total_tokens == 0
    assert event.cost_usd == 0
    counters = _counters(workspace)
    assert all(used == 0 and reserved == 0 for used, reserved in counters.values()), counters


@pytest.mark.parametrize("mode", ["timeout", "500", "503", "429", "garbage", "redirect"])
def test_fallback_to_next_provider_charges_once(caller, fake_upstream, settings, mode):
    user, _plaintext, client = caller
    workspace = user.personal_workspace
    plan_configure(weights={"openrouter": 100}, fallback_provider="groq")
    global_key_set("openrouter")
    global_key_set("groq")
    settings.PROXY_UPSTREAM_TIMEOUT = 0.3
    fake_upstream.sleep_seconds = 1.0
    fake_upstream.path_modes = {"/openrouter": mode}

    response = client.post(URL, BODY, format="json")

    assert response.status_code == 200, response.content
    data = response.json()
    assert (data["provider"], data["fallback"]) == ("groq", True)
    event = UsageEvent.objects.get()
    assert (event.provider, event.is_fallback, event.total_tokens) == ("groq", True, 25)
    assert _counters(workspace)["llm_tokens"] == (25, 0)
    assert _counters(workspace)["requests"] == (1, 0)


def test_provider_4xx_is_relayed_and_charges_nothing(caller, fake_upstream):
    user, _plaintext, client = caller
    workspace = user.personal_workspace
    plan_configure(weights={"openrouter": 100}, fallback_provider="groq")
    global_key_set("openrouter")
    global_key_set("groq")
    fake_upstream.mode = "400"

    response = client.post(URL, BODY, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["message"] == "fake upstream 400"
    assert len(fake_upstream.requests) == 1  # no fallback on a client error
    assert UsageEvent.objects.get().status_code == 400
    assert _counters(workspace)["llm_tokens"] == (0, 0)


def test_byok_is_not_charged_and_costs_the_operator_nothing(caller, fake_upstream):
    user, _plaintext, client = caller
    workspace = user.personal_workspace
    plan_configure(weights={"openrouter": 100})
    workspace_key_set(workspace, "openrouter", "sk-mine-0123456789")

    response = client.post(URL, BODY, format="json")

    assert response.status_code == 200, response.content
    assert fake_upstream.requests[-1]["headers"]["Authorization"] == "Bearer sk-mine-0123456789"
    event = UsageEvent.objects.get()
    assert (event.key_source, event.cost_usd, event.total_tokens) == ("workspace", Decimal("0"), 25)
    assert "llm_tokens" not in _counters(workspace) or _counters(workspace)["llm_tokens"] == (0, 0)
    assert response.json()["cost"] == 0


def test_budget_exhausted_routes_to_the_fallback_provider(caller, fake_upstream, settings):
    user, _plaintext, client = caller
    plan_configure(weights={"openrouter": 100}, fallback_provider="groq")
    global_key_set("openrouter")
    global_key_set("groq")
    settings.DAILY_BUDGET_USD = Decimal("0.0001")  # less than one gpt-4o call's maximum

    response = client.post(URL, BODY, format="json")

    assert response.status_code == 200, response.content
    data = response.json()
    assert (data["provider"], data["budget_fallback"], data["fallback"]) == ("groq", True, False)
    assert [r["path"] for r in fake_upstream.requests] == ["/groq/chat/completions"]


def test_budget_exhausted_without_fallback_is_503(caller, fake_upstream, settings):
    plan_configure(weights={"openrouter": 100})
    global_key_set("openrouter")
    settings.DAILY_BUDGET_USD = Decimal("0.0001")
    _user, _plaintext, client = caller

    response = client.post(URL, BODY, format="json")

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "no_provider_available"
    assert fake_upstream.requests == []


def test_no_provider_key_is_503(caller, fake_upstream):
    plan_configure(weights={"openrouter": 100})
    _user, _plaintext, client = caller

    response = client.post(URL, BODY, format="json")

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "no_provider_available"
    assert UsageEvent.objects.get().status_code == 503


def test_sandbox_serves_when_enabled_and_no_key(caller, settings):
    settings.SANDBOX_PROVIDER_ENABLED = True
    plan_configure(weights={"groq": 100})
    user, _plaintext, client = caller

    first = client.post(URL, BODY, format="json").json()
    second = client.post(URL, BODY, format="json").json()

    assert first["provider"] == "sandbox"
    assert first["choices"] == second["choices"]  # deterministic
    assert first["usage"]["total_tokens"] > 0
    assert first["quota"]["used"] == first["usage"]["total_tokens"]


def test_models_lists_the_route_table(caller):
    _user, _plaintext, client = caller
    global_key_set("deepseek")  # the list is what the plan (deepseek) and the caller's keys reach

    response = client.get("/api/proxy/v1/models")

    assert response.status_code == 200
    ids = [m["id"] for m in response.json()["data"]]
    assert "gpt-4o" in ids and "claude-sonnet-4" in ids
    assert response.json()["object"] == "list"


def test_call_deadline_ends_a_slow_call_with_504_and_charges_nothing(caller, fake_upstream, settings):
    """A call never outlives PROXY_CALL_DEADLINE_SECONDS, whatever the per-read timeout and the
    fallback chain, so the stale-reservation sweeper can never free a live call's hold."""
    user, _plaintext, client = caller
    workspace = user.personal_workspace
    plan_configure(weights={"openrouter": 100}, fallback_provider="groq")
    global_key_set("openrouter")
    global_key_set("groq")
    settings.PROXY_UPSTREAM_TIMEOUT = 30
    settings.PROXY_CALL_DEADLINE_SECONDS = 1.5  # room for the first attempt to start on a busy machine
    fake_upstream.sleep_seconds = 4.0
    fake_upstream.mode = "timeout"

    response = client.post(URL, BODY, format="json")

    assert response.status_code == 504, response.content
    assert response.json()["error"]["code"] == "upstream_timeout"
    assert [r["path"] for r in fake_upstream.requests] == ["/openrouter/chat/completions"]
    assert UsageEvent.objects.get().total_tokens == 0
    counters = _counters(workspace)
    assert all(used == 0 and reserved == 0 for used, reserved in counters.values()), counters


def test_stale_reservation_threshold_always_exceeds_the_call_deadline(settings):
    assert settings.STALE_RESERVATION_SECONDS > settings.PROXY_CALL_DEADLINE_SECONDS
