import json

from proxy.gateway import _SseUsageTap


def _event(payload) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def test_usage_is_captured_across_split_chunks_and_hidden_when_not_asked():
    tap = _SseUsageTap(forward_usage_event=False)
    content = _event({"choices": [{"delta": {"content": "hello"}}]})
    usage = _event({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}})
    stream = content + usage + b"data: [DONE]\n\n"

    out = b"".join(tap.feed(stream[i : i + 7]) for i in range(0, len(stream), 7)) + tap.flush()

    assert tap.usage == (3, 2)
    assert tap.content_chars == 5
    assert out == content + b"data: [DONE]\n\n"


def test_usage_event_is_forwarded_when_the_client_asked():
    tap = _SseUsageTap(forward_usage_event=True)
    usage = _event({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}})

    assert tap.feed(usage) == usage
