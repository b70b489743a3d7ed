"""A stand-in for LiteLLM's proxy that speaks its protocol: ``python -m bench --peer stub``.

The bench's tests run ``--peer`` end to end against it, so the peer mode cannot rot in CI, where
LiteLLM is not installed. It answers what the bench asks of a peer gateway, as LiteLLM's proxy
does with a master key and no database:

- ``GET /health/liveliness``: 200 (the readiness probe);
- ``POST /chat/completions`` and ``/v1/chat/completions`` with ``Authorization: Bearer <master
  key>``: the request relayed to the upstream, the answer (JSON, or SSE when streaming) relayed
  back chunk by chunk (``bench.floor.relay``);
- a missing or wrong key: 401 with an OpenAI-shaped error, before anything goes upstream.

Served like LiteLLM's proxy (uvicorn, several worker processes): ``python -m uvicorn
bench.stub_peer:application --workers 2`` with ``STUB_PEER_UPSTREAM_URL`` (the fake upstream's
chat URL) and ``STUB_PEER_MASTER_KEY`` in the environment.
"""

from __future__ import annotations

import hmac
import json
import os

from bench import floor

UPSTREAM_URL = os.environ.get("STUB_PEER_UPSTREAM_URL", "http://127.0.0.1:8001/v1/chat/completions")
MASTER_KEY = os.environ.get("STUB_PEER_MASTER_KEY", "")
CHAT_PATHS = ("/chat/completions", "/v1/chat/completions")


async def _json_answer(send, status: int, body: dict) -> None:
    payload = json.dumps(body).encode()
    await send(
        {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": payload})


def _authorized(scope) -> bool:
    expected = f"Bearer {MASTER_KEY}".encode()
    for name, value in scope["headers"]:
        if name == b"authorization":
            return bool(MASTER_KEY) and hmac.compare_digest(value, expected)
    return False


async def application(scope, receive, send):
    if scope["type"] == "lifespan":
        await floor.application(scope, receive, send)  # opens and closes the relay's pool
        return
    if scope["type"] != "http":
        return
    path, method = scope["path"], scope["method"]
    if method == "GET" and path == "/health/liveliness":
        await _json_answer(send, 200, "I'm alive!")
    elif method == "POST" and path in CHAT_PATHS:
        if not _authorized(scope):
            error = {"message": "Authentication Error, invalid key", "type": "auth_error", "code": "401"}
            await _json_answer(send, 401, {"error": {**error, "param": "None"}})
            return
        await floor.relay(receive, send, upstream_url=UPSTREAM_URL)
    else:
        await _json_answer(send, 404, {"detail": "Not Found"})
