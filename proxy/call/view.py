"""The DRF door of a call (adrf): admission → body size → gate → the view's handler.

``X-RateLimit-*`` headers go on every answer, errors included. The dispatch is DRF's own,
async, with the gate in place of DRF's authentication/throttling round, and JSON whatever
``Accept`` says.
"""

from __future__ import annotations

import inspect

from adrf.views import APIView as AsyncAPIView
from django.core.handlers.asgi import ASGIRequest
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.permissions import IsAuthenticated

from accounts.authentication import ApiKeyAuthentication
from core.fastio import transient_loop
from core.lifecycle import shutdown_run
from core.renderers import JSONRenderer

from ..dbcall import db_call
from .gate import admission_enter, gate_pass
from .input import body_size_check
from .stream import stream_buffer


class JsonOnlyNegotiation(BaseContentNegotiation):
    """The proxy answers JSON (or an SSE stream built by the view) whatever ``Accept`` says.

    DRF's default negotiation answers 406 to ``Accept: text/event-stream``, which is exactly what
    streaming clients send; it also costs a header parse per call for a choice that never varies.
    """

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        renderer = renderers[0]
        return renderer, renderer.media_type


class ProxyApiView(AsyncAPIView):
    """Base for the proxy: Bearer ``sk_agentai_…`` only, rate-limited per key, JSON only.

    After dispatch's gate: ``self.workspace`` (the key's workspace: the tenant, id only, see
    ``gate.workspace_ref``), ``self.plan`` (its plan), ``self.credentials_version`` and
    ``self.cooling`` (read by the gate's script, else None).
    """

    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [IsAuthenticated]
    renderer_classes = [JSONRenderer]
    content_negotiation_class = JsonOnlyNegotiation

    async def async_dispatch(self, request, *args, **kwargs):
        if not isinstance(request, ASGIRequest):
            # A sync handler (the test client, a WSGI server) runs this view on an event loop
            # that ends with the request: finish its work and close its connections first.
            token = transient_loop.set(True)
            try:
                response = await self._dispatch(request, *args, **kwargs)
                if getattr(response, "streaming", False):
                    await stream_buffer(response)
                return response
            finally:
                await shutdown_run()
                transient_loop.reset(token)
        return await self._dispatch(request, *args, **kwargs)

    async def _dispatch(self, request, *args, **kwargs):
        self.args = args
        self.kwargs = kwargs
        self._ratelimit_headers = {}
        self.workspace = None
        self.credentials_version = None
        self.cooling = None
        request = self.initialize_request(request, *args, **kwargs)
        self.request = request
        self.headers = self.default_response_headers
        ticket = await admission_enter()  # released once the call is reserved, or here
        try:
            body_size_check(request)
            self.plan = await gate_pass(self, request)
            handler = getattr(self, request.method.lower(), None)
            if handler is None or request.method.lower() not in self.http_method_names:
                self.http_method_not_allowed(request)
            if inspect.iscoroutinefunction(handler):
                response = await handler(request, *args, **kwargs)
            else:  # DRF's own handlers (``options``) are sync; they must not block the loop either
                response = await db_call(handler, request, *args, **kwargs)
        except Exception as exc:
            response = self.handle_exception(exc)
        finally:
            ticket.release()
        self.response = self.finalize_response(request, response, *args, **kwargs)
        for header, value in self._ratelimit_headers.items():
            self.response[header] = value
        self.response._resource_closers.append(self._references_untie)
        return self.response

    def _references_untie(self) -> None:
        """When the response closes (sent, or the client gone): undo DRF's view ↔ request ↔
        response references (``parser_context``, ``renderer_context``), so the call's objects are
        freed at once instead of being left to the cyclic collector."""
        request, response = self.request, self.response
        request.parser_context = None
        response.renderer_context = None
        self.request = self.response = None

    @property
    def request_id(self) -> str:
        return getattr(self.request._request, "request_id", "")
