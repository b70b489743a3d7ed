"""The async orchestration of one proxied call: attempts, fallback, streaming, settlement.

Per attempt: ``proxy_call_prepare`` (thread, short) → upstream call (event loop, no DB
connection held) → ``proxy_call_settle`` (thread, one transaction). A failed attempt releases
everything it held before the next provider is tried, so a call is never charged twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.http import StreamingHttpResponse

from core.exceptions import ApiError

from . import fastlane, upstreams
from .admission import admission_leave
from .dbcall import db_call
from .errors import chain_exhausted_error, upstream_client_error
from .estimate import prompt_tokens_estimate
from .funding import funding_quota_block
from .model_access import chat_model_check
from .router import chain_without_cooling, provider_failure_record, provider_success_record
from .services import (
    BudgetExhausted,
    CallRecord,
    NoProviderKey,
    PreparedCall,
    proxy_call_abandon,
    proxy_call_settle,
)

logger = logging.getLogger("tollgate.proxy")


@dataclass
class ChatCall:
    """A validated chat request and who makes it."""

    user: object
    api_key_id: int | None
    service: str  # "deepseek" | "router"
    endpoint: str
    payload: dict
    requested_model: str
    max_tokens: int
    chain: list[str]
    fallback_provider: str = ""
    stream: bool = False
    client_wants_usage: bool = False
    request_id: str = ""
    plan: object | None = None  # the caller's billing Plan, resolved once per request
    credentials_version: bytes | None = None  # read by the fast lane's gate (provider-key cache tag)
    cooling: frozenset[str] | None = None  # providers in cooldown, when the fast lane's gate read them
    prompt_tokens: int = field(default=0)

    def __post_init__(self):
        self.prompt_tokens = prompt_tokens_estimate(self.payload)

    @property
    def reserve_tokens(self) -> int:
        return self.prompt_tokens + self.max_tokens * int(self.payload.get("n") or 1)


@dataclass
class Attempts:
    started: float = field(default_factory=time.monotonic)
    tried: list[str] = field(default_factory=list)
    failures: int = 0
    last_failure: upstreams.UpstreamFailure | None = None
    budget_fallback: bool = False

    @property
    def latency_ms(self) -> int:
        return int((time.monotonic() - self.started) * 1000)

    @property
    def deadline(self) -> float:
        """Loop time by which the whole call (all providers, the whole stream) must end.

        A call can never outlive ``PROXY_CALL_DEADLINE_SECONDS``, so the stale-reservation
        sweeper (``STALE_RESERVATION_SECONDS``, always larger) never frees a live call's hold.
        """
        remaining = settings.PROXY_CALL_DEADLINE_SECONDS - (time.monotonic() - self.started)
        return asyncio.get_running_loop().time() + max(remaining, 0.0)


def _usage_tokens(usage) -> tuple[int, int] | None:
    if not isinstance(usage, dict):
        return None
    try:
        prompt = int(usage.get("prompt_tokens") or 0)
        completion = int(usage.get("completion_tokens") or 0)
    except (TypeError, ValueError):
        return None
    if prompt < 0 or completion < 0:
        return None
    return prompt, completion


def _content_chars(body: dict) -> int:
    chars = 0
    for choice in body.get("choices") or []:
        message = choice.get("message") if isinstance(choice, dict) else None
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            chars += len(message["content"])
    return chars


def _settle_and_quota(*, prepared, record: CallRecord, user, quota_meter: str | None) -> tuple:
    """Settle a successful call, mark its provider healthy and read the quota block to show."""
    event = proxy_call_settle(prepared=prepared, record=record)
    if record.status_code < 400:
        provider_success_record(provider=prepared.provider)
    block = None
    if quota_meter:
        block = funding_quota_block(
            funding=prepared.funding if prepared else None, user=user, meter=quota_meter
        )
    return event, block


async def _prepare(**kwargs) -> PreparedCall:
    try:
        return await fastlane.proxy_call_aprepare(**kwargs)
    finally:
        admission_leave()  # reserved or refused: the next call may be admitted


async def _settle(*, prepared: PreparedCall, record: CallRecord, user, quota_meter: str | None) -> tuple:
    """(event, quota block) of a finished attempt: one grouped statement for a quota-funded
    success, else one transaction (failures, credits)."""
    done = await fastlane.settle_success_fast(
        prepared=prepared, record=record, user=user, quota_meter=quota_meter
    )
    if done is not None:
        return done
    return await db_call(
        _settle_and_quota, prepared=prepared, record=record, user=user, quota_meter=quota_meter
    )


def _abandon(*, prepared: PreparedCall, provider: str) -> None:
    proxy_call_abandon(prepared=prepared)
    provider_failure_record(provider=provider)


def _record(
    call: ChatCall,
    attempts: Attempts,
    *,
    status: int,
    provider: str = "",
    error_code: str = "",
    prompt: int = 0,
    completion: int = 0,
    estimated: bool = False,
) -> CallRecord:
    return CallRecord(
        user_id=call.user.pk,
        api_key_id=call.api_key_id,
        service=call.service,
        endpoint=call.endpoint,
        status_code=status,
        model=call.requested_model,
        provider=provider,
        prompt_tokens=prompt,
        completion_tokens=completion,
        latency_ms=attempts.latency_ms,
        is_fallback=attempts.failures > 0,
        is_budget_fallback=attempts.budget_fallback,
        is_estimated=estimated,
        request_id=call.request_id,
        error_code=error_code,
    )


async def _fail(call: ChatCall, attempts: Attempts, error: ApiError, provider: str = "") -> ApiError:
    await db_call(
        proxy_call_settle,
        prepared=None,
        record=_record(call, attempts, status=error.status_code, provider=provider, error_code=error.code),
    )
    return error


async def chat_call_run(call: ChatCall):
    """Serve a chat call; returns a dict (JSON answer) or a StreamingHttpResponse. Raises ApiError.

    Runs detached from the request (``call_detached``): a client disconnect cannot interrupt it
    between reserve and settle.
    """
    await chat_model_check(call)  # an unknown model: 404 before anything is held
    return await call_detached(_chat_call_run(call))


async def _chat_call_run(call: ChatCall):
    attempts = Attempts()
    chain = chain_without_cooling(chain=call.chain, cooling=call.cooling)
    while chain:
        provider = chain.pop(0)
        if provider in attempts.tried:
            continue
        attempts.tried.append(provider)
        try:
            prepared = await _prepare(
                user=call.user,
                provider=provider,
                endpoint=call.endpoint,
                requested_model=call.requested_model,
                prompt_tokens=call.prompt_tokens,
                max_tokens=call.max_tokens * int(call.payload.get("n") or 1),
                meters={"requests": 1, "llm_tokens": call.reserve_tokens},
                plan=call.plan,
                credentials_version=call.credentials_version,
            )
        except NoProviderKey:
            continue
        except BudgetExhausted:
            attempts.budget_fallback = True
            fallback = call.fallback_provider
            chain = [fallback] if fallback and fallback not in attempts.tried else []
            continue
        except ApiError as exc:
            raise await _fail(call, attempts, exc, provider=provider) from None

        outcome = await _attempt(call, attempts, prepared)
        if outcome is _STOP:
            break
        if outcome is not _NEXT:
            return outcome

    error = chain_exhausted_error(
        last_failure=attempts.last_failure, budget_fallback=attempts.budget_fallback
    )
    raise await _fail(call, attempts, error, provider=attempts.tried[-1] if attempts.tried else "")


_NEXT = object()  # this attempt failed over: try the next provider
_STOP = object()  # the call's deadline passed: no provider is tried any more


async def _attempt(call: ChatCall, attempts: Attempts, prepared: PreparedCall):
    """One provider, from its holds to its answer. Every exit that does not hand the holds to a
    settle (an answer, a relay that settles when the stream ends) releases them: a provider
    failure, a timeout, a cancellation or any exception at all."""
    try:
        return await _attempt_run(call, attempts, prepared)
    finally:
        if not prepared.closed and not prepared.relayed:
            await asyncio.shield(db_call(proxy_call_abandon, prepared=prepared))


async def _attempt_run(call: ChatCall, attempts: Attempts, prepared: PreparedCall):
    provider = prepared.provider
    payload = {**call.payload, "model": prepared.upstream_model or call.requested_model}
    try:
        async with asyncio.timeout_at(attempts.deadline):
            if call.stream:
                options = payload.get("stream_options") or {}
                payload["stream_options"] = {**options, "include_usage": True}
                stream = await upstreams.chat_stream_open(target=prepared.target, payload=payload)
            else:
                body = await upstreams.chat_complete(target=prepared.target, payload=payload)
    except TimeoutError:
        attempts.failures += 1
        attempts.last_failure = upstreams.UpstreamFailure("timeout", "Call deadline reached.")
        await db_call(_abandon, prepared=prepared, provider=provider)
        return _STOP
    except upstreams.UpstreamFailure as exc:
        logger.warning(
            "upstream failure", extra={"provider": provider, "kind": exc.kind, "status": exc.status}
        )
        attempts.failures += 1
        attempts.last_failure = exc
        await db_call(_abandon, prepared=prepared, provider=provider)
        return _NEXT
    except upstreams.UpstreamClientError as exc:
        error = upstream_client_error(exc, provider=prepared.provider)  # redacted by upstreams
        await db_call(
            proxy_call_settle,
            prepared=prepared,
            record=_record(
                call, attempts, status=exc.status, provider=prepared.provider, error_code="provider_error"
            ),
        )
        raise error from None

    if call.stream:
        relay = StreamRelay(call, attempts, prepared, stream)
        if not await relay.first_chunk_wait() and relay.failed_early:
            # Nothing reached the client: no charge, no hold (the pump released them), and the
            # next provider may still serve the call.
            attempts.failures += 1
            deadline = relay.failed_early == "deadline_exceeded"
            attempts.last_failure = upstreams.UpstreamFailure(
                "timeout" if deadline else "protocol", "The stream failed before its first byte."
            )
            return _STOP if deadline else _NEXT
        return _stream_response(relay, attempts, prepared)
    return await _complete(call, attempts, prepared, body)


async def _complete(call: ChatCall, attempts: Attempts, prepared: PreparedCall, body: dict) -> dict:
    usage = _usage_tokens(body.get("usage"))
    estimated = usage is None
    if usage is None:  # the provider reported nothing: count, and say so
        usage = (call.prompt_tokens, max(1, _content_chars(body) // 4))
    record = _record(
        call,
        attempts,
        status=200,
        provider=prepared.provider,
        prompt=usage[0],
        completion=usage[1],
        estimated=estimated,
    )
    event, block = await _settle(prepared=prepared, record=record, user=call.user, quota_meter="llm_tokens")
    body = dict(body)
    if call.service == "router":
        body.update(
            {
                "provider": prepared.provider,
                "fallback": event.is_fallback,
                "budget_fallback": event.is_budget_fallback,
                "cost": event.cost_usd,
            }
        )
    body["quota"] = block
    body["model"] = body.get("model") or prepared.upstream_model or call.requested_model
    return body


class _SseUsageTap:
    """Watches an SSE byte stream event by event: records usage, counts content, and drops the
    usage-only event when the client did not ask for it."""

    def __init__(self, *, forward_usage_event: bool):
        self.forward_usage_event = forward_usage_event
        self.buffer = b""
        self.usage: tuple[int, int] | None = None
        self.content_chars = 0

    def feed(self, chunk: bytes) -> bytes:
        self.buffer += chunk
        out = []
        while True:
            index = self.buffer.find(b"\n\n")
            if index < 0:
                break
            event, self.buffer = self.buffer[: index + 2], self.buffer[index + 2 :]
            if self._inspect(event):
                out.append(event)
        return b"".join(out)

    def flush(self) -> bytes:
        rest, self.buffer = self.buffer, b""
        return rest

    def _inspect(self, event: bytes) -> bool:
        for line in event.splitlines():
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                return True
            try:
                parsed = json.loads(data)
            except ValueError:
                return True
            if not isinstance(parsed, dict):
                return True
            usage = _usage_tokens(parsed.get("usage"))
            if usage is not None:
                self.usage = usage
            for choice in parsed.get("choices") or []:
                delta = choice.get("delta") if isinstance(choice, dict) else None
                if isinstance(delta, dict) and isinstance(delta.get("content"), str):
                    self.content_chars += len(delta["content"])
            if usage is not None and not parsed.get("choices") and not self.forward_usage_event:
                return False
        return True


def _stream_response(relay: StreamRelay, attempts: Attempts, prepared: PreparedCall) -> StreamingHttpResponse:
    response = StreamingHttpResponse(relay.body(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    response["X-Tollgate-Provider"] = prepared.provider
    response["x-tollgate-served-model"] = prepared.upstream_model or ""
    response["X-Tollgate-Fallback"] = "true" if attempts.failures else "false"
    response["X-Tollgate-Budget-Fallback"] = "true" if attempts.budget_fallback else "false"
    return response


_END = object()


class StreamRelay:
    """Pass the provider's SSE bytes through and settle exactly once, whatever the client does.

    The upstream is read by a task of its own (``pump``) that settles in its ``finally``; the
    response body only drains a queue. The answer starts only once the provider sent its first
    bytes (``first_chunk_wait``): a stream that fails before that is released, not charged, and
    the call may fall back to the next provider. So the settle does not depend on the response ever being
    iterated: a client that disconnects before the first byte (Django then never starts the
    body generator, whose ``finally`` would never run) leaves the pump to finish the stream and
    settle with the provider's usage. A client that goes away mid-stream stops the pump, which
    settles with what the provider reported, else the counted estimate flagged ``estimated``.
    """

    def __init__(self, call: ChatCall, attempts: Attempts, prepared: PreparedCall, stream):
        self.call = call
        self.attempts = attempts
        self.prepared = prepared
        self.stream = stream
        self.tap = _SseUsageTap(forward_usage_event=call.client_wants_usage)
        self.queue: asyncio.Queue = asyncio.Queue()
        self.upstream_finished = False
        self.client_gone = False
        self.forwarded = False  # some of the provider's bytes were queued for the client
        self.failed_early = ""  # the error code of a stream that failed before its first byte
        self.head: bytes | None = None
        prepared.relayed = True  # from here the pump settles or releases the holds
        self.pump_task = background_task_start(self.pump())

    async def pump(self) -> None:
        error_code = ""
        try:
            async with asyncio.timeout_at(self.attempts.deadline):
                async for chunk in self.stream.chunks():
                    out = self.tap.feed(chunk)
                    if out and not self.client_gone:
                        self.forwarded = True
                        self.queue.put_nowait(out)
            rest = self.tap.flush()
            if rest and not self.client_gone:
                self.forwarded = True
                self.queue.put_nowait(rest)
            if not self.forwarded and self.tap.usage is None:
                # An event stream that ends without one event was cut, not answered.
                logger.warning("upstream stream ended empty", extra={"provider": self.prepared.provider})
                error_code = "stream_interrupted"
        except TimeoutError:
            logger.warning("stream cut at the call deadline", extra={"provider": self.prepared.provider})
            error_code = "deadline_exceeded"
        except upstreams.UpstreamFailure as exc:
            logger.warning(
                "upstream failure mid-stream", extra={"provider": self.prepared.provider, "kind": exc.kind}
            )
            error_code = "stream_interrupted"
        except Exception:
            logger.exception("stream relay failed", extra={"provider": self.prepared.provider})
            error_code = "stream_interrupted"
        finally:
            self.upstream_finished = True
            if error_code and not self.forwarded:
                self.failed_early = error_code
                await asyncio.shield(self._release_early())
            self.queue.put_nowait(_END)
            if not self.failed_early:
                await asyncio.shield(self._finish(error_code))

    async def first_chunk_wait(self) -> bool:
        """Wait for the provider's first bytes; False when the stream ended without any (then
        ``failed_early`` says whether it failed, and its holds are already released)."""
        item = await self.queue.get()
        if item is _END:
            await asyncio.shield(self.pump_task)
            self.queue.put_nowait(_END)
            return False
        self.head = item
        return True

    async def _stream_close(self) -> None:
        try:
            await self.stream.aclose()
        except Exception:
            logger.warning("upstream stream close failed", exc_info=True)

    async def _release_early(self) -> None:
        await self._stream_close()
        await db_call(_abandon, prepared=self.prepared, provider=self.prepared.provider)

    async def _finish(self, error_code: str) -> None:
        """Settle what the client was sent; if the books cannot be written (twice), release
        the holds and say so loudly: a hold must never outlive its call."""
        await self._stream_close()
        record = self._record(error_code)
        for attempt in range(2):
            if self.prepared.closed:  # on the books; a later step failed
                return
            try:
                await _settle(prepared=self.prepared, record=record, user=self.call.user, quota_meter=None)
                return
            except Exception:
                if attempt == 0:
                    await asyncio.sleep(0.2)
                    continue
                logger.exception(
                    "stream settle failed: holds released, call unbilled",
                    extra={"provider": self.prepared.provider, "request_id": self.call.request_id},
                )
        await db_call(proxy_call_abandon, prepared=self.prepared)

    def _record(self, error_code: str) -> CallRecord:
        if self.tap.usage is not None:
            prompt, completion = self.tap.usage
            estimated = False
        else:
            prompt, completion = self.call.prompt_tokens, (self.tap.content_chars + 3) // 4
            estimated = True
        return _record(
            self.call,
            self.attempts,
            status=200,
            provider=self.prepared.provider,
            prompt=prompt,
            completion=completion,
            estimated=estimated,
            error_code=error_code,
        )

    async def body(self):
        """The response body. Closed early (client gone) → stop reading the provider."""
        try:
            ended = False
            while not ended:
                first = self.head if self.head is not None else await self.queue.get()
                self.head = None
                if first is _END:
                    break
                data, ended = _queued_join(first, self.queue)
                yield data
            # Normal end: answer only once the call is on the books.
            await asyncio.shield(self.pump_task)
        finally:
            # Client gone mid-stream: the pump keeps reading the provider (bounded by the call's
            # deadline) so the call settles on the provider's own usage, whenever the client left.
            self.client_gone = True


def _queued_join(first: bytes, queue: asyncio.Queue) -> tuple[bytes, bool]:
    """``first`` and the events already queued behind it, as one write; True when the end
    marker was among them. Under load that saves a send per event; alone, nothing waits."""
    parts = [first]
    while not queue.empty():
        item = queue.get_nowait()
        if item is _END:
            return b"".join(parts), True
        parts.append(item)
    return (first if len(parts) == 1 else b"".join(parts)), False


# --- Calls that outlive their client ---------------------------------------------------------

_background: set[asyncio.Task] = set()


def _background_done(task: asyncio.Task) -> None:
    _background.discard(task)
    if not task.cancelled() and task.exception() is not None:
        exc = task.exception()
        if not isinstance(exc, ApiError):
            logger.error("proxy background task failed", exc_info=exc)


def background_task_start(coro) -> asyncio.Task:
    """Run ``coro`` as a task the event loop keeps a reference to until it ends."""
    task = asyncio.get_running_loop().create_task(coro)
    _background.add(task)
    task.add_done_callback(_background_done)
    return task


async def background_drain(deadline: float) -> None:
    """Worker shutdown: wait for the calls still running detached, and their settles, to end.

    New tasks may start while waiting (a stream's relay starts its pump), so wait until none
    is left or ``deadline`` (``time.monotonic()``) passes; then the fast lane's last Redis moves.
    """
    loop = asyncio.get_running_loop()
    while mine := {task for task in _background if task.get_loop() is loop}:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            logger.warning("worker stopped with calls running", extra={"calls": len(mine)})
            return
        await asyncio.wait(mine, timeout=remaining)
    await fastlane.settle_counters_drain()


async def call_detached(coro):
    """Await ``coro`` in its own task, shielded from the request's cancellation.

    Django cancels a view when its client disconnects. Between reserve and settle that would
    leave the reservation held (the money bug the bench found): the reserve's thread finishes
    but its result is dropped, or the upstream await is cancelled before the release/settle.
    Shielded, the call runs to its end — upstream answer, settle, usage event — and only the
    answer to the departed client is lost. The provider did the work, so charging it is right.
    """
    return await asyncio.shield(background_task_start(coro))
