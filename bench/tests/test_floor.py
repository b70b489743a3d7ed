"""The floor relay passes answers through unchanged, so what it adds is only the stack's cost."""

import json

import httpx
import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient

from bench import floor, loadgen
from bench.__main__ import parse_args
from bench.fake_upstream import FakeUpstream
from bench.floor_bench import floor_run
from bench.report import floor_markdown
from proxy.tests.live import uvicorn_served


@pytest.fixture
def relay(monkeypatch):
    with FakeUpstream(latency_ms=0, completion_tokens=12, stream_chunks=4) as upstream:
        monkeypatch.setattr(floor, "UPSTREAM_URL", f"{upstream.base_url}/chat/completions")
        with uvicorn_served(application=floor.application, lifespan="on") as (base_url, _thread):
            yield base_url, upstream


def test_a_json_answer_comes_back_as_the_upstream_sent_it(relay):
    url, upstream = relay
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * 40}], "max_tokens": 5}
    relayed = httpx.post(f"{url}/api/proxy/v1/chat/completions", json=body)
    direct = httpx.post(f"{upstream.base_url}/chat/completions", json=body)
    assert relayed.status_code == 200
    assert relayed.headers["content-type"] == direct.headers["content-type"]
    assert (
        relayed.json()["usage"]
        == direct.json()["usage"]
        == {
            "prompt_tokens": 14,
            "completion_tokens": 5,
            "total_tokens": 19,
        }
    )
    assert upstream.server.chat_requests == 2


def test_a_stream_is_relayed_event_by_event_with_a_first_token(relay):
    url, _ = relay
    stats = loadgen.streams_run(url=f"{url}/api/proxy/v1/chat/completions", count=5)
    assert (stats.completed, stats.errors) == (5, 0)
    assert len(stats.ttft_ms) == 5
    body = {**loadgen.CHAT_BODY, "stream": True}
    with httpx.stream("POST", f"{url}/api/proxy/v1/chat/completions", json=body) as response:
        lines = list(response.iter_lines())
    assert response.headers["content-type"].startswith("text/event-stream")
    tokens, last = _sse_tokens(lines)
    assert tokens == ["tok"] * 12
    assert last == "data: [DONE]"


def _sse_tokens(lines) -> tuple[list[str], str]:
    """The content tokens of an SSE answer's events, and its last ``data:`` line."""
    events = [line for line in lines if line.startswith("data: ")]
    contents = [json.loads(e[6:])["choices"][0]["delta"].get("content") for e in events[:-1]]
    return "".join(c for c in contents if c).split(), events[-1]


def test_the_floor_table_reports_each_floor_s_added_figures():
    stats = {"p50_ms": 0.1, "p90_ms": 0.2, "p99_ms": 0.5, "rps": 9000.0}

    def floor_of(*, added_p50: float, ttft: float) -> dict:
        return {
            "instant": [
                {
                    "concurrency": 1,
                    "direct": stats,
                    "proxy": {**stats, "p50_ms": 0.1 + added_p50, "p99_ms": 2.0, "cpu_ms_per_request": 0.6},
                    "added_p50_ms": added_p50,
                    "added_p99_ms": 1.5,
                }
            ],
            "streams": {
                "count": 200,
                "added_ttft_p99_ms": ttft,
                "direct_ttft_p99_ms": 250.0,
                "proxy_ttft_p99_ms": 250.0 + ttft,
                "errors": 0,
                "sustained": {"added_ttft_p99_ms": 61.0},
            },
        }

    table = floor_markdown(
        {
            "meta": {"summary": "2026-12-05, commit abc1234, 60 s"},
            "bare": floor_of(added_p50=0.25, ttft=42.5),
            "django": floor_of(added_p50=1.5, ttft=120.0),
        }
    )
    assert "| bare | 1 | 0.10 / 0.50 | 0.35 / 2.00 | 0.25 / 1.50 | 9000 | 0.60 |" in table
    assert "| django | 1 | 0.10 / 0.50 | 1.60 / 2.00 | 1.50 / 1.50 | 9000 | 0.60 |" in table
    assert "bare ASGI relay (`bench/floor.py`): 200 streams, added TTFT p99 **42.5 ms** in a burst" in table
    assert "Django + DRF relay (`bench/floor_django.py`): 200 streams, added TTFT p99 **120.0 ms**" in table
    assert "61.0 ms kept open" in table


@pytest.fixture
def django_floor(settings):
    with FakeUpstream(latency_ms=0, completion_tokens=12, stream_chunks=4) as upstream:
        settings.ROOT_URLCONF = "bench.floor_django"
        settings.FLOOR_UPSTREAM_URL = f"{upstream.base_url}/chat/completions"
        yield upstream


def _django_floor_post(body: dict) -> tuple[int, str, bytes]:
    """One call through Django's ASGI handler to the framework floor, on one event loop."""

    async def call():
        response = await AsyncClient().post(
            "/api/proxy/v1/chat/completions", data=body, content_type="application/json"
        )
        if response.streaming:
            content = b"".join([chunk async for chunk in response.streaming_content])
        else:
            content = response.content
        return response.status_code, response["Content-Type"], content

    return async_to_sync(call)()


def test_the_django_floor_answers_the_upstream_json_through_drf(django_floor):
    status, content_type, content = _django_floor_post({**loadgen.CHAT_BODY, "max_tokens": 5})
    assert (status, content_type) == (200, "application/json")
    assert json.loads(content)["usage"]["completion_tokens"] == 5
    assert django_floor.server.chat_requests == 1


def test_the_django_floor_relays_the_whole_stream(django_floor):
    status, content_type, content = _django_floor_post({**loadgen.CHAT_BODY, "stream": True})
    assert status == 200
    assert content_type.startswith("text/event-stream")
    tokens, last = _sse_tokens(content.decode().splitlines())
    assert tokens == ["tok"] * 12
    assert last == "data: [DONE]"


@pytest.mark.wrk
@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db
def test_the_floors_run_end_to_end_under_gunicorn(settings):
    """``python -m bench --floor`` in small: both relays served by gunicorn, wrk and the stream
    client through them, every call answered."""
    database = settings.DATABASES["default"]
    args = parse_args(
        [
            "--floor",
            "--quick",
            "--duration",
            "1",
            "--no-celery",
            "--database-url",
            f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}",
            "--redis-url",
            settings.REDIS_URL,
        ]
    )
    floor = floor_run(args)
    assert set(floor) == {"bare", "django"}
    for kind, figures in floor.items():
        (row,) = figures["instant"]
        assert row["concurrency"] == 2
        assert row["proxy"]["errors"] == 0 and row["proxy"]["rps"] > 0, kind
        streams = figures["streams"]
        assert (streams["count"], streams["errors"]) == (10, 0), kind
        assert streams["added_ttft_p99_ms"] is not None, kind
