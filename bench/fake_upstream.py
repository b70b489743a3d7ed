"""A fast OpenAI-compatible fake upstream for benchmarks and tests.

It speaks just enough HTTP/1.1 (keep-alive, Content-Length bodies, chunked SSE) over plain
asyncio streams, so it costs a fraction of what the system under test costs per request: a
benchmark must measure Tollgate, not its fake provider.

Routes (any prefix, so every provider base URL can point here):

- ``POST …/chat/completions`` — JSON completion with a ``usage`` block, or SSE when
  ``"stream": true`` (with a final usage chunk when ``stream_options.include_usage`` is set);
- ``POST …/embeddings`` — OpenAI's embeddings list (one fixed vector per input, ``dimensions``
  wide or ``embedding_dimensions``; ``encoding_format`` ``float`` or ``base64``) with
  ``usage.prompt_tokens``;
- ``GET …/models`` — a model list;
- ``POST /_control`` — change latency / token counts at run time (the bench switches between an
  instant and a 2 s upstream without restarting Tollgate);
- ``GET /_stats`` — requests served and the usage of the last answer, for the bench's checks.

Run: ``python -m bench.fake_upstream --port 9100 --latency-ms 0``.
In tests: ``with FakeUpstream(latency_ms=0) as upstream: upstream.base_url``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import functools
import json
import struct
import threading
import time
from dataclasses import asdict, dataclass

MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 8 * 1024 * 1024


@dataclass
class FakeUpstreamConfig:
    """What every answer looks like. Mutable at run time through ``POST /_control``."""

    latency_ms: float = 0.0  # delay before the response (or before the first SSE chunk)
    prompt_tokens: int | None = None  # None: estimated from the messages (~4 chars per token)
    completion_tokens: int = 16  # capped by the request's max_tokens
    stream_chunks: int = 8  # content chunks in a streamed answer
    chunk_interval_ms: float = 0.0  # delay between streamed chunks
    status: int = 200  # force an error status (outage simulation)
    embedding_dimensions: int = 1536  # text-embedding-3-small's width, unless the body asks


def _embedding_tokens(payload: dict, config: FakeUpstreamConfig) -> int:
    """~4 characters per token of each text input; a token id counts one."""
    if config.prompt_tokens is not None:
        return config.prompt_tokens
    inputs = payload.get("input")
    inputs = inputs if isinstance(inputs, list) else [inputs]
    tokens = 0
    for item in inputs:
        if isinstance(item, str):
            tokens += max(1, len(item) // 4)
        elif isinstance(item, int):
            tokens += 1
        elif isinstance(item, list):
            tokens += len(item)
    return max(1, tokens)


@functools.lru_cache(maxsize=16)
def _embedding_json(dimensions: int, encoding: str) -> bytes:
    """One fixed unit-ish vector, serialised once per width and format: the fake stays cheap."""
    values = [round(((i * 7919) % 2000 - 1000) / 1000 / (dimensions**0.5), 6) for i in range(dimensions)]
    if encoding == "base64":
        return json.dumps(base64.b64encode(struct.pack(f"<{dimensions}f", *values)).decode()).encode()
    return json.dumps(values, separators=(",", ":")).encode()


def _prompt_tokens(payload: dict, config: FakeUpstreamConfig) -> int:
    if config.prompt_tokens is not None:
        return config.prompt_tokens
    chars = 0
    for message in payload.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            chars += len(content)
    # The OpenAI tokenizer averages ~4 characters per token, plus a few per message.
    return max(1, chars // 4 + 4 * len(payload.get("messages") or []))


def _completion_tokens(payload: dict, config: FakeUpstreamConfig) -> int:
    tokens = config.completion_tokens
    max_tokens = payload.get("max_tokens") or payload.get("max_completion_tokens")
    if isinstance(max_tokens, int) and max_tokens > 0:
        tokens = min(tokens, max_tokens)
    return tokens


class FakeUpstreamServer:
    """The asyncio server. One instance per event loop."""

    def __init__(self, config: FakeUpstreamConfig | None = None):
        self.config = config or FakeUpstreamConfig()
        self.requests_served = 0
        self.chat_requests = 0
        self.stream_requests = 0
        self.embedding_requests = 0
        self.last_usage: dict | None = None  # the usage block of the last answer sent
        self._counter = 0
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[asyncio.Task] = set()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self._server = await asyncio.start_server(self._serve_connection, host, port, backlog=4096)
        return self._server.sockets[0].getsockname()[1]

    async def serve_forever(self) -> None:
        assert self._server is not None
        async with self._server:
            await self._server.serve_forever()

    async def close(self) -> None:
        """Stop listening and end open keep-alive connections (no task is left pending)."""
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), timeout=1)

    # --- HTTP plumbing ------------------------------------------------------------------------
    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        task = asyncio.current_task()
        self._connections.add(task)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                if len(head) > MAX_HEADER_BYTES:
                    return
                lines = head.decode("latin-1").split("\r\n")
                try:
                    method, target, version = lines[0].split(" ", 2)
                except ValueError:
                    await self._send_json(writer, 400, {"error": {"message": "bad request line"}}, True)
                    return
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length") or 0)
                if length > MAX_BODY_BYTES:
                    await self._send_json(writer, 413, {"error": {"message": "too large"}}, True)
                    return
                body = await reader.readexactly(length) if length else b""
                close = headers.get("connection", "").lower() == "close" or version == "HTTP/1.0"
                self.requests_served += 1
                await self._route(method, target.split("?", 1)[0], body, writer, close)
                if close:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._connections.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    async def _send_json(self, writer, status: int, payload: dict, close: bool) -> None:
        body = json.dumps(payload, separators=(",", ":")).encode()
        writer.write(
            b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n"
            % (
                status,
                b"OK" if status < 400 else b"Error",
                len(body),
                b"Connection: close\r\n" if close else b"",
            )
            + body
        )
        await writer.drain()

    async def _route(self, method: str, path: str, body: bytes, writer, close: bool) -> None:
        if method == "POST" and path.endswith("/chat/completions"):
            await self._chat(body, writer, close)
        elif method == "POST" and path.endswith("/embeddings"):
            await self._embeddings(body, writer, close)
        elif method == "GET" and path.endswith("/models"):
            await self._send_json(writer, 200, self._models(), close)
        elif method == "POST" and path == "/_control":
            try:
                changes = json.loads(body or b"{}")
                for name, value in changes.items():
                    if not hasattr(self.config, name):
                        raise ValueError(name)
                    setattr(self.config, name, value)
            except (ValueError, AttributeError) as exc:
                await self._send_json(writer, 400, {"error": {"message": f"bad control: {exc}"}}, close)
                return
            await self._send_json(writer, 200, asdict(self.config), close)
        elif method == "GET" and path == "/_stats":
            stats = {
                "requests_served": self.requests_served,
                "chat_requests": self.chat_requests,
                "stream_requests": self.stream_requests,
                "embedding_requests": self.embedding_requests,
                "last_usage": self.last_usage,
                "config": asdict(self.config),
            }
            await self._send_json(writer, 200, stats, close)
        else:
            await self._send_json(writer, 404, {"error": {"message": f"no route {method} {path}"}}, close)

    @staticmethod
    def _models() -> dict:
        names = (
            "gpt-4o",
            "gpt-4o-mini",
            "deepseek-chat",
            "llama-3.1-8b-instant",
            "fake-model",
            "text-embedding-3-small",
        )
        return {
            "object": "list",
            "data": [{"id": n, "object": "model", "created": 1700000000, "owned_by": "fake"} for n in names],
        }

    # --- chat completions -----------------------------------------------------------------------
    async def _chat(self, body: bytes, writer, close: bool) -> None:
        self.chat_requests += 1
        try:
            payload = json.loads(body)
            if not isinstance(payload, dict):
                raise ValueError("body is not an object")
        except ValueError:
            await self._send_json(writer, 400, {"error": {"message": "invalid JSON body"}}, close)
            return
        config = self.config
        if config.latency_ms > 0:
            await asyncio.sleep(config.latency_ms / 1000)
        if config.status != 200:
            await self._send_json(writer, config.status, {"error": {"message": "fake upstream error"}}, close)
            return
        self._counter += 1
        completion_id = f"chatcmpl-fake{self._counter}"
        model = payload.get("model") or "fake-model"
        prompt_tokens = _prompt_tokens(payload, config)
        completion_tokens = _completion_tokens(payload, config)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        self.last_usage = usage
        if payload.get("stream"):
            stream_options = payload.get("stream_options") or {}
            include_usage = isinstance(stream_options, dict) and bool(stream_options.get("include_usage"))
            await self._chat_stream(writer, completion_id, model, completion_tokens, usage, include_usage)
            return
        answer = {
            "id": completion_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": " ".join(["tok"] * completion_tokens)},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": usage,
            "system_fingerprint": "fp_fake",
        }
        await self._send_json(writer, 200, answer, close)

    # --- embeddings -----------------------------------------------------------------------------
    async def _embeddings(self, body: bytes, writer, close: bool) -> None:
        self.embedding_requests += 1
        try:
            payload = json.loads(body)
            if not isinstance(payload, dict) or payload.get("input") in (None, "", []):
                raise ValueError("no input")
            dimensions = int(payload.get("dimensions") or self.config.embedding_dimensions)
            encoding = payload.get("encoding_format") or "float"
            if not 0 < dimensions <= 4096 or encoding not in ("float", "base64"):
                raise ValueError("bad dimensions or encoding_format")
        except (ValueError, TypeError):
            await self._send_json(writer, 400, {"error": {"message": "invalid embeddings body"}}, close)
            return
        config = self.config
        if config.latency_ms > 0:
            await asyncio.sleep(config.latency_ms / 1000)
        if config.status != 200:
            await self._send_json(writer, config.status, {"error": {"message": "fake upstream error"}}, close)
            return
        inputs = payload["input"]
        count = len(inputs) if isinstance(inputs, list) and not isinstance(inputs[0], int) else 1
        tokens = _embedding_tokens(payload, config)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        self.last_usage = usage
        vector = _embedding_json(dimensions, encoding)
        items = b",".join(
            b'{"object":"embedding","index":%d,"embedding":%s}' % (index, vector) for index in range(count)
        )
        answer = b'{"object":"list","data":[%s],"model":%s,"usage":%s}' % (
            items,
            json.dumps(payload.get("model") or "fake-embedding").encode(),
            json.dumps(usage, separators=(",", ":")).encode(),
        )
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n"
            % (len(answer), b"Connection: close\r\n" if close else b"")
            + answer
        )
        await writer.drain()

    async def _chat_stream(self, writer, completion_id, model, completion_tokens, usage, include_usage):
        """SSE over chunked transfer encoding, as OpenAI sends it; the connection stays reusable."""
        self.stream_requests += 1
        config = self.config
        created = int(time.time())

        def chunk(delta: dict, finish_reason=None, with_usage=None) -> bytes:
            event = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
            }
            if with_usage is not None:
                event["choices"] = []
                event["usage"] = with_usage
            elif include_usage:
                event["usage"] = None
            data = b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"
            return b"%x\r\n%s\r\n" % (len(data), data)

        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        writer.write(chunk({"role": "assistant", "content": ""}))
        await writer.drain()
        chunks = max(1, min(config.stream_chunks, max(1, completion_tokens)))
        per_chunk = [
            completion_tokens // chunks + (1 if i < completion_tokens % chunks else 0) for i in range(chunks)
        ]
        for i, tokens in enumerate(per_chunk):
            if i and config.chunk_interval_ms > 0:
                await asyncio.sleep(config.chunk_interval_ms / 1000)
            writer.write(chunk({"content": " tok" * tokens}))
            await writer.drain()
        writer.write(chunk({}, finish_reason="stop"))
        if include_usage:
            writer.write(chunk({}, with_usage=usage))
        done = b"data: [DONE]\n\n"
        writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done))
        await writer.drain()


class FakeUpstream:
    """The fake upstream on its own event loop in a background thread (tests, the smoke bench)."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, **config):
        self.host = host
        self.port = port
        self.server = FakeUpstreamServer(FakeUpstreamConfig(**config))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopped: asyncio.Event | None = None

    @property
    def base_url(self) -> str:
        """OpenAI-style API root, e.g. ``http://127.0.0.1:9100/v1``."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def config(self) -> FakeUpstreamConfig:
        return self.server.config

    def start(self) -> FakeUpstream:
        self._thread = threading.Thread(target=self._run, name="fake-upstream", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout=10):
            raise RuntimeError("fake upstream did not start")
        return self

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)

        async def main():
            self._stopped = asyncio.Event()
            self.port = await self.server.start(self.host, self.port)
            self._ready.set()
            await self._stopped.wait()
            await self.server.close()

        try:
            self._loop.run_until_complete(main())
        finally:
            self._loop.close()

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="OpenAI-compatible fake upstream for benchmarks.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--prompt-tokens", type=int, default=None)
    parser.add_argument("--completion-tokens", type=int, default=16)
    parser.add_argument("--stream-chunks", type=int, default=8)
    parser.add_argument("--chunk-interval-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    config = FakeUpstreamConfig(
        latency_ms=args.latency_ms,
        prompt_tokens=args.prompt_tokens,
        completion_tokens=args.completion_tokens,
        stream_chunks=args.stream_chunks,
        chunk_interval_ms=args.chunk_interval_ms,
    )

    async def run():
        server = FakeUpstreamServer(config)
        port = await server.start(args.host, args.port)
        print(f"fake upstream listening on http://{args.host}:{port}/v1", flush=True)
        await server.serve_forever()

    try:
        import uvloop  # noqa: PLC0415 (optional: faster still when installed)

        uvloop.run(run())
    except ImportError:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
