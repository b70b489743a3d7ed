"""Times every HTTP request for ``tollgate_request_duration_seconds`` (``core.metrics``).

Right after ``RequestIdMiddleware`` in ``MIDDLEWARE``, so the time covers the rest of the stack,
the proxy's fast path included (CORS, when on, goes in before it: preflights it answers are not
timed). The route label is the resolved URL pattern (``request.resolver_match.route``), which Django
and ``ApiFastPathMiddleware`` set while handling the request: a path no pattern matches
(including the ``/api/`` catch-all that answers the JSON 404) is ``unmatched``, so unknown URLs
never add label values. Static files, answered before URL resolution, are ``static``.
"""

from __future__ import annotations

import time

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings

from .metrics import UNMATCHED, request_observe

# Patterns that match what is not a route: their template would say nothing useful.
CATCH_ALL_URL_NAMES = frozenset({"api-not-found"})


def request_route(request) -> str:
    """The bounded route label of a handled request."""
    match = getattr(request, "resolver_match", None)
    if match is None or match.url_name in CATCH_ALL_URL_NAMES:
        if request.path_info.startswith(settings.STATIC_URL or "/static/"):
            return "static"
        return UNMATCHED
    return f"/{match.route}"


class RequestMetricsMiddleware:
    """Observes each request's duration by route, method and status class. Sync and async
    capable, so the async chain under ASGI gains no thread hop."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self.__acall__(request)
        started = time.perf_counter()
        response = self.get_response(request)
        self._observe(request, response, started)
        return response

    async def __acall__(self, request):
        started = time.perf_counter()
        response = await self.get_response(request)
        self._observe(request, response, started)
        return response

    @staticmethod
    def _observe(request, response, started: float) -> None:
        request_observe(
            route=request_route(request),
            method=request.method,
            status=response.status_code,
            seconds=time.perf_counter() - started,
        )
