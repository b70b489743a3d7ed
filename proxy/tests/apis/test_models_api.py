"""``/v1/models`` and ``/v1/models/{id}`` (issue 25, part 5): what the caller's plan and keys
reach, in OpenAI's shape, with the provider that owns each model."""

import openai
import pytest

from ..factories import global_key_set, plan_configure, workspace_key_set

pytestmark = pytest.mark.django_db(transaction=True)


def _listed(client) -> dict[str, str]:
    response = client.get("/api/proxy/v1/models")
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    assert all(m["object"] == "model" for m in body["data"])
    return {m["id"]: m["owned_by"] for m in body["data"]}


def test_list_is_the_plans_providers_with_a_key(caller):
    user, _plaintext, client = caller
    workspace = user.personal_workspace
    plan_configure(weights={"groq": 100}, fallback_provider="openrouter")
    global_key_set("groq")

    listed = _listed(client)

    assert listed["gpt-4o"] == "groq"
    assert listed["llama-3.3-70b-versatile"] == "groq"
    assert "openai/gpt-4o" not in listed  # openrouter: in the plan, but no key
    assert "deepseek-reasoner" not in listed  # deepseek: not in the plan
    assert "*" not in listed

    workspace_key_set(workspace, "openrouter")

    listed = _listed(client)

    assert listed["openai/gpt-4o"] == "openrouter"
    assert listed["gpt-4o"] == "groq"  # routed by both: the plan's first provider owns it


def test_a_model_is_owned_by_the_provider_that_serves_it_under_its_name(caller):
    _user, _plaintext, client = caller
    plan_configure(weights={"groq": 100, "openai": 10})
    global_key_set("groq")
    global_key_set("openai")

    listed = _listed(client)

    assert listed["gpt-4o"] == "openai"
    assert listed["claude-sonnet-4"] == "groq"


def test_no_key_no_model(caller):
    _user, _plaintext, client = caller
    plan_configure(weights={"groq": 100})

    assert _listed(client) == {}


def test_the_sandbox_reaches_every_provider_of_the_plan(caller, settings):
    settings.SANDBOX_PROVIDER_ENABLED = True
    _user, _plaintext, client = caller
    plan_configure(weights={"groq": 100})

    assert _listed(client)["gpt-4o"] == "groq"


def test_retrieve_unknown_is_404_model_not_found(caller):
    _user, _plaintext, client = caller
    plan_configure(weights={"groq": 100})
    global_key_set("groq")

    response = client.get("/api/proxy/v1/models/my-custom-model")

    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "model_not_found"
    assert error["param"] == "model"
    assert error["type"] == "invalid_request_error"
    assert response["x-should-retry"] == "false"


def test_sdk_retrieves_and_lists(caller, fake_upstream, live_asgi):
    user, plaintext, _client = caller
    plan_configure(weights={"groq": 100, "openrouter": 50})
    global_key_set("groq")
    global_key_set("openrouter")
    client = openai.OpenAI(base_url=f"{live_asgi}/api/proxy/v1", api_key=plaintext, max_retries=2)

    model = client.models.retrieve("gpt-4o")
    slashed = client.models.retrieve("openai/gpt-4o-mini")
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("gpt-4o-typo")
    ids = {m.id: m.owned_by for m in client.models.list()}

    assert (model.id, model.object, model.owned_by) == ("gpt-4o", "model", "groq")
    assert (slashed.id, slashed.owned_by) == ("openai/gpt-4o-mini", "openrouter")
    assert caught.value.code == "model_not_found"
    assert ids["openai/gpt-4o-mini"] == "openrouter"
    assert fake_upstream.requests == []  # nothing asked of any provider


def test_embedding_models_are_listed_through_any_keyed_provider_whatever_the_plan(caller):
    """Embeddings take exact routes to any provider (not the plan's chat mix): listed when the
    caller has a key for one of them, and retrievable."""
    _user, _plaintext, client = caller
    plan_configure(weights={"groq": 100})
    global_key_set("groq")

    assert "text-embedding-3-small" not in _listed(client)

    global_key_set("openai")
    listed = _listed(client)

    assert listed["text-embedding-3-small"] == "openai"
    assert listed["gpt-4o"] == "groq"  # chat stays the plan's
    assert client.get("/api/proxy/v1/models/text-embedding-3-small").json()["owned_by"] == "openai"
