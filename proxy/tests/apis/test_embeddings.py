"""``POST /api/proxy/v1/embeddings``: the real clients (openai SDK, LangChain) on a live server,
the accounting (quota, credits, failures), the routing rule (exact routes only) and the door."""

import base64
import math
import struct
from decimal import Decimal

import openai
import pytest
from langchain_openai import OpenAIEmbeddings

from billing.models import UsageCounter
from credits.models import CreditAccount, EndpointCost
from credits.selectors import credit_balance_get
from credits.services import credit_grant
from proxy.models import UsageEvent

from ..factories import UserFactory, global_key_set, plan_configure
from ..settled import usage_events_wait

URL = "/api/proxy/v1/embeddings"
ENDPOINT = "/api/proxy/v1/embeddings"
FAKE_VECTOR = [1.0, 0.5, 0.25, 0.125]  # the fake upstream's first vector (4 wide by default)
# Long enough that the reservation (its input estimate) covers the fake's 10 reported tokens:
# the quota charges at most what was reserved.
TEXT = "Hello! Please embed this short sentence."


@pytest.fixture
def operator_keys(caller, fake_upstream):
    """A plan whose chat mix is Groq only: embeddings must ignore it and go to OpenAI."""
    plan_configure(weights={"groq": 100})
    for provider in ("groq", "openai", "openrouter"):
        global_key_set(provider)
    return caller


@pytest.fixture
def sdk(operator_keys, live_asgi):
    user, plaintext, _client = operator_keys
    return user, openai.OpenAI(base_url=f"{live_asgi}/api/proxy/v1", api_key=plaintext, max_retries=0)


def _counter(workspace, meter="llm_tokens"):
    return UsageCounter.objects.get(workspace=workspace, meter=meter)


# --- The clients ---------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_openai_sdk_string_input_is_served_by_openai_and_decoded_from_base64(sdk, fake_upstream):
    user, client = sdk
    workspace = user.personal_workspace

    result = client.embeddings.create(model="text-embedding-3-small", input=TEXT)

    assert [item.embedding for item in result.data] == [FAKE_VECTOR]
    assert result.usage.prompt_tokens == 10
    assert result.model_extra["provider"] == "openai"
    assert result.model_extra["quota"]["used"] == 10
    sent = fake_upstream.requests[-1]
    assert sent["path"] == "/openai/embeddings"
    # The SDK asks for base64 by default and decodes it itself: the bytes went through untouched.
    assert sent["json"] == {"model": "text-embedding-3-small", "input": TEXT, "encoding_format": "base64"}
    event = usage_events_wait(workspace)[0]
    assert (event.endpoint, event.provider, event.upstream_model) == (
        ENDPOINT,
        "openai",
        "text-embedding-3-small",
    )
    assert (event.prompt_tokens, event.completion_tokens, event.is_estimated) == (10, 0, False)


@pytest.mark.django_db(transaction=True)
def test_openai_sdk_list_input_with_dimensions_and_float_format(sdk, fake_upstream):
    _user, client = sdk

    result = client.embeddings.create(
        model="text-embedding-3-small", input=["one", "two"], dimensions=3, encoding_format="float"
    )

    assert [item.embedding for item in result.data] == [[1.0, 0.5, 0.25], [2.0, 0.5, 0.25]]
    assert [item.index for item in result.data] == [0, 1]
    assert fake_upstream.requests[-1]["json"]["dimensions"] == 3


@pytest.mark.django_db(transaction=True)
def test_openai_sdk_unknown_model_is_not_found(sdk, fake_upstream):
    user, client = sdk
    workspace = user.personal_workspace

    with pytest.raises(openai.NotFoundError) as caught:
        client.embeddings.create(model="no-such-embedder", input="Hello!")

    assert caught.value.body["code"] == "model_not_found"
    assert caught.value.body["param"] == "model"
    assert fake_upstream.requests == []
    assert not UsageEvent.objects.filter(workspace=workspace).exists()


@pytest.mark.django_db(transaction=True)
def test_langchain_openai_embeddings(sdk, live_asgi):
    _user, client = sdk
    embeddings = OpenAIEmbeddings(
        model="text-embedding-3-small",
        base_url=f"{live_asgi}/api/proxy/v1",
        api_key=client.api_key,
        check_embedding_ctx_length=False,  # no tiktoken download: the text is sent as is
        max_retries=0,
    )

    documents = embeddings.embed_documents(["first document", "second document"])
    query = embeddings.embed_query("a question")

    assert documents == [FAKE_VECTOR, [2.0, 0.5, 0.25, 0.125]]
    assert query == FAKE_VECTOR


# --- Routing ----------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_failing_provider_falls_back_to_the_next_route(operator_keys, fake_upstream):
    user, _plaintext, client = operator_keys
    workspace = user.personal_workspace
    fake_upstream.path_modes = {"/openai/": "503"}

    response = client.post(URL, {"model": "text-embedding-3-small", "input": TEXT}, format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["provider"], body["fallback"]) == ("openrouter", True)
    assert fake_upstream.requests[-1]["path"] == "/openrouter/embeddings"
    assert fake_upstream.requests[-1]["json"]["model"] == "openai/text-embedding-3-small"
    assert _counter(workspace).used == 10


@pytest.mark.django_db(transaction=True)
def test_embeddings_never_use_the_chat_defaults(operator_keys, fake_upstream, settings):
    """The free plan serves any chat model through ``*`` routes; embeddings still need a route."""
    _user, _plaintext, client = operator_keys
    assert "free" in settings.PROXY_ANY_MODEL_PLANS

    response = client.post(URL, {"model": "my-custom-model", "input": "Hi"}, format="json")
    chat = client.post(
        "/api/proxy/v1/chat/completions",
        {"model": "my-custom-model", "messages": [{"role": "user", "content": "Hi"}]},
        format="json",
    )

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"
    assert chat.status_code == 200  # the chat mix answers it, as documented
    assert [r["path"] for r in fake_upstream.requests] == ["/groq/chat/completions"]


# --- Accounting -------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_quota_counts_the_reported_prompt_tokens_priced_per_input_token(operator_keys, fake_upstream):
    user, _plaintext, client = operator_keys
    workspace = user.personal_workspace
    fake_upstream.prompt_tokens = 50_000

    response = client.post(URL, {"model": "text-embedding-3-large", "input": ["a" * 160_000]}, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["quota"]["used"] == 50_000
    counter = _counter(workspace)
    assert (counter.used, counter.reserved) == (50_000, 0)
    event = UsageEvent.objects.get(workspace=workspace)
    assert (event.total_tokens, event.endpoint, event.credits_charged) == (50_000, ENDPOINT, 0)
    assert event.cost_usd == Decimal("0.006500")  # $0.13 per million input tokens


@pytest.mark.django_db(transaction=True)
def test_a_failed_call_charges_nothing(operator_keys, fake_upstream):
    user, _plaintext, client = operator_keys
    workspace = user.personal_workspace
    fake_upstream.mode = "500"

    response = client.post(URL, {"model": "text-embedding-3-small", "input": TEXT}, format="json")

    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_error"
    counter = _counter(workspace)
    assert (counter.used, counter.reserved) == (0, 0)
    event = UsageEvent.objects.get(workspace=workspace)
    assert (event.status_code, event.total_tokens, str(event.cost_usd)) == (502, 0, "0.000000")


@pytest.mark.django_db(transaction=True)
def test_quota_exhausted_is_paid_in_credits_at_the_endpoint_cost(operator_keys, fake_upstream):
    user, _plaintext, client = operator_keys
    workspace = user.personal_workspace
    plan_configure(weights={"groq": 100}, limits={"llm_tokens": 5, "requests": None, "emails": 0})
    # What migration credits/0006 seeds (a transactional test's flush removed it).
    EndpointCost.objects.update_or_create(
        endpoint=ENDPOINT, defaults={"per_call": 1, "per_1000_units": 0, "unit": EndpointCost.Unit.REQUESTS}
    )
    credit_grant(workspace=workspace, amount=10, admin_user=UserFactory(is_staff=True))

    paid = client.post(URL, {"model": "text-embedding-3-small", "input": TEXT}, format="json")
    fake_upstream.mode = "500"
    failed = client.post(URL, {"model": "text-embedding-3-small", "input": TEXT}, format="json")

    assert paid.status_code == 200, paid.content
    assert failed.status_code == 502
    assert UsageEvent.objects.get(workspace=workspace, status_code=200).credits_charged == 1
    balance = credit_balance_get(workspace=workspace)
    assert (balance.balance, balance.available) == (9, 9)
    assert _counter(workspace).used == 0
    assert CreditAccount.objects.get(workspace=workspace).balance == 9


@pytest.mark.django_db
def test_the_endpoint_cost_is_seeded():
    cost = EndpointCost.objects.get(endpoint=ENDPOINT)
    assert (cost.per_call, cost.unit, cost.cost_for(1)) == (1, "requests", 1)


# --- The door ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "text-embedding-3-small", "input": ""}, "input"),
        ({"model": "text-embedding-3-small", "input": []}, "input"),
        ({"model": "text-embedding-3-small", "input": ["ok", ""]}, "input"),
        ({"model": "text-embedding-3-small", "input": ["ok", [1, 2]]}, "input"),
        ({"model": "text-embedding-3-small", "input": [[1, 2], []]}, "input"),
        ({"model": "text-embedding-3-small", "input": [-1]}, "input"),
        ({"model": "text-embedding-3-small", "input": {"text": "x"}}, "input"),
        ({"model": "text-embedding-3-small", "input": None}, "input"),
        ({"model": "text-embedding-3-small", "input": ["x"] * 2049}, "input"),
        ({"model": "text-embedding-3-small"}, "input"),
        ({"input": "x"}, "model"),
        ({"model": 3, "input": "x"}, "model"),
        ({"model": "", "input": "x"}, "model"),
        ({"model": "text-embedding-3-small", "input": "x", "dimensions": 0}, "dimensions"),
        ({"model": "text-embedding-3-small", "input": "x", "dimensions": "3"}, "dimensions"),
        ({"model": "text-embedding-3-small", "input": "x", "dimensions": True}, "dimensions"),
        ({"model": "text-embedding-3-small", "input": "x", "encoding_format": "hex"}, "encoding_format"),
        ({"model": "text-embedding-3-small", "input": "x", "user": 7}, "user"),
    ],
)
@pytest.mark.django_db(transaction=True)
def test_invalid_bodies_are_400_naming_the_field(operator_keys, fake_upstream, body, param):
    user, _plaintext, client = operator_keys
    workspace = user.personal_workspace

    response = client.post(URL, body, format="json")

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("invalid_request", param)
    assert fake_upstream.requests == []
    assert not UsageEvent.objects.filter(workspace=workspace).exists()


@pytest.mark.django_db(transaction=True)
def test_token_id_inputs_are_accepted(operator_keys, fake_upstream):
    _user, _plaintext, client = operator_keys

    single = client.post(URL, {"model": "text-embedding-3-small", "input": [1, 2, 3]}, format="json")
    many = client.post(URL, {"model": "text-embedding-3-small", "input": [[1, 2], [3]]}, format="json")

    assert single.status_code == 200 and len(single.json()["data"]) == 1
    assert many.status_code == 200 and len(many.json()["data"]) == 2
    assert fake_upstream.requests[-1]["json"]["input"] == [[1, 2], [3]]


# --- The sandbox ------------------------------------------------------------------------------------


@pytest.fixture
def sandboxed(caller, settings):
    settings.SANDBOX_PROVIDER_ENABLED = True  # no provider key anywhere: the sandbox answers
    return caller


def _post(client, **body):
    response = client.post(URL, body, format="json")
    assert response.status_code == 200, response.content
    return response.json()


@pytest.mark.django_db(transaction=True)
def test_sandbox_vectors_are_deterministic_unit_vectors_of_the_model_width(sandboxed):
    user, _plaintext, client = sandboxed
    workspace = user.personal_workspace

    small = _post(client, model="sandbox-embed", input=["hello world", "hello world", "other"])
    openai_named = _post(client, model="text-embedding-3-small", input="hello world")
    narrowed = _post(client, model="text-embedding-3-small", input="hello world", dimensions=64)

    first, again, other = (item["embedding"] for item in small["data"])
    assert len(first) == 256 and first == again and first != other
    assert math.isclose(math.fsum(v * v for v in first), 1.0, rel_tol=1e-5)
    assert len(openai_named["data"][0]["embedding"]) == 1536
    assert len(narrowed["data"][0]["embedding"]) == 64
    assert small["usage"] == {"prompt_tokens": 2 + 2 + 1, "total_tokens": 5}  # ~4 characters a token
    assert small["model"] == "sandbox-embed"
    assert _counter(workspace).used == 5 + 2 + 2
    served = (
        UsageEvent.objects.filter(workspace=workspace).order_by("id").values_list("upstream_model", flat=True)
    )
    assert list(served) == ["sandbox-embed", "text-embedding-3-small", "text-embedding-3-small"]


@pytest.mark.django_db(transaction=True)
def test_sandbox_base64_is_little_endian_float32_of_the_same_vector(sandboxed):
    _user, _plaintext, client = sandboxed

    floats = _post(client, model="sandbox-embed", input="hello", dimensions=8)
    packed = _post(client, model="sandbox-embed", input="hello", dimensions=8, encoding_format="base64")

    decoded = struct.unpack("<8f", base64.b64decode(packed["data"][0]["embedding"]))
    assert list(decoded) == floats["data"][0]["embedding"]


@pytest.mark.django_db(transaction=True)
def test_sandbox_serves_the_openai_sdk_offline(sandboxed, live_asgi):
    _user, plaintext, _client = sandboxed
    client = openai.OpenAI(base_url=f"{live_asgi}/api/proxy/v1", api_key=plaintext, max_retries=0)

    result = client.embeddings.create(model="sandbox-embed", input=["a", "b"], dimensions=16)

    assert [len(item.embedding) for item in result.data] == [16, 16]
    assert result.data[0].embedding != result.data[1].embedding
