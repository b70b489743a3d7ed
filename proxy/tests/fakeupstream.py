"""A tiny OpenAI-compatible (and Instantly-like) fake provider for tests, in a thread.

Behaviour is switched per test through ``FakeUpstream.mode``: ``ok``, ``stream`` and
``stream_no_usage`` answer like a provider; ``500``/``503``/``429``/``400`` answer that status;
``timeout`` sleeps past the client's read timeout; ``garbage`` answers non-JSON; ``redirect``
answers 302; ``401_echo`` answers 401 quoting the credential it was sent; ``400_model``
answers OpenAI's 400 ``model_not_found`` (``param: model``, the key quoted); ``retry_after``
adds a header to 429; ``stream_reset`` starts a stream and resets the connection before its
first byte. ``POST …/embeddings`` answers OpenAI's embeddings shape; ``GET`` (``/models``, a
key check) answers a one-model list or, in the failure modes, as a POST would.
``POST …/messages`` answers like Anthropic's native API (a Message with
``cache_read_input_tokens``, or its event stream with a ping; ``529`` answers
``overloaded_error``; ``stream_error`` sends an ``error`` event after ``stream_error_after`` text deltas).
Every request is recorded (path, headers, JSON body) so tests can assert what Tollgate
forwarded.
"""

from __future__ import annotations

import base64
import json
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    server: _Server

    def log_message(self, *args):  # keep test output clean
        pass

    def _send(self, status: int, body: bytes, content_type="application/json", extra=None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        """``GET …/models`` (a key check): ``401_echo``, the status modes, ``timeout`` and
        ``garbage`` answer as for a POST; otherwise a list of one model."""
        fake = self.server.fake
        with fake.lock:
            fake.requests.append({"path": self.path, "headers": dict(self.headers), "json": None})
            mode = fake.mode_for(self.path)
        if mode == "timeout":
            time.sleep(fake.sleep_seconds)
        elif mode == "401_echo":
            sent = self.headers.get("Authorization") or self.headers.get("x-api-key") or ""
            body = {"error": {"message": f"Incorrect API key provided: {sent}", "type": "auth"}}
            self._send(401, json.dumps(body).encode())
            return
        elif mode in {"500", "503", "429", "400", "403", "404", "529"}:
            self._send(int(mode), json.dumps({"error": {"message": f"fake upstream {mode}"}}).encode())
            return
        elif mode == "garbage":
            self._send(200, b"<html>not json</html>", content_type="text/html")
            return
        model = {"id": "fake-model", "object": "model", "owned_by": "fake"}
        self._send(200, json.dumps({"object": "list", "data": [model]}).encode())

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            payload = json.loads(raw or b"{}")
        except ValueError:
            payload = {}
        fake = self.server.fake
        with fake.lock:
            fake.requests.append({"path": self.path, "headers": dict(self.headers), "json": payload})
            mode = fake.mode_for(self.path)
        if mode == "timeout":
            time.sleep(fake.sleep_seconds)
            self._send(200, b"{}")
            return
        if mode == "401_echo":  # a provider quoting the key it was sent, as OpenAI's 401 does
            sent = self.headers.get("Authorization") or self.headers.get("x-api-key") or ""
            body = {"error": {"message": f"Incorrect API key provided: {sent}", "type": "auth"}}
            self._send(401, json.dumps(body).encode())
            return
        if mode in {"500", "503", "429", "400", "404", "529"}:
            error = {"message": f"fake upstream {mode}", "type": "fake"}
            if self.path.endswith("/messages"):  # Anthropic's error shape
                kinds = {"529": "overloaded_error", "404": "not_found_error"}
                error["type"] = kinds.get(mode, "invalid_request_error")
                body = json.dumps({"type": "error", "error": error}).encode()
            else:
                body = json.dumps({"error": error}).encode()
            extra = {"Retry-After": fake.retry_after} if mode == "429" and fake.retry_after else None
            self._send(int(mode), body, extra=extra)
            return
        if mode == "400_model":  # OpenAI's answer for a model it does not serve, quoting the key
            sent = self.headers.get("Authorization") or ""
            error = {
                "message": f"The model `{payload.get('model')}` does not exist (key {sent}).",
                "type": "invalid_request_error",
                "code": "model_not_found",
                "param": "model",
            }
            self._send(400, json.dumps({"error": error}).encode())
            return
        if fake.delay_seconds:  # a slow provider (client-disconnect tests)
            time.sleep(fake.delay_seconds)
        if mode == "garbage":
            self._send(200, b"<html>not json</html>", content_type="text/html")
            return
        if mode == "redirect":
            self._send(302, b"", extra={"Location": "http://127.0.0.1:1/elsewhere"})
            return
        if self.path.endswith("/emails/send"):
            self._send(200, json.dumps({"id": f"msg_{len(fake.requests)}"}).encode())
            return
        if self.path.endswith("/embeddings"):
            self._send(200, json.dumps(fake.embeddings(payload)).encode())
            return
        if self.path.endswith("/messages"):  # Anthropic's native Messages API
            if payload.get("stream"):
                self._anthropic_stream(payload, error_mid_stream=mode == "stream_error")
            else:
                self._send(200, json.dumps(fake.anthropic_message(payload)).encode())
            return
        if payload.get("stream") and mode == "stream_reset":  # headers, then a reset: no byte
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            self.wfile.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            return
        if payload.get("stream"):
            self._stream(payload, with_usage=mode != "stream_no_usage")
            return
        self._send(200, json.dumps(fake.completion(payload)).encode())

    def _stream(self, payload: dict, *, with_usage: bool):
        fake = self.server.fake
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        base = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": payload["model"],
        }
        try:
            for index in range(fake.stream_chunks):
                delta = {"content": "word "}
                event = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
                self.wfile.write(b"data: " + json.dumps(event).encode() + b"\n\n")
                self.wfile.flush()
                if fake.chunk_delay:
                    time.sleep(fake.chunk_delay)
                del index
            final = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
            self.wfile.write(b"data: " + json.dumps(final).encode() + b"\n\n")
            if with_usage and (payload.get("stream_options") or {}).get("include_usage"):
                usage = {
                    "prompt_tokens": fake.prompt_tokens,
                    "completion_tokens": fake.stream_chunks,
                    "total_tokens": fake.prompt_tokens + fake.stream_chunks,
                }
                self.wfile.write(
                    b"data: " + json.dumps({**base, "choices": [], "usage": usage}).encode() + b"\n\n"
                )
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            fake.client_went_away = True

    def _anthropic_stream(self, payload: dict, *, error_mid_stream: bool):
        """Anthropic's event sequence: message_start, a ping, the text (or tool) block's deltas,
        message_delta with the output tokens, message_stop — or an ``error`` event mid-text."""
        fake = self.server.fake
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()

        def send(event: str, data: dict) -> None:
            self.wfile.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())
            self.wfile.flush()

        start = {**fake.anthropic_message(payload), "content": [], "stop_reason": None}
        start["usage"] = {**start["usage"], "output_tokens": 1}
        try:
            send("message_start", {"type": "message_start", "message": start})
            send("ping", {"type": "ping"})
            if payload.get("tools"):
                tool = {
                    "type": "tool_use",
                    "id": "toolu_fake",
                    "name": payload["tools"][0]["name"],
                    "input": {},
                }
                send(
                    "content_block_start", {"type": "content_block_start", "index": 0, "content_block": tool}
                )
                arguments = json.dumps(fake.tool_input)
                for part in (arguments[:5], arguments[5:]):
                    delta = {"type": "input_json_delta", "partial_json": part}
                    send("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
                stop_reason = "tool_use"
            else:
                block = {"type": "text", "text": ""}
                send(
                    "content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}
                )
                for index in range(fake.stream_chunks):
                    if error_mid_stream and index == fake.stream_error_after:
                        error = {"type": "overloaded_error", "message": "Overloaded"}
                        send("error", {"type": "error", "error": error})
                        return
                    delta = {"type": "text_delta", "text": "word "}
                    send("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
                    if fake.chunk_delay:
                        time.sleep(fake.chunk_delay)
                stop_reason = "end_turn"
            send("content_block_stop", {"type": "content_block_stop", "index": 0})
            delta = {"stop_reason": stop_reason, "stop_sequence": None}
            send(
                "message_delta",
                {"type": "message_delta", "delta": delta, "usage": {"output_tokens": fake.stream_chunks}},
            )
            send("message_stop", {"type": "message_stop"})
        except (BrokenPipeError, ConnectionResetError):
            fake.client_went_away = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeUpstream


class FakeUpstream:
    """``with FakeUpstream() as fake: fake.base_url``; set ``fake.mode`` (or per-path modes)."""

    def __init__(self, *, prompt_tokens: int = 10, completion_tokens: int = 15):
        self.mode = "ok"
        self.path_modes: dict[str, str] = {}
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.stream_chunks = 5
        self.prompt_tokens_per_byte = 0.0  # > 0: report prompt tokens from the request's size
        self.chunk_delay = 0.0
        self.sleep_seconds = 2.0
        self.delay_seconds = 0.0
        self.retry_after = ""  # the Retry-After header of mode "429", when set
        self.cache_read_tokens = 0  # Anthropic's cache_read_input_tokens (on top of prompt_tokens)
        self.tool_input = {"city": "Paris"}  # the input of Anthropic's tool_use when tools are sent
        self.stream_error_after = 2  # text deltas before mode "stream_error" sends its error event
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.client_went_away = False
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def mode_for(self, path: str) -> str:
        for prefix, mode in self.path_modes.items():
            if path.startswith(prefix):
                return mode
        return self.mode

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def url_for(self, prefix: str) -> str:
        """A base URL whose requests get ``prefix`` (per-provider behaviour via ``path_modes``)."""
        return f"{self.base_url}{prefix}"

    def completion(self, payload: dict) -> dict:
        prompt_tokens = self.prompt_tokens
        if self.prompt_tokens_per_byte:  # a tokenizer's count: the whole request is input
            prompt_tokens = int(len(json.dumps(payload)) * self.prompt_tokens_per_byte)
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 1,
            "model": payload.get("model"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hello! How can I help?"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "total_tokens": prompt_tokens + self.completion_tokens,
            },
        }

    def anthropic_message(self, payload: dict) -> dict:
        """Anthropic's native Message: text, or a ``tool_use`` of the first declared tool."""
        if payload.get("tools"):
            block = {"type": "tool_use", "id": "toolu_fake", "name": payload["tools"][0]["name"]}
            content, stop_reason = [{**block, "input": self.tool_input}], "tool_use"
        else:
            content, stop_reason = [{"type": "text", "text": "Hello! How can I help?"}], "end_turn"
        return {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": payload.get("model"),
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {
                "input_tokens": self.prompt_tokens,
                "output_tokens": self.completion_tokens,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": self.cache_read_tokens,
            },
        }

    def embeddings(self, payload: dict) -> dict:
        """OpenAI's embeddings answer: vector i is [i+1, 0.5, 0.25, …] (``dimensions`` long,
        default 4), base64 float32 little-endian when asked; usage ``prompt_tokens``."""
        inputs = payload.get("input")
        count = len(inputs) if isinstance(inputs, list) and not isinstance(inputs[0], int) else 1
        dimensions = payload.get("dimensions") or 4
        data = []
        for index in range(count):
            vector = [float(index + 1)] + [0.5**n for n in range(1, dimensions)]
            embedding = vector
            if payload.get("encoding_format") == "base64":
                embedding = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        usage = {"prompt_tokens": self.prompt_tokens, "total_tokens": self.prompt_tokens}
        return {"object": "list", "data": data, "model": payload.get("model"), "usage": usage}

    def __enter__(self) -> FakeUpstream:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
