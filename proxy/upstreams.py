"""Upstream adapters: one OpenAI-compatible chat adapter for every LLM provider, and Instantly.

All calls go through one pooled ``httpx.AsyncClient`` per event loop: the proxy views are async
so a slow upstream holds a coroutine, not an OS thread (see docs/proxy.md for why this path
uses httpx instead of ``requests``). Redirects are never followed; timeouts are explicit.

Outcomes are typed: a success, an ``UpstreamClientError`` (provider 4xx: relayed, no charge, no
fallback) or an ``UpstreamFailure`` (connection error, timeout, 5xx, 429, redirect, garbage:
the caller falls back to the next provider).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import weakref
from dataclasses import dataclass

import httpx
from django.conf import settings

from accounts.providers import provider_get

from . import sandbox


@dataclass(frozen=True)
class Target:
    """Where one attempt goes. ``secret`` never leaves this module except in the auth header."""

    provider: str
    base_url: str
    secret: str
    auth_header: str = "Authorization"
    auth_scheme: str = "Bearer"

    @property
    def is_sandbox(self) -> bool:
        return self.provider == sandbox.PROVIDER

    def __repr__(self) -> str:  # never print the secret
        return f"Target(provider={self.provider!r}, base_url={self.base_url!r})"


class UpstreamFailure(Exception):
    """The provider could not serve the call; another provider may."""

    def __init__(self, kind: str, message: str, *, status: int | None = None):
        super().__init__(message)
        self.kind = kind  # connect | timeout | status | redirect | garbage | protocol
        self.status = status
        self.message = message

    @property
    def is_timeout(self) -> bool:
        return self.kind == "timeout"


class UpstreamClientError(Exception):
    """A 4xx from the provider (bad model, bad request): relayed to the client as is."""

    def __init__(self, status: int, message: str, body: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.body = body


def base_url_get(provider: str) -> str:
    """Registry URL unless ``PROVIDER_<NAME>_BASE_URL`` overrides it."""
    override = settings.PROVIDER_BASE_URLS.get(provider) or ""
    if override:
        return override.rstrip("/")
    if provider == "instantly":
        return settings.INSTANTLY_API_URL.rstrip("/")
    registered = provider_get(provider)
    return registered.base_url.rstrip("/") if registered else ""


def target_build(*, provider: str, secret: str) -> Target:
    registered = provider_get(provider)
    return Target(
        provider=provider,
        base_url=base_url_get(provider),
        secret=secret,
        auth_header=registered.auth_header if registered else "Authorization",
        auth_scheme=registered.auth_scheme if registered else "Bearer",
    )


# --- The pooled client ----------------------------------------------------------------------

_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_next_shard = itertools.count()


def _client_new(max_connections: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=httpx.Timeout(
            connect=settings.PROXY_CONNECT_TIMEOUT,
            read=settings.PROXY_UPSTREAM_TIMEOUT,
            write=settings.PROXY_CONNECT_TIMEOUT,
            pool=settings.PROXY_CONNECT_TIMEOUT,
        ),
        limits=httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=30,
        ),
        follow_redirects=False,
        trust_env=False,
    )


def http_client_get() -> httpx.AsyncClient:
    """A pooled client of this event loop (a client cannot be shared across loops).

    Several clients (``PROXY_HTTP_CLIENT_SHARDS``) used in turn, not one: httpcore's pool
    re-scans every queued request against every connection on each event (quadratic), which
    with a few hundred calls in flight ate the event loop's CPU (py-spy: the main thread in
    ``_assign_requests_to_connections``). Shards keep each pool small.
    """
    loop = asyncio.get_running_loop()
    clients = _clients.get(loop)
    if clients is None or any(client.is_closed for client in clients):
        shards = max(1, settings.PROXY_HTTP_CLIENT_SHARDS)
        per_shard = max(1, settings.PROXY_HTTP_MAX_CONNECTIONS // shards)
        clients = [_client_new(per_shard) for _ in range(shards)]
        _clients[loop] = clients
    return clients[next(_next_shard) % len(clients)]


def _headers(target: Target) -> dict[str, str]:
    value = f"{target.auth_scheme} {target.secret}" if target.auth_scheme else target.secret
    return {target.auth_header: value, "Content-Type": "application/json", "Accept": "application/json"}


def _error_message(response_body: bytes) -> tuple[str, dict | None]:
    try:
        parsed = json.loads(response_body)
    except ValueError:
        return response_body[:300].decode(errors="replace") or "Upstream request failed.", None
    if isinstance(parsed, dict):
        error = parsed.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:1000], parsed
        if isinstance(error, str):
            return error[:1000], parsed
        if parsed.get("message"):
            return str(parsed["message"])[:1000], parsed
    return "Upstream request failed.", parsed if isinstance(parsed, dict) else None


def _check_status(status: int, body: bytes) -> None:
    if 300 <= status < 400:
        raise UpstreamFailure("redirect", f"Provider answered a redirect ({status}).", status=status)
    if status == 429 or status >= 500:
        raise UpstreamFailure("status", f"Provider answered {status}.", status=status)
    if 400 <= status < 500:
        message, parsed = _error_message(body)
        raise UpstreamClientError(status, message, parsed)


def _wrap_transport_error(exc: Exception) -> UpstreamFailure:
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamFailure("timeout", "Provider timed out.")
    if isinstance(exc, httpx.ConnectError):
        return UpstreamFailure("connect", "Could not connect to the provider.")
    return UpstreamFailure("protocol", f"Provider connection failed ({type(exc).__name__}).")


async def chat_complete(*, target: Target, payload: dict) -> dict:
    """Non-streaming chat completion; returns the provider's JSON (with ``usage`` when reported)."""
    if target.is_sandbox:
        return sandbox.sandbox_chat(payload=payload, model=payload.get("model", sandbox.MODEL))
    try:
        response = await http_client_get().post(
            f"{target.base_url}/chat/completions", json=payload, headers=_headers(target)
        )
    except httpx.HTTPError as exc:
        raise _wrap_transport_error(exc) from None
    _check_status(response.status_code, response.content)
    try:
        body = response.json()
    except ValueError:
        raise UpstreamFailure("garbage", "Provider answered a body that is not JSON.") from None
    if not isinstance(body, dict) or not isinstance(body.get("choices"), list):
        raise UpstreamFailure("garbage", "Provider answered JSON without choices.")
    return body


class ChatStream:
    """An open upstream SSE stream. Iterate ``chunks()``; always ``aclose()``."""

    def __init__(self, *, response: httpx.Response | None = None, sandbox_chunks: list[bytes] | None = None):
        self._response = response
        self._sandbox_chunks = sandbox_chunks

    async def chunks(self):
        if self._sandbox_chunks is not None:
            for chunk in self._sandbox_chunks:
                yield chunk
            return
        try:
            async for chunk in self._response.aiter_raw():
                yield chunk
        except httpx.HTTPError as exc:
            raise _wrap_transport_error(exc) from None

    async def aclose(self) -> None:
        if self._response is not None:
            await self._response.aclose()


async def chat_stream_open(*, target: Target, payload: dict) -> ChatStream:
    """Start a streamed completion; failures before the first byte raise like ``chat_complete``."""
    if target.is_sandbox:
        return ChatStream(
            sandbox_chunks=sandbox.sandbox_stream_chunks(payload=payload, model=payload["model"])
        )
    client = http_client_get()
    request = client.build_request(
        "POST",
        f"{target.base_url}/chat/completions",
        json=payload,
        headers={**_headers(target), "Accept": "text/event-stream"},
    )
    try:
        response = await client.send(request, stream=True)
    except httpx.HTTPError as exc:
        raise _wrap_transport_error(exc) from None
    if response.status_code != 200:
        try:
            body = await response.aread()
        except httpx.HTTPError:
            body = b""
        await response.aclose()
        _check_status(response.status_code, body)
        raise UpstreamFailure(
            "status", f"Provider answered {response.status_code}.", status=response.status_code
        )
    content_type = response.headers.get("content-type", "")
    if "text/event-stream" not in content_type:
        await response.aclose()
        raise UpstreamFailure("garbage", "Provider did not answer an event stream.")
    return ChatStream(response=response)


async def email_send(*, target: Target, to: str, subject: str, body: str) -> str:
    """Send one email through Instantly; returns the provider's message id."""
    if target.is_sandbox:
        return sandbox.sandbox_email_send(to=to, subject=subject)
    payload = {"to_address_email_list": to, "subject": subject, "body": {"text": body}}
    try:
        response = await http_client_get().post(
            f"{target.base_url}/emails/send", json=payload, headers=_headers(target)
        )
    except httpx.HTTPError as exc:
        raise _wrap_transport_error(exc) from None
    _check_status(response.status_code, response.content)
    try:
        data = response.json()
    except ValueError:
        raise UpstreamFailure("garbage", "Instantly answered a body that is not JSON.") from None
    message_id = (
        data.get("id") or data.get("messageId") or data.get("message_id") if isinstance(data, dict) else None
    )
    if not message_id:
        raise UpstreamFailure("garbage", "Instantly answered without a message id.")
    return str(message_id)
