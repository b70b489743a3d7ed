import asyncio
import json

from proxy.call.stream import _END, _queued_join, _SseUsageTap


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


def test_events_queued_behind_a_write_leave_together_in_order_and_the_end_stops_the_body():
    queue = asyncio.Queue()
    for item in (b"data: 2\n\n", b"data: 3\n\n", _END, b"never sent"):
        queue.put_nowait(item)

    assert _queued_join(b"data: 1\n\n", queue) == (b"data: 1\n\ndata: 2\n\ndata: 3\n\n", True)
    assert _queued_join(b"data: 4\n\n", asyncio.Queue()) == (b"data: 4\n\n", False)
