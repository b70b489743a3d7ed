"""The framework floor: Tollgate's Django and DRF around a relay, with no key and no billing.

Served by ``python -m bench --floor`` as Tollgate is (``config.asgi:application`` under gunicorn
and uvicorn workers, ``DEBUG`` off, the same middleware and fast API path), with this module as
the URLconf (``bench.floor_settings``). The view is a DRF ``APIView`` on ``adrf`` like the proxy's,
rendering JSON with DRF's renderer and streaming with Django's ``StreamingHttpResponse``, and
calls the provider through ``proxy.upstreams``' pooled session. What it adds beyond the bare relay
(``bench.floor``) is the price of the framework the architecture prescribes; what Tollgate adds
beyond it is the price of keys, limits and books.
"""

from __future__ import annotations

from adrf.views import APIView as AsyncAPIView
from django.conf import settings
from django.http import StreamingHttpResponse
from django.urls import path
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from core.views import health
from proxy.call.view import JsonOnlyNegotiation
from proxy.upstreams import http_session_get


class FloorRelayApi(AsyncAPIView):
    """POST the body to the upstream and answer what it answers (JSON, or its SSE stream)."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    renderer_classes = [JSONRenderer]
    content_negotiation_class = JsonOnlyNegotiation

    async def post(self, request):
        upstream = await http_session_get().post(
            settings.FLOOR_UPSTREAM_URL,
            data=request._request.body,
            headers={"Content-Type": "application/json"},
        )
        content_type = upstream.headers.get("Content-Type", "")
        if content_type.startswith("text/event-stream"):
            return StreamingHttpResponse(_relay(upstream), content_type=content_type)
        try:
            return Response(await upstream.json(), status=upstream.status)
        finally:
            upstream.release()


async def _relay(upstream):
    try:
        async for chunk in upstream.content.iter_any():
            yield chunk
    finally:
        upstream.release()


urlpatterns = [
    path("health", health),
    path("api/proxy/v1/chat/completions", FloorRelayApi.as_view()),
]
