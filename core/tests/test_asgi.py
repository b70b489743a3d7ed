"""``core.asgi``: the metered API skips Django's per-request thread context; pages keep it."""

import asyncio
import os
import subprocess
import sys
import time

import pytest
from asgiref.sync import ThreadSensitiveContext, async_to_sync

from core import lifecycle
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


def _lifespan(hooks, monkeypatch, startup_hooks=()) -> list[str]:
    """Run the lifespan protocol (startup, then shutdown) with these hooks; the messages sent."""
    monkeypatch.setattr(lifecycle, "_hooks", list(hooks))
    monkeypatch.setattr(lifecycle, "_startup_hooks", list(startup_hooks))
    incoming = [{"type": "lifespan.shutdown"}, {"type": "lifespan.startup"}]
    sent = []

    async def receive():
        return incoming.pop()

    async def send(message):
        sent.append(message["type"])

    asyncio.run(application({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send))
    return sent


def test_a_failing_startup_warm_up_does_not_stop_the_worker(monkeypatch, caplog):
    ran = []

    async def failing():
        ran.append("failing")
        raise ConnectionError("database down")

    async def warming():
        ran.append("warming")

    sent = _lifespan([], monkeypatch, startup_hooks=[failing, warming])

    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert ran == ["failing", "warming"]
    [warning] = [r for r in caplog.records if r.getMessage() == "startup warm-up failed"]
    assert warning.error == "ConnectionError"


def test_shutdown_runs_every_drain_even_after_one_fails(monkeypatch, settings):
    settings.WORKER_SHUTDOWN_DRAIN_SECONDS = 5
    ran = []

    async def failing(deadline):
        ran.append("failing")
        raise RuntimeError("boom")

    async def finishing(deadline):
        await asyncio.sleep(0.01)
        ran.append("finishing")

    sent = _lifespan([failing, finishing], monkeypatch)

    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert ran == ["failing", "finishing"]


def test_shutdown_stops_waiting_at_the_drain_limit(monkeypatch, settings):
    settings.WORKER_SHUTDOWN_DRAIN_SECONDS = 0.2
    started = []

    async def endless(deadline):
        started.append(deadline)
        await asyncio.sleep(3600)

    before = time.monotonic()
    sent = _lifespan([endless], monkeypatch)
    elapsed = time.monotonic() - before

    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert len(started) == 1
    assert elapsed < 2


def test_a_worker_starts_with_its_views_imported_and_its_startup_heap_frozen():
    """What a gunicorn worker does when it imports the entry point, in a fresh interpreter: the
    first request must not pay for importing the views, and full collections must not walk the
    startup heap (docs/how-a-call-flows.md)."""
    probe = (
        "import gc, sys; import config.asgi; "
        "print(gc.get_freeze_count(), 'proxy.apis' in sys.modules, 'dashboards.views' in sys.modules)"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=60, check=True
    )

    frozen, proxy_views, pages = done.stdout.split()
    assert int(frozen) > 50_000
    assert (proxy_views, pages) == ("True", "True")
