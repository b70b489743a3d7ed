"""The bridges between Anthropic Messages / the Responses API and chat completions.

Streams are checked by replaying our events through the real SDKs' own accumulators, so the
test fails if a client would not rebuild the message from what we send.
"""

import json

import pytest
from anthropic.lib.streaming._messages import accumulate_event
from openai._models import construct_type
from openai._types import omit
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import ResponseStreamEvent

from proxy.translate import TranslationError
from proxy.translate.anthropic import MessagesToChatStream, chat_to_messages_request, message_to_chat
from proxy.translate.messages import ChatToMessagesStream, chat_to_message, messages_to_chat
from proxy.translate.responses import ChatToResponsesStream, chat_to_response, responses_to_chat
from proxy.translate.sse import SseDecoder, chat_chunks_parse


def _chat_chunks(*deltas, finish="stop", usage=(12, 5)):
    chunks = [{"choices": [{"index": 0, "delta": delta, "finish_reason": None}]} for delta in deltas]
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    chunks.append({"choices": [], "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1]}})
    return chunks


def _events(raw: list[bytes]) -> list[tuple[str | None, dict]]:
    decoder = SseDecoder()
    return [(event, json.loads(data)) for event, data in decoder.feed(b"".join(raw))]


# --- Anthropic client → chat --------------------------------------------------------------------


def test_a_tool_round_trip_keeps_its_order_and_ids():
    body = {
        "model": "claude-sonnet-4",
        "max_tokens": 100,
        "system": [{"type": "text", "text": "Be brief."}],
        "messages": [
            {"role": "user", "content": "Weather in Oran?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oran"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "21°C"},
                    {"type": "text", "text": "And tomorrow?"},
                ],
            },
        ],
        "tools": [{"name": "weather", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "stop_sequences": ["END"],
    }
    chat = messages_to_chat(body)
    assert [m["role"] for m in chat["messages"]] == ["system", "user", "assistant", "tool", "user"]
    assert chat["messages"][0]["content"] == "Be brief."
    assert chat["messages"][2]["tool_calls"][0]["id"] == "toolu_1"
    assert json.loads(chat["messages"][2]["tool_calls"][0]["function"]["arguments"]) == {"city": "Oran"}
    assert chat["messages"][3] == {"role": "tool", "tool_call_id": "toolu_1", "content": "21°C"}
    assert chat["tool_choice"] == "required" and chat["parallel_tool_calls"] is False
    assert chat["stop"] == ["END"] and chat["max_tokens"] == 100
    assert chat["tools"][0]["function"]["name"] == "weather"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m", "messages": [{"role": "user", "content": "hi"}]}, "max_tokens"),
        ({"model": "m", "max_tokens": "10", "messages": [{"role": "user", "content": "hi"}]}, "max_tokens"),
        ({"model": "m", "max_tokens": 10, "messages": []}, "messages"),
        ({"model": "m", "max_tokens": 10, "messages": [{"role": "tool", "content": "x"}]}, "messages.0.role"),
        (
            {
                "model": "m",
                "max_tokens": 10,
                "messages": [{"role": "user", "content": [{"type": "document"}]}],
            },
            "messages.0.content.0.type",
        ),
        (
            {
                "model": "m",
                "max_tokens": 10,
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "web_search_20250305", "name": "web_search"}],
            },
            "tools.0.type",
        ),
    ],
)
def test_what_cannot_be_carried_is_refused_naming_the_field(body, param):
    with pytest.raises(TranslationError) as caught:
        messages_to_chat(body)
    assert caught.value.param == param


def test_a_chat_answer_becomes_a_message_with_anthropic_stop_reason_and_usage():
    chat = {
        "choices": [
            {
                "message": {
                    "content": "Sure.",
                    "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": '{"a": 1}'}}],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {
            "prompt_tokens": 30,
            "completion_tokens": 7,
            "prompt_tokens_details": {"cached_tokens": 10},
        },
    }
    message = chat_to_message(chat, model="claude-sonnet-4")
    assert message["stop_reason"] == "tool_use"
    assert message["content"] == [
        {"type": "text", "text": "Sure."},
        {"type": "tool_use", "id": "c1", "name": "f", "input": {"a": 1}},
    ]
    assert message["usage"]["input_tokens"] == 20 and message["usage"]["cache_read_input_tokens"] == 10
    assert message["usage"]["output_tokens"] == 7


def test_the_anthropic_sdk_rebuilds_a_streamed_message_from_our_events():
    stream = ChatToMessagesStream(model="gpt-4o-mini")
    raw = []
    call = {"index": 0, "id": "c9", "function": {"name": "lookup", "arguments": '{"q":'}}
    more = {"index": 0, "function": {"arguments": ' "tea"}'}}
    for chunk in _chat_chunks(
        {"role": "assistant", "content": "Hel"},
        {"content": "lo"},
        {"tool_calls": [call]},
        {"tool_calls": [more]},
        finish="tool_calls",
    ):
        raw += stream.feed(chunk)
    raw += stream.feed(None) + stream.finish()
    snapshot, bufs = None, {}
    events = _events(raw)
    assert [event for event, _ in events][0] == "message_start"
    assert events[-1][0] == "message_stop"
    for _event, data in events:
        snapshot = accumulate_event(event=data, current_snapshot=snapshot, json_bufs=bufs)
    assert snapshot.content[0].text == "Hello"
    assert snapshot.content[1].name == "lookup" and snapshot.content[1].input == {"q": "tea"}
    assert snapshot.stop_reason == "tool_use"
    assert (snapshot.usage.input_tokens, snapshot.usage.output_tokens) == (12, 5)


def test_a_stream_cut_before_the_end_closes_with_an_error_event():
    stream = ChatToMessagesStream(model="m")
    raw = stream.feed({"choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}]})
    raw += stream.finish()
    events = _events(raw)
    assert events[-1][0] == "error" and events[-1][1]["error"]["type"] == "api_error"


# --- Anthropic as a provider --------------------------------------------------------------------


def test_a_chat_payload_becomes_a_native_request_with_alternating_turns():
    payload = {
        "model": "claude-3-5-haiku-latest",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "t1", "function": {"name": "f", "arguments": "{}"}}],
            },
            {"role": "tool", "tool_call_id": "t1", "content": "ok"},
            {"role": "user", "content": "Thanks"},
        ],
        "temperature": 1.6,
        "stop": "END",
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "tool_choice": "auto",
    }
    request = chat_to_messages_request(payload)
    assert request["system"] == "Be brief."
    assert [turn["role"] for turn in request["messages"]] == ["user", "assistant", "user"]
    assert request["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "t1", "content": "ok"},
        {"type": "text", "text": "Thanks"},
    ]
    assert request["max_tokens"] == 4096 and request["temperature"] == 1.0
    assert request["stop_sequences"] == ["END"] and request["tool_choice"] == {"type": "auto"}
    with pytest.raises(TranslationError):
        chat_to_messages_request({**payload, "n": 2})


def test_a_native_message_becomes_a_chat_completion():
    message = {
        "id": "msg_1",
        "model": "claude-3-5-haiku-20241022",
        "content": [
            {"type": "text", "text": "Hi"},
            {"type": "tool_use", "id": "t", "name": "f", "input": {"x": 1}},
        ],
        "stop_reason": "max_tokens",
        "usage": {"input_tokens": 5, "output_tokens": 3, "cache_read_input_tokens": 4},
    }
    chat = message_to_chat(message, created=1)
    assert chat["choices"][0]["finish_reason"] == "length"
    assert chat["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] == '{"x": 1}'
    assert (
        chat["usage"]["prompt_tokens"] == 9 and chat["usage"]["prompt_tokens_details"]["cached_tokens"] == 4
    )


# Anthropic's documented example stream (with a ping), as sent on the wire.
_ANTHROPIC_EVENTS = [
    {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": "claude-3-5-haiku-20241022",
            "stop_reason": None,
            "usage": {"input_tokens": 25, "output_tokens": 1},
        },
    },
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "ping"},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "!"}},
    {"type": "content_block_stop", "index": 0},
    {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": 15},
    },
    {"type": "message_stop"},
]
ANTHROPIC_STREAM = b"".join(
    f"event: {event['type']}\r\ndata: {json.dumps(event)}\r\n\r\n".encode() for event in _ANTHROPIC_EVENTS
)


def test_a_native_stream_becomes_chat_chunks_with_usage_last():
    translator = MessagesToChatStream(model="claude", created=1)
    decoder = SseDecoder()
    out = []
    for index in range(0, len(ANTHROPIC_STREAM), 7):  # split anywhere
        for event, data in decoder.feed(ANTHROPIC_STREAM[index : index + 7]):
            out += translator.feed(event, json.loads(data))
    chunks = chat_chunks_parse(SseDecoder(), b"".join(out))
    assert chunks[-1] is None
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1] if c["choices"])
    assert text == "Hello!"
    assert chunks[-2]["usage"] == {
        "prompt_tokens": 25,
        "completion_tokens": 15,
        "total_tokens": 40,
        "prompt_tokens_details": {"cached_tokens": 0},
    }
    assert chunks[-3]["choices"][0]["finish_reason"] == "stop"


# --- Responses API ------------------------------------------------------------------------------


def test_a_responses_request_becomes_chat():
    chat = responses_to_chat(
        {
            "model": "gpt-4o-mini",
            "instructions": "Be brief.",
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "done"},
            ],
            "max_output_tokens": 50,
            "text": {"format": {"type": "json_schema", "name": "r", "schema": {"type": "object"}}},
            "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
        }
    )
    assert [m["role"] for m in chat["messages"]] == ["system", "user", "assistant", "tool"]
    assert chat["messages"][1]["content"] == "Hi" and chat["max_tokens"] == 50
    assert chat["response_format"]["json_schema"]["name"] == "r"
    for refused in ({"previous_response_id": "resp_1"}, {"tools": [{"type": "web_search"}]}):
        with pytest.raises(TranslationError) as caught:
            responses_to_chat({"model": "m", "input": "x", **refused})
        assert caught.value.param.split(".")[0] in refused


def test_a_chat_answer_becomes_a_response_and_a_cut_one_is_incomplete():
    chat = {
        "choices": [{"message": {"content": "Hi"}, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2},
    }
    response = chat_to_response(chat, body={"model": "m"}, model="m")
    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert response["output"][0]["content"][0]["text"] == "Hi"
    assert response["usage"]["input_tokens"] == 3 and response["usage"]["total_tokens"] == 5


def test_the_openai_sdk_reads_a_streamed_response_from_our_events():

    stream = ChatToResponsesStream(body={"model": "m"}, model="m")
    raw = []
    for chunk in _chat_chunks({"content": "Bon"}, {"content": "jour"}):
        raw += stream.feed(chunk)
    raw += stream.finish()
    events = _events(raw)
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    state = ResponseStreamState(input_tools=[], text_format=omit)
    for _event, data in events:
        state.handle_event(construct_type(type_=ResponseStreamEvent, value=data))
    final = events[-1][1]["response"]
    assert events[-1][0] == "response.completed"
    assert state._completed_response.output_text == "Bonjour"
    assert final["usage"]["input_tokens"] == 12 and final["usage"]["output_tokens"] == 5


@pytest.mark.parametrize(
    ("response_format", "says"),
    [
        ({"type": "json_object"}, "one valid JSON object"),
        (
            {"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "object"}}},
            '{"type":"object"}',
        ),
    ],
)
def test_json_mode_reaches_anthropic_as_an_instruction(response_format, says):
    request = chat_to_messages_request(
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "response_format": response_format}
    )

    assert says in request["system"]
