"""Django's ASGI handler, without a thread start per request on the metered API.

Django wraps every request in an asgiref ``ThreadSensitiveContext``; the request's first
thread-sensitive hop (``request_started``'s ``close_old_connections``, ``response.close()``)
then creates a one-thread executor for that request alone, so every proxied call paid a thread
start and teardown (the top CPU item of the event loop in a GIL profile). Requests under
``API_FAST_PATH_PREFIXES`` run no sync view code — their database work goes through
``proxy.dbcall`` — so they skip the per-request context: their few thread-sensitive hops use
asgiref's shared sync thread. Everything else is served exactly as Django does.

Use ``core.asgi:application`` as the ASGI entry point (``config/asgi.py`` can re-export it).
"""

from __future__ import annotations

import os

import django
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


class TollgateASGIHandler(ASGIHandler):
    def __init__(self):
        super().__init__()
        self.fast_prefixes = tuple(settings.API_FAST_PATH_PREFIXES)

    async def __call__(self, scope, receive, send):
        if (
            scope["type"] == "http"
            and self.fast_prefixes
            and scope.get("path", "").startswith(self.fast_prefixes)
        ):
            await self.handle(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def get_asgi_application() -> TollgateASGIHandler:
    django.setup(set_prefix=False)
    return TollgateASGIHandler()


application = get_asgi_application()
