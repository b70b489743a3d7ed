"""Django's ASGI handler, without a thread start per request on the metered API.

Django wraps every request in an asgiref ``ThreadSensitiveContext``; the request's first
thread-sensitive hop (``request_started``'s ``close_old_connections``, ``response.close()``)
then creates a one-thread executor for that request alone, so every proxied call paid a thread
start and teardown (the top CPU item of the event loop in a GIL profile). Requests under
``API_FAST_PATH_PREFIXES`` run no sync view code — their database work goes through
``proxy.dbcall`` — so they skip the per-request context: their few thread-sensitive hops use
asgiref's shared sync thread. Everything else is served exactly as Django does.

They also run Django's ``request_started`` / ``request_finished`` receivers inline instead of
through ``sync_to_async`` (two thread hops per call, ~5 % of a proxied call's CPU): those
receivers only reset and close *this thread's* database connections and the caches, and the
event loop's thread never opens a Django database connection (the proxy's database work runs
on ``proxy.dbcall``'s threads or on ``core.fastio``'s async pool).

It also speaks the ASGI lifespan protocol (Django's handler refuses it): at startup a worker
opens the fast lane's connections and loads the catalogue, and at shutdown it finishes the calls
still running without a client before it stops (``core.lifecycle``).

Use ``core.asgi:application`` as the ASGI entry point (``config/asgi.py`` re-exports it).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os

import django
from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.db import reset_queries
from django.urls import get_resolver, set_script_prefix

from core.lifecycle import shutdown_run, startup_run

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


class TollgateASGIHandler(ASGIHandler):
    def __init__(self):
        super().__init__()
        self.fast_prefixes = tuple(settings.API_FAST_PATH_PREFIXES)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
            return
        if (
            scope["type"] == "http"
            and self.fast_prefixes
            and scope.get("path", "").startswith(self.fast_prefixes)
        ):
            await self._handle_api(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    async def lifespan(self, receive, send):
        """Startup opens connections ahead of the first calls; shutdown drains what is still
        running (``core.lifecycle``)."""
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await startup_run()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await shutdown_run()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _handle_api(self, scope, receive, send):
        """``ASGIHandler.handle`` (Django 5.2) with the request signals sent inline."""
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            body_file.close()
            await self.send_response(error_response, send)
            error_response.close()
            return

        async def process_request(request, send):
            response = await self.run_get_response(request)
            with contextlib.suppress(asyncio.CancelledError):  # client gone during send_response
                await self.send_response(response, send)
            return response

        listener = asyncio.create_task(self._client_gone(receive))
        processing = asyncio.create_task(process_request(request, send))
        await asyncio.wait((listener, processing), return_when=asyncio.FIRST_COMPLETED)
        if not processing.done():  # the client left first
            processing.cancel()  # the view handles cancellation (the proxy's calls are shielded)
            with contextlib.suppress(asyncio.CancelledError):
                await processing
        if not listener.done():
            listener.cancel()
        elif (invalid := listener.exception()) is not None:  # a message other than a disconnect
            body_file.close()
            raise invalid
        try:
            response = processing.result()
        except asyncio.CancelledError:
            signals.request_finished.send(sender=self.__class__)
        else:
            response.close()
        body_file.close()

    @staticmethod
    async def _client_gone(receive) -> None:
        """Return when the client disconnects (after the response, the server says so at once).

        Django's ``listen_for_disconnect`` raises ``RequestAborted`` instead: on every request,
        that exception's traceback tied the request's frames and tasks into a reference cycle
        left to the cyclic collector.
        """
        message = await receive()
        if message["type"] != "http.disconnect":
            raise AssertionError(f"Invalid ASGI message after request body: {message['type']}")


def get_asgi_application() -> TollgateASGIHandler:
    django.setup(set_prefix=False)
    handler = TollgateASGIHandler()
    if not settings.DEBUG:
        # It clears a query log that only DEBUG (or a test's query capture, which clears its
        # own) fills, walking the context's connections on every request: ~1.7 % of a
        # streamed call's CPU in a profile, for nothing.
        signals.request_started.disconnect(reset_queries)
    startup_heap_freeze()
    return handler


def startup_heap_freeze() -> None:
    """Import every view now, then put what startup built out of the cyclic collector's reach.

    A worker's startup heap (Django, DRF, the URLconf's views and their imports: ~150 000
    tracked objects) never becomes garbage, yet every full collection walked it: ~150 ms with
    the event loop stopped, in a bench worker, a few times a minute under load. Frozen
    (``gc.freeze``), a full collection walks only what was allocated since (25–30 ms there),
    and collections cost about half the CPU they did. Garbage made of objects frozen here is
    never collected, so this runs once, after startup, not later.
    """
    get_resolver().url_patterns  # noqa: B018 (imports the views; Django would on the first request)
    gc.collect()
    gc.freeze()


application = get_asgi_application()
