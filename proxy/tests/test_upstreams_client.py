"""The upstream HTTP client (aiohttp) in ``proxy.upstreams``: timeouts, deadline, pool, cleanup.

Each test runs its scenario with ``asyncio.run`` (a new event loop, as the Django test client's
``async_to_sync`` does) against an aiohttp server on that loop, HTTP/1.1 with keep-alive so the
pool's reuse of a connection is visible (the server records each request's client port).
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import warnings

import pytest
from aiohttp import web

from proxy import upstreams

CHAT = {"model": "m", "messages": [{"role": "user", "content": "héllo"}]}
COMPLETION = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}]}


class Upstream:
    """An OpenAI-like server on the running loop: ``slow`` seconds before the answer, ``stall``
    seconds after a stream's first event."""

    def __init__(self):
        self.slow = 0.0
        self.stall = 0.0
        self.requests: list[dict] = []
        self.runner: web.AppRunner | None = None
        self.base_url = ""

    async def start(self) -> Upstream:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/redirect/chat/completions", self.redirect)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}/v1"
        return self

    async def stop(self) -> None:
        await self.runner.cleanup()

    async def chat(self, request: web.Request) -> web.StreamResponse:
        payload = await request.json()
        self.requests.append(
            {
                "port": request.transport.get_extra_info("peername")[1],
                "content_type": request.headers.get("Content-Type"),
                "json": payload,
            }
        )
        if self.slow:
            await asyncio.sleep(self.slow)
        if not payload.get("stream"):
            return web.json_response(COMPLETION)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for index in range(20):
            await response.write(b"data: " + json.dumps({"i": index}).encode() + b"\n\n")
            await asyncio.sleep(self.stall if index == 0 and self.stall else 0.01)
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def redirect(self, request: web.Request) -> web.Response:
        self.requests.append({"port": None, "content_type": None, "json": None})
        raise web.HTTPFound("/v1/chat/completions")


def _target(base_url: str) -> upstreams.Target:
    return upstreams.Target(provider="openai", base_url=base_url, secret="sk-test")


def _run(scenario):
    """Run ``scenario(upstream)`` on a new loop with a fresh server."""

    async def main():
        upstream = await Upstream().start()
        try:
            return await scenario(upstream)
        finally:
            await upstream.stop()

    return asyncio.run(main())


@pytest.fixture(autouse=True)
def client_settings(settings):
    settings.PROXY_UPSTREAM_TIMEOUT = 5.0
    settings.PROXY_CONNECT_TIMEOUT = 5.0
    settings.PROXY_HTTP_MAX_CONNECTIONS = 10
    return settings


def test_json_body_and_answer(settings):
    async def scenario(upstream):
        return await upstreams.chat_complete(target=_target(upstream.base_url), payload=CHAT), upstream

    body, upstream = _run(scenario)

    assert body == COMPLETION
    assert upstream.requests[0]["content_type"] == "application/json"
    assert upstream.requests[0]["json"] == CHAT


def test_read_timeout_is_read_per_call_and_is_an_upstream_timeout(settings):
    async def scenario(upstream):
        upstream.slow = 0.5
        settings.PROXY_UPSTREAM_TIMEOUT = 0.1
        with pytest.raises(upstreams.UpstreamFailure) as failure:
            await upstreams.chat_complete(target=_target(upstream.base_url), payload=CHAT)
        settings.PROXY_UPSTREAM_TIMEOUT = 2.0  # same loop, same session: the new value applies
        body = await upstreams.chat_complete(target=_target(upstream.base_url), payload=CHAT)
        return failure.value, body

    failure, body = _run(scenario)

    assert failure.kind == "timeout"
    assert body == COMPLETION


def test_read_timeout_mid_stream_is_an_upstream_timeout(settings):
    async def scenario(upstream):
        settings.PROXY_UPSTREAM_TIMEOUT = 0.2
        upstream.stall = 1.0
        stream = await upstreams.chat_stream_open(
            target=_target(upstream.base_url), payload={**CHAT, "stream": True}
        )
        chunks = 0
        try:
            with pytest.raises(upstreams.UpstreamFailure) as failure:
                async for _chunk in stream.chunks():
                    chunks += 1
        finally:
            await stream.aclose()
        return failure.value, chunks

    failure, chunks = _run(scenario)

    assert failure.kind == "timeout"
    assert chunks >= 1


def test_caller_deadline_propagates_as_the_callers_timeout(settings):
    """``asyncio.timeout_at`` around a call (gateway) must see its own TimeoutError, not ours."""

    async def scenario(upstream):
        upstream.slow = 1.0
        outcomes = []
        for call in (
            upstreams.chat_complete(target=_target(upstream.base_url), payload=CHAT),
            upstreams.chat_stream_open(target=_target(upstream.base_url), payload={**CHAT, "stream": True}),
        ):
            try:
                async with asyncio.timeout(0.1):
                    await call
            except TimeoutError as exc:
                outcomes.append(type(exc))
        return outcomes

    assert _run(scenario) == [TimeoutError, TimeoutError]


def test_caller_deadline_mid_stream_propagates(settings):
    async def scenario(upstream):
        stream = await upstreams.chat_stream_open(
            target=_target(upstream.base_url), payload={**CHAT, "stream": True}
        )
        chunks = 0
        try:
            async with asyncio.timeout(0.05):
                async for _chunk in stream.chunks():
                    chunks += 1
        except TimeoutError as exc:
            outcome = type(exc)
        else:
            outcome = None
        finally:
            await stream.aclose()
        return outcome, chunks

    outcome, chunks = _run(scenario)

    assert outcome is TimeoutError
    assert chunks >= 1


def test_connection_refused_is_a_connect_failure():
    async def scenario(upstream):
        with pytest.raises(upstreams.UpstreamFailure) as failure:
            await upstreams.chat_complete(target=_target("http://127.0.0.1:9"), payload=CHAT)
        return failure.value

    assert _run(scenario).kind == "connect"


def test_redirects_are_not_followed():
    async def scenario(upstream):
        target = _target(f"{upstream.base_url}/redirect")
        failures = []
        for call in (upstreams.chat_complete, upstreams.chat_stream_open):
            with pytest.raises(upstreams.UpstreamFailure) as failure:
                await call(target=target, payload={**CHAT, "stream": call is upstreams.chat_stream_open})
            failures.append(failure.value.kind)
        return failures, upstream

    kinds, upstream = _run(scenario)

    assert kinds == ["redirect", "redirect"]
    assert len(upstream.requests) == 2  # the redirect's Location was never requested


def test_a_stream_read_to_its_end_reuses_the_connection_a_cut_one_does_not():
    async def scenario(upstream):
        target = _target(upstream.base_url)
        stream = await upstreams.chat_stream_open(target=target, payload={**CHAT, "stream": True})
        body = b"".join([chunk async for chunk in stream.chunks()])
        await stream.aclose()
        await upstreams.chat_complete(target=target, payload=CHAT)

        stream = await upstreams.chat_stream_open(target=target, payload={**CHAT, "stream": True})
        async for _chunk in stream.chunks():
            break
        await stream.aclose()  # cut after the first chunk
        await upstreams.chat_complete(target=target, payload=CHAT)
        return body, [request["port"] for request in upstream.requests]

    body, ports = _run(scenario)

    assert body.endswith(b"data: [DONE]\n\n")
    assert ports[0] == ports[1] == ports[2]  # full stream released: reused
    assert ports[3] != ports[2]  # cut stream closed: the next call connects anew


def test_sessions_of_closed_loops_are_dropped_without_unclosed_warnings(caplog):
    async def scenario(upstream):
        await upstreams.chat_complete(target=_target(upstream.base_url), payload=CHAT)
        return asyncio.get_running_loop(), upstreams.http_session_get()

    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.ERROR, logger="asyncio"):
        warnings.simplefilter("always")
        first_loop, first = _run(scenario)
        second_loop, second = _run(scenario)  # creating the second session drops the first loop's
        assert first_loop not in upstreams._sessions
        assert first.closed
        assert upstreams._sessions[second_loop] is second
        del first, first_loop
        gc.collect()

    assert not [str(w.message) for w in caught if "nclosed client session" in str(w.message)]
    assert not [str(w.message) for w in caught if "nclosed connector" in str(w.message)]
    assert "Unclosed" not in caplog.text
