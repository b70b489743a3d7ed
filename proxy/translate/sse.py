"""Server-sent events: split a byte stream into events, and write one."""

from __future__ import annotations

import json


class SseDecoder:
    """Feed bytes as they arrive; get back complete ``(event, data)`` pairs.

    Lines may be split anywhere across chunks; ``\\r\\n`` and ``\\n`` both end a line. Comments
    (``:``) are dropped. ``event`` is ``None`` when the event has no ``event:`` line.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._event: str | None = None
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[tuple[str | None, str]]:
        self._buffer += chunk
        events = []
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                break
            line = self._buffer[:end].rstrip(b"\r").decode("utf-8", errors="replace")
            self._buffer = self._buffer[end + 1 :]
            if not line:
                if self._data:
                    events.append((self._event, "\n".join(self._data)))
                self._event, self._data = None, []
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "event":
                self._event = value
            elif name == "data":
                self._data.append(value)
        return events


def sse_event(event: str | None, data: dict) -> bytes:
    """One SSE event, compact JSON on one line."""
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {body}\n\n".encode()


def chat_chunks_parse(decoder: SseDecoder, chunk: bytes) -> list[dict | None]:
    """The chat-completion chunks in ``chunk``: dicts, and ``None`` for ``[DONE]``.

    Data that is not a JSON object is skipped (a provider's keep-alive or garbage); the call
    path's usage tap has already seen the same bytes.
    """
    parsed: list[dict | None] = []
    for _event, data in decoder.feed(chunk):
        if data.strip() == "[DONE]":
            parsed.append(None)
            continue
        try:
            value = json.loads(data)
        except ValueError:
            continue
        if isinstance(value, dict):
            parsed.append(value)
    return parsed


class ChatChunkTranslator:
    """Base of the stream translators: chat-completion chunks in, another API's events out.

    ``feed`` takes each parsed chunk (``None`` for ``[DONE]``) and hands the first choice's text
    and tool-call deltas to ``_text_delta`` / ``_call_delta``; it keeps the finish reason and the
    usage (which chat streams report last) for ``finish`` to close the answer with.
    """

    def __init__(self) -> None:
        self._finish: str | None = None
        self._usage: dict | None = None
        self._done = False

    def _start(self) -> list[bytes]:
        raise NotImplementedError

    def _text_delta(self, text: str) -> list[bytes]:
        raise NotImplementedError

    def _call_delta(self, call: dict) -> list[bytes]:
        raise NotImplementedError

    def feed(self, chunk: dict | None) -> list[bytes]:
        if self._done:
            return []
        out = self._start()
        if chunk is None:
            return out
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if delta.get("content"):
                out += self._text_delta(delta["content"])
            for call in delta.get("tool_calls") or []:
                out += self._call_delta(call)
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]
        return out
