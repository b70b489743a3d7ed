"""The fake upstream answers like an OpenAI-compatible provider (the proxy tests may reuse it)."""

import base64
import json
import time

import httpx
import pytest

from bench.fake_upstream import FakeUpstream


@pytest.fixture
def upstream():
    with FakeUpstream(latency_ms=0, completion_tokens=12) as server:
        yield server


def test_chat_completion_has_usage_and_respects_max_tokens(upstream):
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * 40}], "max_tokens": 5}
    response = httpx.post(f"{upstream.base_url}/chat/completions", json=body)
    assert response.status_code == 200
    data = response.json()
    assert data["object"] == "chat.completion"
    assert data["model"] == "gpt-4o"
    # 40 chars ≈ 10 tokens + 4 per message; completion capped by max_tokens.
    assert data["usage"] == {"prompt_tokens": 14, "completion_tokens": 5, "total_tokens": 19}
    assert data["choices"][0]["message"]["content"] == "tok tok tok tok tok"


def test_keep_alive_serves_many_requests_on_one_connection(upstream):
    with httpx.Client() as client:
        for _ in range(20):
            response = client.post(
                f"{upstream.base_url}/chat/completions",
                json={"messages": [{"role": "user", "content": "hi"}]},
            )
            assert response.status_code == 200
    assert upstream.server.chat_requests == 20


def _sse_events(response) -> list:
    return [line[6:] for line in response.iter_lines() if line.startswith("data: ")]


def test_stream_ends_with_usage_chunk_when_asked(upstream):
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "hello"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with httpx.stream("POST", f"{upstream.base_url}/chat/completions", json=body) as response:
        assert response.headers["content-type"] == "text/event-stream"
        events = _sse_events(response)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    usage_chunk = chunks[-1]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == 12
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text.split() == ["tok"] * 12


def test_stream_without_include_usage_has_no_usage_chunk(upstream):
    body = {"messages": [{"role": "user", "content": "hello"}], "stream": True}
    with httpx.stream("POST", f"{upstream.base_url}/chat/completions", json=body) as response:
        chunks = [json.loads(e) for e in _sse_events(response)[:-1]]
    assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_models_and_control_change_latency_and_status(upstream):
    models = httpx.get(f"{upstream.base_url}/models").json()
    assert "deepseek-chat" in [m["id"] for m in models["data"]]

    control = f"http://127.0.0.1:{upstream.port}/_control"
    assert httpx.post(control, json={"latency_ms": 150, "status": 503}).status_code == 200
    began = time.perf_counter()
    response = httpx.post(f"{upstream.base_url}/chat/completions", json={"messages": []})
    assert time.perf_counter() - began >= 0.14
    assert response.status_code == 503
    assert httpx.post(control, json={"no_such_knob": 1}).status_code == 400


def test_invalid_json_is_a_400_not_a_crash(upstream):
    response = httpx.post(f"{upstream.base_url}/chat/completions", content=b"{not json")
    assert response.status_code == 400
    # The server is still up.
    assert httpx.get(f"{upstream.base_url}/models").status_code == 200


def test_embeddings_answer_in_openai_shape_with_usage(upstream):
    body = {"model": "text-embedding-3-small", "input": ["x" * 40, "y" * 8]}
    response = httpx.post(f"{upstream.base_url}/embeddings", json=body)
    assert response.status_code == 200
    data = response.json()
    assert data["object"] == "list" and data["model"] == "text-embedding-3-small"
    assert [item["index"] for item in data["data"]] == [0, 1]
    assert len(data["data"][0]["embedding"]) == 1536  # text-embedding-3-small's width
    assert data["usage"] == {"prompt_tokens": 12, "total_tokens": 12}  # ~4 characters a token
    assert upstream.server.last_usage == data["usage"]

    narrow = httpx.post(
        f"{upstream.base_url}/embeddings",
        json={"model": "m", "input": "hi", "dimensions": 8, "encoding_format": "base64"},
    ).json()
    assert len(base64.b64decode(narrow["data"][0]["embedding"])) == 8 * 4  # little-endian float32
    assert httpx.post(f"{upstream.base_url}/embeddings", json={"model": "m"}).status_code == 400
