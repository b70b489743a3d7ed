"""Upstream adapters: one OpenAI-compatible chat adapter for every LLM provider, and Instantly.

Anthropic is the exception: its chat calls go to its native ``POST /messages`` (its
OpenAI-compatibility layer is documented as not for production), translated here both ways by
``proxy.translate.anthropic``, so the rest of the call path only ever sees chat completions.

All calls go through one pooled ``aiohttp.ClientSession`` per event loop, so a slow upstream
holds a coroutine, not an OS thread (aiohttp rather than httpx for its CPU cost: docs/proxy.md).
Redirects are never followed, no proxy is taken from the environment, and timeouts are
explicit and read from settings on every call.

Outcomes are typed: a success, an ``UpstreamClientError`` (provider 4xx: relayed, no charge, no
fallback) or an ``UpstreamFailure`` (connection error, timeout, 5xx, 429, redirect, garbage:
the caller falls back to the next provider).
"""

from __future__ import annotations

import asyncio
import atexit
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import aiohttp
from django.conf import settings

from accounts.providers import provider_get
from core.redact import secrets_redact

from . import sandbox
from .translate import TranslationError
from .translate.anthropic import (
    ANTHROPIC_VERSION,
    MessagesToChatStream,
    UpstreamStreamError,
    chat_to_messages_request,
    message_to_chat,
)
from .translate.sse import SseDecoder

ANTHROPIC = "anthropic"  # the provider whose chat calls use its native Messages API


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

    def __init__(
        self, kind: str, message: str, *, status: int | None = None, retry_after: float | None = None
    ):
        super().__init__(message)
        self.kind = kind  # connect | timeout | status | redirect | garbage | protocol
        self.status = status
        self.message = message
        self.retry_after = retry_after  # seconds, from a 429's Retry-After

    @property
    def is_rate_limited(self) -> bool:
        return self.status == 429

    @property
    def is_timeout(self) -> bool:
        return self.kind == "timeout"


class UpstreamClientError(Exception):
    """A 4xx from the provider (bad model, bad request): relayed to the client with its
    ``code``, ``param`` and ``type``. Every string in it is already secret-scrubbed."""

    def __init__(
        self,
        status: int,
        message: str,
        body: dict | None = None,
        *,
        code: str | None = None,
        param: str | None = None,
        error_type: str | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.body = body
        self.code = code
        self.param = param
        self.error_type = error_type


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


# --- The pooled session ---------------------------------------------------------------------

# One session per event loop: a session (and its connector's sockets) belongs to the loop that
# created it. Keyed by loop, not weakly: a loop that has been closed is found here and its
# connector closed (below) so its session is not reported as unclosed when it is collected.
_sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}


def _session_new() -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(
        limit=settings.PROXY_HTTP_MAX_CONNECTIONS, limit_per_host=0, keepalive_timeout=30
    )
    return aiohttp.ClientSession(
        connector=connector,
        trust_env=False,  # no proxy from the environment
        auto_decompress=True,
        # Cookies a provider sets are not sent back on the next (another user's) call.
        cookie_jar=aiohttp.DummyCookieJar(),
    )


def _sessions_drop(*, closed_loops_only: bool) -> None:
    """Forget sessions (of closed loops only, or all) and close their connectors.

    ``connector._close()`` is the synchronous part of ``close()``: it marks the connector (so
    the session) closed and, while the loop is still open, closes its transports. The public
    ``close()`` returns an awaitable, which a closed loop (a test's ``async_to_sync`` loop) or
    the interpreter's exit can no longer run; skipping the close altogether would log
    "Unclosed client session" / "Unclosed connector" when the session is collected.
    """
    for loop in list(_sessions):
        if closed_loops_only and not loop.is_closed():
            continue
        session = _sessions.pop(loop, None)  # another thread's loop may be dropping it too
        if session is not None and session.connector is not None:
            session.connector._close()


atexit.register(_sessions_drop, closed_loops_only=False)


def http_session_get() -> aiohttp.ClientSession:
    """The pooled session of the running event loop (a session cannot be shared across loops).

    One session, not several: aiohttp's pool hands a freed connection to the next waiter
    directly, so it does not slow down with many calls in flight the way httpcore's did.
    """
    loop = asyncio.get_running_loop()
    session = _sessions.get(loop)
    if session is None or session.closed:
        _sessions_drop(closed_loops_only=True)
        session = _session_new()
        _sessions[loop] = session
    return session


def _timeout() -> aiohttp.ClientTimeout:
    """Read from settings on every call (tests change them per test).

    ``connect`` bounds the wait for a pooled connection plus the connection itself (httpx's
    pool + connect timeouts); ``sock_read`` bounds each wait for data from the provider,
    headers and every chunk of a stream (httpx's read timeout). No total: the whole call is
    bounded by the caller's deadline (``PROXY_CALL_DEADLINE_SECONDS``).
    """
    return aiohttp.ClientTimeout(
        total=None,
        connect=settings.PROXY_CONNECT_TIMEOUT,
        sock_connect=settings.PROXY_CONNECT_TIMEOUT,
        sock_read=settings.PROXY_UPSTREAM_TIMEOUT,
    )


def _json_body(payload: dict) -> bytes:
    # The bytes httpx's ``json=`` sent: compact, UTF-8, no NaN.
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def _headers(target: Target) -> dict[str, str]:
    value = f"{target.auth_scheme} {target.secret}" if target.auth_scheme else target.secret
    headers = {target.auth_header: value, "Content-Type": "application/json", "Accept": "application/json"}
    if target.provider == ANTHROPIC:
        headers["anthropic-version"] = ANTHROPIC_VERSION
    return headers


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


def _error_field(parsed: dict | None, name: str, target: Target) -> str | None:
    """A short string field of the provider's ``error`` object, scrubbed (it reaches the client)."""
    error = parsed.get("error") if isinstance(parsed, dict) else None
    value = error.get(name) if isinstance(error, dict) else None
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value:
        return None
    return secrets_redact(value[:200], extra=(target.secret,))


def retry_after_parse(headers) -> float | None:
    """Seconds from a 429's ``retry-after-ms`` / ``Retry-After`` (seconds or an HTTP date)."""
    if not headers:
        return None
    raw_ms = headers.get("retry-after-ms")
    try:
        if raw_ms:
            return min(max(float(raw_ms) / 1000, 0.0), 86_400.0)
    except ValueError:
        pass
    raw = (headers.get("Retry-After") or "").strip()
    if not raw:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), 86_400.0)


def _check_status(status: int, body: bytes, target: Target, headers=None) -> None:
    if 300 <= status < 400:
        raise UpstreamFailure("redirect", f"Provider answered a redirect ({status}).", status=status)
    if status == 429:
        raise UpstreamFailure(
            "status", "Provider answered 429.", status=status, retry_after=retry_after_parse(headers)
        )
    if status >= 500:
        raise UpstreamFailure("status", f"Provider answered {status}.", status=status)
    if 400 <= status < 500:
        message, parsed = _error_message(body)
        code, param = _error_field(parsed, "code", target), _error_field(parsed, "param", target)
        error_type = _error_field(parsed, "type", target)
        if code is None and target.provider == ANTHROPIC and error_type == "not_found_error":
            code, param = "model_not_found", param or "model"  # the only thing /messages can miss
        # Relayed to the client: providers quote the key they were sent.
        raise UpstreamClientError(
            status,
            secrets_redact(message, extra=(target.secret,)),
            code=code,
            param=param,
            error_type=error_type,
        )


def _wrap_transport_error(exc: Exception) -> UpstreamFailure:
    """Map an aiohttp error (or one of its own timeouts) to a typed failure.

    Only aiohttp's per-request timeouts arrive here as ``TimeoutError``: the caller's
    ``asyncio.timeout_at`` deadline cancels the task, and that ``CancelledError`` is not caught
    in this module, so the caller's ``except TimeoutError`` still sees its own deadline.
    """
    if isinstance(exc, TimeoutError):  # ServerTimeoutError, ConnectionTimeoutError, SocketTimeoutError
        return UpstreamFailure("timeout", "Provider timed out.")
    if isinstance(exc, aiohttp.ClientConnectorError):  # refused, DNS, TLS handshake
        return UpstreamFailure("connect", "Could not connect to the provider.")
    return UpstreamFailure("protocol", f"Provider connection failed ({type(exc).__name__}).")


_TRANSPORT_ERRORS = (TimeoutError, aiohttp.ClientError)


async def _post_json(*, target: Target, path: str, payload: dict) -> tuple[int, bytes, object]:
    """POST JSON, read the whole answer; returns (status, body, headers). The connection goes
    back to the pool once the body is read."""
    try:
        async with http_session_get().post(
            f"{target.base_url}{path}",
            data=_json_body(payload),
            headers=_headers(target),
            allow_redirects=False,
            timeout=_timeout(),
        ) as response:
            return response.status, await response.read(), response.headers
    except _TRANSPORT_ERRORS as exc:
        raise _wrap_transport_error(exc) from None


async def read_get(*, target: Target, path: str, timeout: float) -> bytes:
    """GET a read-only path (``/models``) with the target's key, bounded by ``timeout`` seconds
    in all; returns a 2xx body. Other answers raise as a call's would: ``UpstreamClientError``
    for a 4xx (message scrubbed), ``UpstreamFailure`` for the rest. Used to check a key."""
    try:
        async with http_session_get().get(
            f"{target.base_url}{path}",
            headers=_headers(target),
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            status, content, headers = response.status, await response.read(), response.headers
    except _TRANSPORT_ERRORS as exc:
        raise _wrap_transport_error(exc) from None
    _check_status(status, content, target, headers)
    return content


def _chat_request(target: Target, payload: dict) -> tuple[str, dict]:
    """The path and body of a chat call: Anthropic's native Messages request, else the payload.

    What the native request cannot carry (``n > 1``) is the client's 400 naming the field,
    before anything is sent; the call path relays it like a provider's 4xx and charges nothing.
    """
    if target.provider != ANTHROPIC:
        return "/chat/completions", payload
    try:
        return "/messages", chat_to_messages_request(payload)
    except TranslationError as exc:
        raise UpstreamClientError(400, exc.message, param=exc.param) from None


async def chat_complete(*, target: Target, payload: dict) -> dict:
    """Non-streaming chat completion; returns the provider's JSON (with ``usage`` when reported),
    or Anthropic's native Message translated into one."""
    if target.is_sandbox:
        return sandbox.sandbox_chat(payload=payload, model=payload.get("model", sandbox.MODEL))
    path, request = _chat_request(target, payload)
    status, content, headers = await _post_json(target=target, path=path, payload=request)
    _check_status(status, content, target, headers)
    try:
        body = json.loads(content)
    except ValueError:
        raise UpstreamFailure("garbage", "Provider answered a body that is not JSON.") from None
    if target.provider == ANTHROPIC:
        if (
            not isinstance(body, dict)
            or body.get("type") != "message"
            or not isinstance(body.get("content"), list)
        ):
            raise UpstreamFailure("garbage", "Anthropic answered JSON that is not a message.")
        return message_to_chat(body, created=int(time.time()))
    if not isinstance(body, dict) or not isinstance(body.get("choices"), list):
        raise UpstreamFailure("garbage", "Provider answered JSON without choices.")
    return body


async def embeddings_create(*, target: Target, payload: dict) -> dict:
    """``POST /embeddings``; returns the provider's JSON (``data``, ``usage.prompt_tokens``) as
    sent, base64 vectors included. Failures and 4xx are typed as for chat."""
    if target.is_sandbox:
        return sandbox.sandbox_embeddings(payload=payload, model=payload.get("model") or sandbox.EMBED_MODEL)
    status, content, headers = await _post_json(target=target, path="/embeddings", payload=payload)
    _check_status(status, content, target, headers)
    try:
        body = json.loads(content)
    except ValueError:
        raise UpstreamFailure("garbage", "Provider answered a body that is not JSON.") from None
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise UpstreamFailure("garbage", "Provider answered JSON without data.")
    return body


def _response_end(response: aiohttp.ClientResponse) -> None:
    """Give the connection back to the pool if the body was read to its end, else close it: a
    half-read connection (a stream cut by the client or the deadline) must not be reused."""
    if response.content.at_eof():
        response.release()
    else:
        response.close()


class ChatStream:
    """An open upstream SSE stream. Iterate ``chunks()``; always ``aclose()``."""

    def __init__(
        self,
        *,
        response: aiohttp.ClientResponse | None = None,
        sandbox_chunks: list[bytes] | None = None,
    ):
        self._response = response
        self._sandbox_chunks = sandbox_chunks

    async def chunks(self):
        if self._sandbox_chunks is not None:
            for chunk in self._sandbox_chunks:
                yield chunk
            return
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except _TRANSPORT_ERRORS as exc:
            raise _wrap_transport_error(exc) from None

    async def aclose(self) -> None:
        if self._response is not None:
            _response_end(self._response)


class AnthropicChatStream(ChatStream):
    """Anthropic's native SSE events in, chat-completion SSE chunks out (usage chunk last, then
    ``[DONE]``), so the call path's usage tap and relay read it like any provider's stream.

    An ``error`` event (Anthropic overloaded mid-stream) raises ``UpstreamFailure("protocol")``:
    the relay then settles what was sent, as for a cut stream, or tries the next provider if
    nothing was.
    """

    def __init__(self, *, response: aiohttp.ClientResponse, model: str):
        super().__init__(response=response)
        self._decoder = SseDecoder()
        self._translator = MessagesToChatStream(model=model, created=int(time.time()))

    async def chunks(self):
        async for raw in super().chunks():
            out: list[bytes] = []
            failure: UpstreamFailure | None = None
            for event, data in self._decoder.feed(raw):
                try:
                    parsed = json.loads(data)
                except ValueError:
                    continue  # keep-alive or garbage: nothing to translate
                if not isinstance(parsed, dict):
                    continue
                try:
                    out += self._translator.feed(event, parsed)
                except UpstreamStreamError as exc:
                    kind = exc.error_type or "error"
                    failure = UpstreamFailure("protocol", f"Anthropic sent an error event ({kind}).")
                    break
            if out:  # what came before an error event, even in the same read, was answered
                yield b"".join(out)
            if failure is not None:
                raise failure


async def _stream_check(response: aiohttp.ClientResponse, target: Target) -> None:
    if response.status != 200:
        try:
            body = await response.read()
        except _TRANSPORT_ERRORS:
            body = b""
        _check_status(response.status, body, target, response.headers)
        raise UpstreamFailure("status", f"Provider answered {response.status}.", status=response.status)
    if "text/event-stream" not in response.headers.get("Content-Type", ""):
        raise UpstreamFailure("garbage", "Provider did not answer an event stream.")


async def chat_stream_open(*, target: Target, payload: dict) -> ChatStream:
    """Start a streamed completion; failures before the first byte raise like ``chat_complete``."""
    if target.is_sandbox:
        return ChatStream(
            sandbox_chunks=sandbox.sandbox_stream_chunks(payload=payload, model=payload["model"])
        )
    path, request = _chat_request(target, payload)
    try:
        response = await http_session_get().post(
            f"{target.base_url}{path}",
            data=_json_body(request),
            headers={**_headers(target), "Accept": "text/event-stream"},
            allow_redirects=False,
            timeout=_timeout(),
        )
    except _TRANSPORT_ERRORS as exc:
        raise _wrap_transport_error(exc) from None
    try:
        await _stream_check(response, target)
    except BaseException:  # a failure, or the caller's deadline: never leak the connection
        _response_end(response)
        raise
    if target.provider == ANTHROPIC:
        return AnthropicChatStream(response=response, model=payload["model"])
    return ChatStream(response=response)


async def email_send(*, target: Target, to: str, subject: str, body: str) -> str:
    """Send one email through Instantly; returns the provider's message id."""
    if target.is_sandbox:
        return sandbox.sandbox_email_send(to=to, subject=subject)
    payload = {"to_address_email_list": to, "subject": subject, "body": {"text": body}}
    status, content, headers = await _post_json(target=target, path="/emails/send", payload=payload)
    _check_status(status, content, target, headers)
    try:
        data = json.loads(content)
    except ValueError:
        raise UpstreamFailure("garbage", "Instantly answered a body that is not JSON.") from None
    message_id = (
        data.get("id") or data.get("messageId") or data.get("message_id") if isinstance(data, dict) else None
    )
    if not message_id:
        raise UpstreamFailure("garbage", "Instantly answered without a message id.")
    return str(message_id)
