"""Anthropic Messages ⇄ OpenAI chat completions: the shared vocabulary, and Anthropic as a provider.

- A client on the ``anthropic`` SDK (``POST /v1/messages``): see ``proxy.translate.messages``.
- Anthropic as a provider: ``chat_to_messages_request`` / ``message_to_chat`` /
  ``MessagesToChatStream`` let the upstream adapter call Anthropic's native ``/v1/messages``
  instead of its OpenAI-compatibility layer (which Anthropic documents as not for production).

Carried: text, images (base64 and URL), system prompts, tools and tool results, tool choice,
stop sequences, sampling parameters, stop reasons, usage (cache reads included). Not carried:
``cache_control`` hints, extended thinking, documents/PDF blocks, citations, server tools and
``n > 1`` (refused with a 400 naming the field, never dropped silently where it changes the
answer).
"""

from __future__ import annotations

import json
import secrets

from . import TranslationError

ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096  # Anthropic requires max_tokens; OpenAI clients often omit it

STOP_TO_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
FINISH_TO_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def error_body(*, status: int, message: str, code: str | None = None) -> dict:
    """Anthropic's error shape; Tollgate's own ``code`` rides along so its meaning survives."""
    error = {"type": ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")}
    error["message"] = message
    if code:
        error["code"] = code
    return {"type": "error", "error": error}


def _new_id(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(12)}"


def _require(condition: bool, message: str, param: str) -> None:
    if not condition:
        raise TranslationError(message, param=param)


def _arguments(raw) -> dict:
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# --- Anthropic as a provider: request and answer ------------------------------------------------


def _chat_content_to_blocks(content) -> list[dict]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for part in content if isinstance(content, list) else []:
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text":
            blocks.append({"type": "text", "text": str(part.get("text") or "")})
        elif part.get("type") == "image_url":
            url = str((part.get("image_url") or {}).get("url") or "")
            if url.startswith("data:") and ";base64," in url:
                media, data = url[5:].split(";base64,", 1)
                blocks.append(
                    {"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}
                )
            else:
                blocks.append({"type": "image", "source": {"type": "url", "url": url}})
    return blocks


def _append_turn(turns: list[dict], role: str, blocks: list[dict]) -> None:
    """Anthropic wants alternating roles: merge consecutive turns of the same role."""
    if not blocks:
        return
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)
    else:
        turns.append({"role": role, "content": blocks})


def chat_to_messages_request(payload: dict) -> dict:
    """A chat-completions payload → a native Anthropic Messages request."""
    if (payload.get("n") or 1) != 1:
        raise TranslationError("Anthropic models answer one choice; n must be 1.", param="n")
    system: list[str] = []
    turns: list[dict] = []
    for message in payload.get("messages") or []:
        role = message.get("role")
        if role in ("system", "developer"):
            system.append(_text_of_chat(message.get("content")))
        elif role == "user":
            _append_turn(turns, "user", _chat_content_to_blocks(message.get("content")))
        elif role == "assistant":
            blocks = _chat_content_to_blocks(message.get("content"))
            for call in message.get("tool_calls") or []:
                function = call.get("function") or {}
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": str(call.get("id") or _new_id("toolu_")),
                        "name": str(function.get("name") or ""),
                        "input": _arguments(function.get("arguments")),
                    }
                )
            _append_turn(turns, "assistant", blocks)
        elif role == "tool":
            block = {
                "type": "tool_result",
                "tool_use_id": str(message.get("tool_call_id") or ""),
                "content": _text_of_chat(message.get("content")),
            }
            _append_turn(turns, "user", [block])
    instruction = _json_instruction(payload.get("response_format"))
    if instruction:
        system.append(instruction)
    request: dict = {
        "model": payload["model"],
        "messages": turns,
        "max_tokens": payload.get("max_tokens") or payload.get("max_completion_tokens") or DEFAULT_MAX_TOKENS,
    }
    if system:
        request["system"] = "\n\n".join(system)
    if payload.get("temperature") is not None:
        request["temperature"] = min(float(payload["temperature"]), 1.0)  # Anthropic's range is 0–1
    if payload.get("top_p") is not None:
        request["top_p"] = payload["top_p"]
    stop = payload.get("stop")
    if stop:
        request["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if payload.get("stream"):
        request["stream"] = True
    if isinstance(payload.get("user"), str):
        request["metadata"] = {"user_id": payload["user"]}
    if payload.get("tools"):
        request["tools"] = [_tool_to_anthropic(tool) for tool in payload["tools"]]
        choice = _tool_choice_to_anthropic(payload.get("tool_choice"))
        if payload.get("parallel_tool_calls") is False:
            choice["disable_parallel_tool_use"] = True
        request["tool_choice"] = choice
    return request


def _json_instruction(response_format) -> str | None:
    """JSON mode carried as an instruction: Anthropic has no ``response_format``, and dropping it
    would change the answer a JSON-mode client parses."""
    if not isinstance(response_format, dict):
        return None
    if response_format.get("type") == "json_object":
        return "Reply with one valid JSON object and nothing else: no prose, no code fences."
    schema = (response_format.get("json_schema") or {}).get("schema")
    if response_format.get("type") == "json_schema" and isinstance(schema, dict):
        return (
            "Reply with one valid JSON object and nothing else (no prose, no code fences) that "
            f"matches this JSON schema: {json.dumps(schema, separators=(',', ':'))}"
        )
    return None


def _text_of_chat(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n\n".join(str(p.get("text") or "") for p in content if isinstance(p, dict))
    return ""


def _tool_to_anthropic(tool: dict) -> dict:
    function = tool.get("function") or {}
    out = {"name": function.get("name"), "input_schema": function.get("parameters") or {"type": "object"}}
    if function.get("description"):
        out["description"] = function["description"]
    return out


def _tool_choice_to_anthropic(choice) -> dict:
    if choice == "required":
        return {"type": "any"}
    if choice == "none":
        return {"type": "none"}
    if isinstance(choice, dict) and (choice.get("function") or {}).get("name"):
        return {"type": "tool", "name": choice["function"]["name"]}
    return {"type": "auto"}


def _usage_to_chat(usage: dict) -> dict:
    cache_read = int(usage.get("cache_read_input_tokens") or 0)
    prompt = (
        int(usage.get("input_tokens") or 0) + cache_read + int(usage.get("cache_creation_input_tokens") or 0)
    )
    completion = int(usage.get("output_tokens") or 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cache_read},
    }


def message_to_chat(message: dict, *, created: int) -> dict:
    """A native Anthropic Message → a chat completion."""
    texts, calls = [], []
    for block in message.get("content") or []:
        if block.get("type") == "text":
            texts.append(str(block.get("text") or ""))
        elif block.get("type") == "tool_use":
            calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {
                        "name": block.get("name"),
                        "arguments": json.dumps(block.get("input") or {}),
                    },
                }
            )
    reply: dict = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        reply["tool_calls"] = calls
    return {
        "id": "chatcmpl-" + str(message.get("id") or _new_id("")),
        "object": "chat.completion",
        "created": created,
        "model": message.get("model"),
        "choices": [
            {
                "index": 0,
                "message": reply,
                "finish_reason": STOP_TO_FINISH.get(message.get("stop_reason"), "stop"),
            }
        ],
        "usage": _usage_to_chat(message.get("usage") or {}),
    }


class MessagesToChatStream:
    """Anthropic SSE events in (``(event, data)`` parsed), chat-completion SSE chunks out.

    Usage is reported as chat streams do: a last chunk with empty ``choices`` before ``[DONE]``.
    An ``error`` event from Anthropic becomes ``UpstreamStreamError`` for the caller to raise.
    """

    def __init__(self, *, model: str, created: int):
        self.model = model
        self.created = created
        self.id = "chatcmpl-" + _new_id("")
        self._usage: dict = {}
        self._tools: dict[int, int] = {}  # Anthropic block index → chat tool-call index
        self._finish: str | None = None
        self._first = True

    def _chunk(
        self, *, delta: dict | None = None, finish: str | None = None, usage: dict | None = None
    ) -> bytes:
        body: dict = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
        }
        if usage is not None:
            body["choices"] = []
            body["usage"] = usage
        else:
            if self._first and delta is not None:
                delta = {"role": "assistant", **delta}
                self._first = False
            body["choices"] = [{"index": 0, "delta": delta or {}, "finish_reason": finish}]
        return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"

    def feed(self, event: str | None, data: dict) -> list[bytes]:
        kind = data.get("type") or event
        if kind == "error":
            error = data.get("error") or {}
            raise UpstreamStreamError(
                str(error.get("message") or "Anthropic stream error."), str(error.get("type") or "")
            )
        if kind == "message_start":
            self._usage.update((data.get("message") or {}).get("usage") or {})
            if (data.get("message") or {}).get("model"):
                self.model = data["message"]["model"]
            return []
        if kind == "content_block_start":
            block = data.get("content_block") or {}
            if block.get("type") == "tool_use":
                position = len(self._tools)
                self._tools[data.get("index", 0)] = position
                call = {
                    "index": position,
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": block.get("name"), "arguments": ""},
                }
                return [self._chunk(delta={"tool_calls": [call]})]
            return []
        if kind == "content_block_delta":
            delta = data.get("delta") or {}
            if delta.get("type") == "text_delta":
                return [self._chunk(delta={"content": delta.get("text") or ""})]
            if delta.get("type") == "input_json_delta" and data.get("index") in self._tools:
                call = {
                    "index": self._tools[data["index"]],
                    "function": {"arguments": delta.get("partial_json") or ""},
                }
                return [self._chunk(delta={"tool_calls": [call]})]
            return []
        if kind == "message_delta":
            self._usage.update({k: v for k, v in (data.get("usage") or {}).items() if v is not None})
            stop = (data.get("delta") or {}).get("stop_reason")
            if stop:
                self._finish = STOP_TO_FINISH.get(stop, "stop")
            return []
        if kind == "message_stop":
            return [
                self._chunk(delta={}, finish=self._finish or "stop"),
                self._chunk(usage=_usage_to_chat(self._usage)),
                b"data: [DONE]\n\n",
            ]
        return []  # ping and unknown events


class UpstreamStreamError(Exception):
    def __init__(self, message: str, error_type: str):
        super().__init__(message)
        self.message = message
        self.error_type = error_type
