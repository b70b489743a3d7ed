"""A streamed answer: the provider's SSE bytes relayed to the client, settled exactly once.

The provider is read by a pump task that settles in its ``finally``; the response body only
drains a queue. The answer starts once the provider sent its first bytes, so a stream that fails
before that is released, charged nothing, and the call may fall back to the next provider.
"""

from __future__ import annotations

import asyncio
import json
import logging

from django.http import StreamingHttpResponse

from .. import upstreams
from ..dbcall import db_call
from .detached import background_task_start
from .input import ChatCall
from .prepare import PreparedCall, attempt_abandon, proxy_call_abandon
from .settle import CallRecord, chat_record, settle

logger = logging.getLogger("tollgate.proxy")


def usage_tokens(usage) -> tuple[int, int] | None:
    """(prompt, completion) tokens of a provider's ``usage`` object, None when it is not one."""
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
            usage = usage_tokens(parsed.get("usage"))
            if usage is not None:
                self.usage = usage
            for choice in parsed.get("choices") or []:
                delta = choice.get("delta") if isinstance(choice, dict) else None
                if isinstance(delta, dict) and isinstance(delta.get("content"), str):
                    self.content_chars += len(delta["content"])
            if usage is not None and not parsed.get("choices") and not self.forward_usage_event:
                return False
        return True


def stream_response(relay: StreamRelay, attempts, prepared: PreparedCall) -> StreamingHttpResponse:
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

    The settle does not depend on the response ever being iterated: a client that disconnects
    before the first byte (Django then never starts the body) leaves the pump to finish the
    stream and settle with the provider's usage. A client that goes away mid-stream leaves the
    pump reading to the end; only a stream the provider cut settles on the counted estimate,
    flagged ``estimated``.
    """

    def __init__(self, call: ChatCall, attempts, prepared: PreparedCall, stream):
        self.call = call
        self.attempts = attempts  # upstream.Attempts
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
        await db_call(attempt_abandon, prepared=self.prepared, provider=self.prepared.provider)

    async def _finish(self, error_code: str) -> None:
        """Settle what the client was sent; if the books cannot be written (twice), release
        the holds and say so loudly: a hold must never outlive its call."""
        await self._stream_close()
        record = self._record(error_code)
        for attempt in range(2):
            if self.prepared.closed:  # on the books; a later step failed
                return
            try:
                await settle(
                    prepared=self.prepared, record=record, workspace=self.call.workspace, quota_meter=None
                )
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
        return chat_record(
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


async def stream_buffer(response) -> None:
    """A sync handler iterates the body on another event loop, after this one has ended: read
    the stream to its end here and hand it over as a list of chunks."""
    chunks = [chunk async for chunk in response.streaming_content]
    response.streaming_content = chunks
