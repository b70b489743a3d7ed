"""Tollgate served by uvicorn (ASGI, as in production) in a thread, for tests that need real
sockets: client disconnects, the fast lane, concurrent callers."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from contextlib import contextmanager

import uvicorn

from core.fastio import fast_lane_close


@contextmanager
def uvicorn_served(*, lifespan: str = "off", application=None):
    """Yield the base URL of a live server; stop it (and join its thread) on exit.

    ``application``: Tollgate's (``config.asgi``) unless another ASGI app is given (the bench's
    floor relay).

    ``lifespan="on"``: the server runs the ASGI lifespan as gunicorn's uvicorn worker does, so a
    stop drains the calls still running (``core.lifecycle``).

    The server runs on a loop of its own, which closes the fast lane's pool and Redis client
    (``fast_lane_close``, a no-op when the lane was not used) before it ends, so no connection
    outlives the test. Yields ``(base_url, thread)``.
    """
    if application is None:
        from config.asgi import application  # noqa: PLC0415 (built on first use, under the test's settings)

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    config = uvicorn.Config(application, host="127.0.0.1", port=port, log_level="warning", lifespan=lifespan)
    server = uvicorn.Server(config)

    async def serve():
        try:
            await server.serve()
        finally:
            await fast_lane_close()

    def run():
        with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
            runner.run(serve())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}", thread
    finally:
        server.should_exit = True
        thread.join(timeout=10)
