"""Every route demoed offline (``make run``, no keys): the sandbox answers tool calls that match
the declared schema and JSON mode, through chat completions, Messages and Responses, as the SDKs
read them."""

import json

import anthropic
import jsonschema
import openai
import pytest
from pydantic import BaseModel

from ..factories import plan_configure

pytestmark = pytest.mark.django_db(transaction=True)

WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1},
        "hourly": {"type": "boolean"},
    },
    "required": ["city", "unit", "days"],
}
TOOLS = [
    {"type": "function", "function": {"name": "weather", "description": "Forecast", "parameters": WEATHER}}
]


@pytest.fixture
def offline(caller, settings, live_asgi):
    settings.SANDBOX_PROVIDER_ENABLED = True
    plan_configure(weights={"groq": 100})  # no provider key anywhere: the sandbox serves
    _user, plaintext, _client = caller
    return plaintext, live_asgi


@pytest.fixture
def gpt(offline):
    plaintext, url = offline
    return openai.OpenAI(base_url=f"{url}/api/proxy/v1", api_key=plaintext, max_retries=0)


def test_a_tool_call_matches_the_declared_schema(gpt):
    completion = gpt.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Weather in Oran?"}], tools=TOOLS
    )

    [call] = completion.choices[0].message.tool_calls
    assert completion.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "weather"
    jsonschema.validate(json.loads(call.function.arguments), WEATHER)


def test_after_the_tool_answers_the_sandbox_replies_in_text(gpt):
    first = gpt.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Weather?"}], tools=TOOLS
    )
    call = first.choices[0].message.tool_calls[0]

    second = gpt.chat.completions.create(
        model="gpt-4o-mini",
        tools=TOOLS,
        messages=[
            {"role": "user", "content": "Weather?"},
            first.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "21°C"},
        ],
    )

    assert second.choices[0].finish_reason == "stop"
    assert "21°C" in second.choices[0].message.content


def test_a_streamed_tool_call_is_reassembled_by_the_sdk(gpt):
    with gpt.chat.completions.stream(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Weather?"}], tools=TOOLS
    ) as stream:
        final = stream.get_final_completion()

    jsonschema.validate(json.loads(final.choices[0].message.tool_calls[0].function.arguments), WEATHER)


class Forecast(BaseModel):
    city: str
    days: int
    hourly: bool


def test_json_schema_mode_parses_into_the_callers_model(gpt):
    completion = gpt.chat.completions.parse(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Forecast?"}], response_format=Forecast
    )

    assert isinstance(completion.choices[0].message.parsed, Forecast)


def test_json_object_mode_answers_a_json_object(gpt):
    completion = gpt.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Say hi as JSON"}],
        response_format={"type": "json_object"},
    )

    assert isinstance(json.loads(completion.choices[0].message.content), dict)


def test_responses_and_messages_get_tool_calls_offline(gpt, offline):
    plaintext, url = offline
    claude = anthropic.Anthropic(base_url=f"{url}/api/proxy", api_key=plaintext, max_retries=0)

    response = gpt.responses.create(
        model="gpt-4o-mini",
        input="Weather?",
        tools=[{"type": "function", "name": "weather", "parameters": WEATHER}],
    )
    message = claude.messages.create(
        model="claude-sonnet-4",
        max_tokens=100,
        messages=[{"role": "user", "content": "Weather?"}],
        tools=[{"name": "weather", "input_schema": WEATHER}],
    )

    [item] = response.output
    assert item.type == "function_call" and item.name == "weather"
    jsonschema.validate(json.loads(item.arguments), WEATHER)
    [block] = message.content
    assert block.type == "tool_use" and message.stop_reason == "tool_use"
    jsonschema.validate(block.input, WEATHER)
