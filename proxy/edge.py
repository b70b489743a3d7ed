"""The chat endpoints' edge: the fast lane's steady case served as a plain ASGI route.

With the fast lane, what was left of a proxied call's CPU outside the call itself was Django's
ASGI handler and DRF: the ``HttpRequest`` and DRF ``Request``, the middleware chain, URL
resolution, content negotiation, ``Response`` rendering and Django's response writer — about a
tenth of a call. For the two chat endpoints (``CHAT_EDGE_ROUTES``) ``core.asgi`` hands the raw
ASGI request here first. The edge serves only what the fast lane decides alone: a POST with a
plainly valid JSON body (``apis._chat_input_plain``), a well-formed Bearer key and a gate the
Redis script passes. The body is validated and the call built by the views' own
``apis.chat_call_build``, and run by the same ``gateway.chat_call_run``.

Everything else — another method, an oversized or non-JSON body, a body the serializer must
judge, a missing or malformed key, a key this process has not authenticated yet, the fast lane
off — is handed to Django with the body replayed, and the DRF view serves it exactly as before.
A request handed over after the gate script counted it carries that count in its scope
(``fastlane.GATE_COUNTED_SCOPE_KEY``), so the rate limit never counts it twice.

Answers carry what the view's do: the JSON body, ``X-RateLimit-*``, ``X-Request-ID``,
``X-Content-Type-Options: nosniff``, ``Allow``. A test holds the two paths to the same answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from django.conf import settings
from django.utils.http import parse_header_parameters
from rest_framework.renderers import JSONRenderer

from accounts.keys import api_key_is_well_formed
from core.exceptions import ApiError, api_exception_handler
from core.fastio import fast_lane_enabled
from core.logging import request_id_var
from core.middleware import request_id_for

from . import fastlane
from .apis import (
    CHAT_COMPLETIONS_ROUTE,
    DEEPSEEK_CHAT_ROUTE,
    _chat_input_plain,
    api_key_touch_soon,
    chat_call_build,
    router_chain,
)
from .gateway import chat_call_run
from .ratelimit import rate_limit_error

logger = logging.getLogger("tollgate.proxy")

_renderer = JSONRenderer()
_BASE_HEADERS = [
    (b"allow", b"POST, OPTIONS"),
    (b"x-content-type-options", b"nosniff"),
]


class _HandOver(Exception):
    """Not the edge's case: Django serves the request."""


def _read_limit() -> int:
    return settings.PROXY_MAX_BODY_BYTES


async def _body_read(receive) -> tuple[bytes, list[dict], bool] | None:
    """(body, messages read, complete). None when the client left while sending it.

    Stops reading past ``PROXY_MAX_BODY_BYTES`` (incomplete): Django then reads the rest and
    answers 413 as the view does.
    """
    messages, size, limit = [], 0, _read_limit()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        messages.append(message)
        size += len(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(m.get("body", b"") for m in messages), messages, True
        if size > limit:
            return b"", messages, False


def _replayed(messages: list[dict], receive):
    """A ``receive`` that gives back the messages already read, then the client's own."""
    pending = list(messages)

    async def replay():
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


def _headers(scope) -> dict[bytes, bytes]:
    return {name.lower(): value for name, value in scope["headers"]}


def _payload_plain(headers: dict[bytes, bytes], body: bytes) -> tuple[dict, dict]:
    """(payload, validated data) of a plainly valid JSON chat body, else _HandOver."""
    declared = headers.get(b"content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > _read_limit()):
        raise _HandOver
    if not body or len(body) > _read_limit():
        raise _HandOver
    media_type, _params = parse_header_parameters(headers.get(b"content-type", b"").decode("latin-1"))
    if media_type.lower() != "application/json":
        raise _HandOver
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise _HandOver from None
    if not isinstance(payload, dict):
        raise _HandOver
    data = _chat_input_plain(payload)
    if data is None:
        raise _HandOver
    return payload, data


def _bearer_key(headers: dict[bytes, bytes]) -> str:
    scheme, _, raw_key = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
    if scheme.lower() != "bearer" or not api_key_is_well_formed(raw_key):
        raise _HandOver
    return raw_key


def _encoded(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode("latin-1"), str(value).encode("latin-1")) for name, value in headers.items()]


async def _send_json(send, *, status: int, data, headers: list[tuple[bytes, bytes]]) -> None:
    body = _renderer.render(data)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _send_stream(send, response, headers: list[tuple[bytes, bytes]]) -> None:
    """A ``StreamingHttpResponse`` (the SSE relay) written chunk by chunk."""
    await send(
        {
            "type": "http.response.start",
            "status": response.status_code,
            "headers": [*_encoded(dict(response.items())), *headers],
        }
    )
    async with contextlib.aclosing(aiter(response)) as content:  # as Django: the relay's finally runs
        async for chunk in content:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def _until_disconnect(receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def chat_edge(route: dict, *, routed: bool):
    """The ASGI callable ``core.asgi`` gives the path: ``edge(scope, receive, send, django)``.

    ``routed``: the provider chain comes from the plan's weights (else ``route["chain"]``).
    """

    async def edge(scope, receive, send, django) -> None:
        if scope["method"] != "POST" or not fast_lane_enabled():
            await django(scope, receive, send)
            return
        read = await _body_read(receive)
        if read is None:
            return  # the client left before its request was complete: nothing was done
        body, messages, complete = read
        headers = _headers(scope)
        request_id = request_id_for(headers.get(b"x-request-id", b"").decode("latin-1"))
        answer_headers = [(b"x-request-id", request_id.encode()), *_BASE_HEADERS]
        token = request_id_var.set(request_id)
        try:
            try:
                if not complete:
                    raise _HandOver
                payload, data = _payload_plain(headers, body)
                passed, counted = await fastlane.gate(raw_key=_bearer_key(headers))
                if passed is None:
                    if counted is not None:
                        scope = {**scope, fastlane.GATE_COUNTED_SCOPE_KEY: counted}
                    raise _HandOver
            except _HandOver:
                await django(scope, _replayed(messages, receive), send)
                return
            except Exception as exc:  # the stores are down: the 503 the view gives
                await _send_error(send, exc, answer_headers)
                return
            answer_headers[:0] = _encoded(passed.rate.headers())
            call = _answer(route, routed, passed, payload, data, request_id, send, answer_headers)
            await _until_answered_or_gone(call, receive)
        finally:
            request_id_var.reset(token)

    return edge


async def _until_answered_or_gone(answer, receive) -> None:
    """Answer, unless the client leaves first; the call itself runs on (``call_detached``)."""
    task = asyncio.ensure_future(answer)
    gone = asyncio.ensure_future(_until_disconnect(receive))
    await asyncio.wait([task, gone], return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        gone.cancel()
        task.result()
    else:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _answer(route, routed, passed, payload, data, request_id, send, headers) -> None:
    try:
        if passed.rate.exceeded:
            raise rate_limit_error(passed.rate)
        api_key_touch_soon(passed.identity)
        plan = passed.plan
        call = chat_call_build(
            payload,
            data=data,
            user=passed.user,
            key_id=passed.identity.key_id,
            plan=plan,
            request_id=request_id,
            credentials_version=passed.credentials_version,
            cooling=passed.cooling,
            chain=router_chain(plan) if routed else route["chain"],
            service=route["service"],
            endpoint=route["endpoint"],
            default_model=route["default_model"],
        )
        result = await chat_call_run(call)
    except Exception as exc:
        await _send_error(send, exc, headers)
        return
    if isinstance(result, dict):
        await _send_json(send, status=200, data=result, headers=headers)
    else:
        await _send_stream(send, result, headers)


async def _send_error(send, exc: Exception, headers: list[tuple[bytes, bytes]]) -> None:
    """The view's exception handler's answer; an unexpected error is logged and answers 500."""
    response = api_exception_handler(exc, {})
    if response is None:
        logger.error("chat edge failed", exc_info=exc)
        response = ApiError("server_error", "Internal server error.").as_response()
    # DRF sets the content type when it renders; before that Django's default is in the headers.
    extra = [h for h in _encoded(dict(response.items())) if h[0] not in (b"content-type", b"content-length")]
    names = {name for name, _value in extra}
    await _send_json(
        send,
        status=response.status_code,
        data=response.data,
        headers=[*extra, *(h for h in headers if h[0] not in names)],
    )


CHAT_EDGE_ROUTES = {
    CHAT_COMPLETIONS_ROUTE["endpoint"]: chat_edge(CHAT_COMPLETIONS_ROUTE, routed=True),
    DEEPSEEK_CHAT_ROUTE["endpoint"]: chat_edge({**DEEPSEEK_CHAT_ROUTE, "chain": ["deepseek"]}, routed=False),
}
