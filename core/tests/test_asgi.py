"""``core.asgi``: the metered API skips Django's per-request thread context; pages keep it."""

import asyncio

import pytest
from asgiref.sync import ThreadSensitiveContext, async_to_sync

from core.asgi import application


def _call(path: str, method: str = "GET"):
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }
    sent = []
    messages = [{"type": "http.request", "body": b"{}", "more_body": False}]

    async def run():
        done = asyncio.Event()

        async def receive():
            if messages:
                return messages.pop()
            await done.wait()  # the client stays until the answer is complete
            return {"type": "http.disconnect"}

        async def send(message):
            sent.append(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                done.set()

        await application(scope, receive, send)

    async_to_sync(run)()
    return sent[0]["status"]


@pytest.fixture
def contexts(monkeypatch):
    entered = []
    original = ThreadSensitiveContext.__aenter__

    async def spy(self):
        entered.append(self)
        return await original(self)

    monkeypatch.setattr(ThreadSensitiveContext, "__aenter__", spy)
    return entered


@pytest.mark.django_db(transaction=True)
def test_proxy_paths_run_without_a_per_request_thread_context(contexts):
    assert _call("/api/proxy/v1/chat/completions", "POST") == 401
    assert contexts == []


@pytest.mark.django_db(transaction=True)
def test_other_paths_keep_djangos_context(contexts):
    assert _call("/health") in (200, 503)
    assert len(contexts) == 1
