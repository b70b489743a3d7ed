"""The floor of the serving stack: a bare relay, no Django, no key, no accounting.

``python -m bench --floor`` serves this ASGI app exactly as Tollgate is served (gunicorn, the
same number of uvicorn workers, uvloop and httptools, one pooled ``aiohttp`` session per worker,
as ``proxy.upstreams`` uses) and measures it with the same load as Tollgate. Whatever this relay
adds to a call, no Tollgate built on this stack can add less: it is the part of the targets that
belongs to Python, the ASGI server and the two cores, not to billing. The relay answers a POST
on the proxy's path with the upstream's status, content type and body, chunk by chunk, and
nothing else (the bench's key header is ignored).
"""

from __future__ import annotations

import asyncio
import os

import aiohttp

UPSTREAM_URL = os.environ.get("FLOOR_UPSTREAM_URL", "http://127.0.0.1:8001/v1/chat/completions")

_sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}


def _session_get() -> aiohttp.ClientSession:
    """One pooled session per event loop, as ``proxy.upstreams`` keeps."""
    loop = asyncio.get_running_loop()
    session = _sessions.get(loop)
    if session is None:
        connector = aiohttp.TCPConnector(limit=2000, limit_per_host=0, keepalive_timeout=30)
        session = _sessions[loop] = aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.DummyCookieJar()
        )
    return session


async def _body_read(receive) -> bytes:
    parts = []
    while True:
        message = await receive()
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts)


async def application(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                session = _sessions.pop(asyncio.get_running_loop(), None)
                if session is not None:
                    await session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    if scope["method"] == "GET":  # the bench's readiness probe
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        await send({"type": "http.response.body", "body": b"ok"})
        return
    await relay(receive, send, upstream_url=UPSTREAM_URL)


async def relay(receive, send, *, upstream_url: str) -> None:
    """Post the request's body to ``upstream_url``; answer its status, content type and body,
    chunk by chunk (also the stub peer's relay, ``bench.stub_peer``)."""
    body = await _body_read(receive)
    async with _session_get().post(
        upstream_url, data=body, headers={"Content-Type": "application/json"}
    ) as upstream:
        content_type = upstream.headers.get("Content-Type", "application/json").encode()
        await send(
            {
                "type": "http.response.start",
                "status": upstream.status,
                "headers": [(b"content-type", content_type)],
            }
        )
        async for chunk in upstream.content.iter_any():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})
