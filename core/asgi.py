"""Django's ASGI handler, without a thread start per request on the metered API.

Requests under ``API_FAST_PATH_PREFIXES`` run no sync view code, so they skip Django's
per-request ``ThreadSensitiveContext`` (a one-thread executor started and joined per request)
and run the ``request_started`` / ``request_finished`` receivers inline: those only touch this
thread's connections, and the event loop's thread opens none. Everything else is served exactly
as Django does. The handler also speaks the ASGI lifespan protocol (``core.lifecycle``): warm-up
at startup, a drain of detached calls at shutdown. Entry point: ``core.asgi:application``
(``config/asgi.py`` re-exports it); why: docs/how-a-call-flows.md.
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
        # own) fills, walking the context's connections on every request for nothing.
        signals.request_started.disconnect(reset_queries)
    startup_heap_freeze()
    return handler


def startup_heap_freeze() -> None:
    """Import every view now, then put what startup built out of the cyclic collector's reach.

    The startup heap (Django, DRF, the views) never becomes garbage, yet every full collection
    walked it with the event loop stopped; frozen (``gc.freeze``), collections walk only what
    was allocated since. Garbage among frozen objects is never collected, so this runs once,
    right after startup.
    """
    get_resolver().url_patterns  # noqa: B018 (imports the views; Django would on the first request)
    gc.collect()
    gc.freeze()


application = get_asgi_application()
