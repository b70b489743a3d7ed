"""Unknown models (issue 25, part 7): a name no provider of the plan knows is 404
``model_not_found`` before anything is held; a plan that serves any model from its tier mix
(``PROXY_ANY_MODEL_PLANS``) still serves it and says which model did."""

import openai
import pytest

from billing.models import UsageCounter
from proxy.models import UsageEvent

from ..factories import global_key_set, plan_configure

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/api/proxy/v1/chat/completions"


def _body(model: str, **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 20, **extra}


@pytest.fixture
def strict(settings):
    settings.PROXY_ANY_MODEL_PLANS = []  # the tests' "free" plan does not serve any model


def test_unknown_model_is_404_before_anything_is_held(caller, fake_upstream, strict):
    user, _plaintext, client = caller
    workspace = user.personal_workspace
    plan_configure(weights={"groq": 100}, fallback_provider="openrouter")
    global_key_set("groq")
    global_key_set("openrouter")

    response = client.post(URL, _body("my-custom-model"), format="json")

    assert response.status_code == 404
    error = response.json()["error"]
    assert (error["code"], error["param"], error["type"]) == (
        "model_not_found",
        "model",
        "invalid_request_error",
    )
    assert response["x-should-retry"] == "false"
    assert fake_upstream.requests == []
    assert not UsageEvent.objects.filter(workspace=workspace).exists()
    assert all(c.used == 0 and c.reserved == 0 for c in UsageCounter.objects.filter(workspace=workspace))


def test_only_providers_that_know_the_model_serve_it(caller, fake_upstream, strict):
    _user, _plaintext, client = caller
    plan_configure(weights={"groq": 100}, fallback_provider="openrouter")
    global_key_set("groq")
    global_key_set("openrouter")

    response = client.post(URL, _body("openai/gpt-4o"), format="json")  # priced on openrouter only

    assert response.status_code == 200
    assert response.json()["provider"] == "openrouter"
    assert [r["path"] for r in fake_upstream.requests] == ["/openrouter/chat/completions"]
    assert fake_upstream.requests[0]["json"]["model"] == "openai/gpt-4o"


def test_routed_names_keep_working_on_a_strict_plan(caller, fake_upstream, strict):
    _user, _plaintext, client = caller
    plan_configure(weights={"groq": 100})
    global_key_set("groq")

    response = client.post(URL, _body("gpt-4o"), format="json")

    assert response.status_code == 200
    assert response.json()["model"] == "llama-3.3-70b-versatile"
    assert response["x-tollgate-served-model"] == "llama-3.3-70b-versatile"


def test_a_plan_that_serves_any_model_answers_it_and_names_the_served_model(caller, fake_upstream, settings):
    settings.PROXY_ANY_MODEL_PLANS = ["free"]
    _user, _plaintext, client = caller
    plan_configure(weights={"groq": 100})
    global_key_set("groq")

    response = client.post(URL, _body("my-custom-model"), format="json")
    streamed = client.post(URL, _body("my-custom-model", stream=True), format="json")

    assert response.status_code == 200
    assert response.json()["model"] == "llama-3.3-70b-versatile"
    assert response["x-tollgate-served-model"] == "llama-3.3-70b-versatile"
    assert streamed.status_code == 200
    assert streamed["x-tollgate-served-model"] == "llama-3.3-70b-versatile"
    assert fake_upstream.requests[0]["json"]["model"] == "llama-3.3-70b-versatile"


def test_the_seeded_tier_plans_serve_any_model_by_default(settings):
    assert {"free", "student", "pro"} <= set(settings.PROXY_ANY_MODEL_PLANS)


def test_v2_chat_and_deepseek_route_check_too(caller, fake_upstream, strict):
    _user, _plaintext, client = caller
    plan_configure(weights={"groq": 100})
    global_key_set("groq")
    global_key_set("deepseek")

    v2 = client.post("/api/v2/chat", {"prompt": "Hi", "model": "nope-1"}, format="json")
    deepseek = client.post("/api/proxy/deepseek/chat", _body("nope-2"), format="json")
    deepseek_ok = client.post(
        "/api/proxy/deepseek/chat", {"messages": [{"role": "user", "content": "Hi"}]}, format="json"
    )

    assert v2.status_code == 404 and v2.json()["error"]["code"] == "model_not_found"
    assert deepseek.status_code == 404
    assert deepseek_ok.status_code == 200
    assert [r["path"] for r in fake_upstream.requests] == ["/deepseek/chat/completions"]


def test_sdk_gets_not_found_for_a_typo_and_does_not_retry(caller, fake_upstream, live_asgi, strict):
    _user, plaintext, _client = caller
    plan_configure(weights={"groq": 100})
    global_key_set("groq")
    client = openai.OpenAI(base_url=f"{live_asgi}/api/proxy/v1", api_key=plaintext, max_retries=2)

    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(**_body("gpt-4o-typo"))

    assert caught.value.code == "model_not_found"
    assert fake_upstream.requests == []
