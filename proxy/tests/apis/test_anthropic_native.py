"""Chat completions routed to Anthropic go to its native Messages API, seen from the ``openai``
SDK against a live Tollgate on the fake upstream: the answer, the stream, tools, fallback on
``overloaded`` and what is refused — and the books for each."""

import json

import httpx
import openai
import pytest

from ..factories import global_key_set, plan_configure
from ..settled import token_counter_settled, usage_events_wait

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "sk-ant-operator-0123456789"
MODEL = "claude-sonnet-4"  # the catalogue routes it to anthropic's claude-sonnet-4-20250514


def _native_requests(fake) -> list[dict]:
    return [r for r in fake.requests if r["path"] == "/anthropic/messages"]


@pytest.fixture
def claude(caller, fake_upstream, live_asgi):
    user, plaintext, _client = caller
    plan_configure(weights={"anthropic": 100}, fallback_provider="openrouter")
    global_key_set("anthropic", secret=SECRET)
    global_key_set("openrouter")
    client = openai.OpenAI(base_url=f"{live_asgi}/api/proxy/v1", api_key=plaintext, max_retries=0)
    return user, plaintext, client, fake_upstream, live_asgi


def test_a_chat_call_goes_to_the_native_api_and_comes_back_a_chat_completion(claude):
    user, _plaintext, client, fake, _url = claude
    workspace = user.personal_workspace
    fake.cache_read_tokens = 4

    completion = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello!"}],
        max_tokens=50,
    )

    assert completion.choices[0].message.content == "Hello! How can I help?"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model_extra["provider"] == "anthropic"
    # 10 input + 4 read from Anthropic's cache; 15 output
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (14, 15)
    assert completion.usage.prompt_tokens_details.cached_tokens == 4
    assert completion.model_extra["quota"]["used"] == completion.usage.total_tokens == 29

    [sent] = _native_requests(fake)
    headers = {k.lower(): v for k, v in sent["headers"].items()}
    assert headers["x-api-key"] == SECRET
    assert headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in headers
    assert sent["json"]["model"] == "claude-sonnet-4-20250514"
    assert sent["json"]["system"] == "Be brief."
    assert sent["json"]["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Hello!"}]}]
    assert sent["json"]["max_tokens"] == 50
    assert not [r for r in fake.requests if r["path"].endswith("/chat/completions")]
    event = usage_events_wait(workspace)[0]
    assert (event.provider, event.prompt_tokens, event.completion_tokens) == ("anthropic", 14, 15)
    assert token_counter_settled(workspace, 29).used == 29


def test_a_streamed_call_is_translated_from_anthropic_events_with_usage_last(claude):
    user, _plaintext, client, fake, _url = claude
    workspace = user.personal_workspace

    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Hello!"}],
            max_tokens=50,
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "word " * 5
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (10, 5)
    [sent] = _native_requests(fake)
    assert sent["json"]["stream"] is True
    assert "stream_options" not in sent["json"]
    event = usage_events_wait(workspace)[0]
    assert (event.prompt_tokens, event.completion_tokens, event.is_estimated) == (10, 5, False)
    assert token_counter_settled(workspace, 15).used == 15


def test_tool_calls_come_back_with_their_arguments(claude):
    _user, _plaintext, client, fake, _url = claude
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather in a city.",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    messages = [{"role": "user", "content": "Weather in Paris?"}]

    completion = client.chat.completions.create(model=MODEL, messages=messages, tools=tools, max_tokens=50)
    stream = client.chat.completions.create(
        model=MODEL, messages=messages, tools=tools, max_tokens=50, stream=True
    )
    streamed_arguments = "".join(
        call.function.arguments or ""
        for chunk in stream
        if chunk.choices
        for call in chunk.choices[0].delta.tool_calls or []
    )

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    assert (call.id, call.function.name) == ("toolu_fake", "get_weather")
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert json.loads(streamed_arguments) == {"city": "Paris"}
    sent = _native_requests(fake)[0]["json"]
    assert sent["tools"] == [
        {
            "name": "get_weather",
            "input_schema": tools[0]["function"]["parameters"],
            "description": "Weather in a city.",
        }
    ]
    assert sent["tool_choice"] == {"type": "auto"}


def test_anthropic_overloaded_falls_back_and_the_failed_attempt_costs_nothing(claude):
    user, _plaintext, client, fake, _url = claude
    workspace = user.personal_workspace
    fake.path_modes = {"/anthropic": "529"}

    completion = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hello!"}], max_tokens=50
    )

    assert len(_native_requests(fake)) == 1
    assert completion.model_extra["provider"] == "openrouter"
    assert completion.model_extra["fallback"] is True
    assert completion.model_extra["quota"]["used"] == 25  # the fallback's 10 + 15, nothing more
    events = usage_events_wait(workspace)
    assert [(e.provider, e.status_code, e.total_tokens) for e in events] == [("openrouter", 200, 25)]
    assert token_counter_settled(workspace, 25).used == 25


def test_n_greater_than_one_is_a_400_naming_n_and_costs_nothing(claude):
    user, _plaintext, client, fake, _url = claude
    workspace = user.personal_workspace

    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hello!"}], max_tokens=50, n=2
        )

    error = caught.value.body
    assert error["param"] == "n"
    assert error["code"] == "invalid_request"
    assert "n must be 1" in error["message"]
    assert not fake.requests  # refused before anything was sent
    assert usage_events_wait(workspace)[0].total_tokens == 0
    counter = token_counter_settled(workspace, 0)
    assert (counter.used, counter.reserved) == (0, 0)


def test_an_error_event_mid_stream_ends_the_stream_and_bills_what_was_sent(claude):
    user, plaintext, _client, fake, url = claude
    workspace = user.personal_workspace
    fake.mode = "stream_error"

    with httpx.Client(timeout=10) as http:
        response = http.post(
            f"{url}/api/proxy/v1/chat/completions",
            headers={"Authorization": f"Bearer {plaintext}"},
            json={"model": MODEL, "messages": [{"role": "user", "content": "Hello!"}], "stream": True},
        )

    assert response.status_code == 200
    assert response.text.count('"content":"word "') == 2
    assert "[DONE]" not in response.text
    event = usage_events_wait(workspace)[0]
    assert (event.provider, event.error_code, event.is_estimated) == ("anthropic", "stream_interrupted", True)
    assert event.completion_tokens == 3  # "word word " counted: 10 characters ≈ 3 tokens
    assert token_counter_settled(workspace, event.total_tokens).used == event.total_tokens


def test_anthropics_4xx_keeps_its_message_and_type_and_never_shows_the_key(claude):
    user, _plaintext, client, fake, _url = claude
    workspace = user.personal_workspace
    fake.path_modes = {"/anthropic": "400"}

    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=50
        )
    fake.path_modes = {"/anthropic": "401_echo"}  # Anthropic quoting the x-api-key it was sent
    with pytest.raises(openai.APIStatusError) as echoed:
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=50
        )

    error = refused.value.body
    assert (error["message"], error["type"], error["provider"]) == (
        "fake upstream 400",
        "invalid_request_error",
        "anthropic",
    )
    assert echoed.value.status_code == 401
    assert SECRET not in echoed.value.response.text
    assert "Incorrect API key provided" in echoed.value.body["message"]
    assert len(_native_requests(fake)) == 2  # a provider's 4xx is relayed, not retried elsewhere
    counter = token_counter_settled(workspace, 0)
    assert (counter.used, counter.reserved) == (0, 0)


def test_an_error_event_before_any_text_tries_the_next_provider_and_costs_nothing(claude):
    user, _plaintext, client, fake, _url = claude
    workspace = user.personal_workspace
    fake.path_modes = {"/anthropic": "stream_error"}
    fake.stream_error_after = 0

    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Hello!"}],
            max_tokens=50,
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    assert len(_native_requests(fake)) == 1
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "word " * 5
    assert chunks[-1].usage.total_tokens == 15  # the fallback's own stream, nothing from Anthropic
    events = usage_events_wait(workspace)
    assert [(e.provider, e.total_tokens) for e in events] == [("openrouter", 15)]
    assert token_counter_settled(workspace, 15).used == 15


def test_anthropics_not_found_is_model_not_found_naming_the_model(claude):
    _user, _plaintext, client, fake, _url = claude
    fake.path_modes = {"/anthropic": "404"}

    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=5
        )

    assert (caught.value.body["code"], caught.value.body["param"]) == ("model_not_found", "model")
