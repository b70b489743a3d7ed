"""Anthropic Messages for clients on the ``anthropic`` SDK (``POST /v1/messages``).

``messages_to_chat`` turns the request into a chat payload so any routed model can serve it;
``chat_to_message`` / ``ChatToMessagesStream`` turn the answer back into a Message or
Anthropic's SSE events. What is and is not carried: see ``proxy.translate.anthropic``.
"""

from __future__ import annotations

import json

from . import TranslationError
from .anthropic import FINISH_TO_STOP, _arguments, _new_id, _require, error_body
from .sse import ChatChunkTranslator, sse_event

# --- Client speaks Anthropic: request -----------------------------------------------------------


def _text_of(content, param: str) -> str:
    """A ``tool_result``'s or system prompt's text: a string or a list of text blocks."""
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    _require(isinstance(content, list), "must be a string or a list of text blocks.", param)
    texts = []
    for index, block in enumerate(content):
        _require(
            isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str),
            "only text blocks are supported here.",
            f"{param}.{index}",
        )
        texts.append(block["text"])
    return "\n\n".join(texts)


def _image_part(block: dict, param: str) -> dict:
    source = block.get("source")
    _require(isinstance(source, dict), "an image needs a source.", f"{param}.source")
    if source.get("type") == "base64":
        media, data = source.get("media_type"), source.get("data")
        _require(
            isinstance(media, str) and isinstance(data, str), "base64 image needs media_type and data.", param
        )
        return {"type": "image_url", "image_url": {"url": f"data:{media};base64,{data}"}}
    if source.get("type") == "url" and isinstance(source.get("url"), str):
        return {"type": "image_url", "image_url": {"url": source["url"]}}
    raise TranslationError("image source must be base64 or url.", param=f"{param}.source")


def _user_message(content: list, param: str) -> list[dict]:
    """One Anthropic user turn → tool messages (first, answering the previous turn's calls) and
    a user message."""
    tool_messages, parts = [], []
    for index, block in enumerate(content):
        where = f"{param}.{index}"
        _require(isinstance(block, dict), "each content block must be an object.", where)
        kind = block.get("type")
        if kind == "text":
            _require(isinstance(block.get("text"), str), "text must be a string.", f"{where}.text")
            parts.append({"type": "text", "text": block["text"]})
        elif kind == "image":
            parts.append(_image_part(block, where))
        elif kind == "tool_result":
            _require(isinstance(block.get("tool_use_id"), str), "tool_use_id is required.", where)
            text = _text_of(block.get("content"), f"{where}.content")
            if block.get("is_error"):
                text = f"[tool error] {text}"
            tool_messages.append({"role": "tool", "tool_call_id": block["tool_use_id"], "content": text})
        else:
            raise TranslationError(f"content block type {kind!r} is not supported.", param=f"{where}.type")
    messages = list(tool_messages)
    if parts:
        only_text = all(part["type"] == "text" for part in parts)
        content_out = "\n\n".join(part["text"] for part in parts) if only_text else parts
        messages.append({"role": "user", "content": content_out})
    return messages


def _assistant_message(content: list, param: str) -> dict:
    texts, calls = [], []
    for index, block in enumerate(content):
        where = f"{param}.{index}"
        _require(isinstance(block, dict), "each content block must be an object.", where)
        kind = block.get("type")
        if kind == "text":
            texts.append(str(block.get("text") or ""))
        elif kind == "tool_use":
            _require(isinstance(block.get("name"), str), "tool_use needs a name.", f"{where}.name")
            calls.append(
                {
                    "id": str(block.get("id") or _new_id("toolu_")),
                    "type": "function",
                    "function": {"name": block["name"], "arguments": json.dumps(block.get("input") or {})},
                }
            )
        elif kind in ("thinking", "redacted_thinking"):
            continue  # the model's own scratchpad: not replayable to another provider
        else:
            raise TranslationError(f"content block type {kind!r} is not supported.", param=f"{where}.type")
    message: dict = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        message["tool_calls"] = calls
    return message


def _tool_choice_to_chat(choice) -> tuple[object, bool | None]:
    """(chat tool_choice, parallel_tool_calls)."""
    _require(isinstance(choice, dict), "tool_choice must be an object.", "tool_choice")
    parallel = False if choice.get("disable_parallel_tool_use") else None
    kind = choice.get("type")
    if kind == "auto":
        return "auto", parallel
    if kind == "any":
        return "required", parallel
    if kind == "none":
        return "none", parallel
    if kind == "tool" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}, parallel
    raise TranslationError("tool_choice.type must be auto, any, none or tool.", param="tool_choice.type")


def messages_to_chat(body: dict) -> dict:
    """An Anthropic Messages request → a chat-completions payload. Raises ``TranslationError``."""
    _require(isinstance(body.get("model"), str) and body["model"], "model is required.", "model")
    max_tokens = body.get("max_tokens")
    _require(
        type(max_tokens) is int and max_tokens >= 1, "max_tokens must be a positive integer.", "max_tokens"
    )
    turns = body.get("messages")
    _require(isinstance(turns, list) and turns, "messages must be a non-empty list.", "messages")
    messages: list[dict] = []
    if body.get("system") not in (None, "", []):
        messages.append({"role": "system", "content": _text_of(body["system"], "system")})
    for index, turn in enumerate(turns):
        where = f"messages.{index}"
        _require(isinstance(turn, dict), "each message must be an object.", where)
        role, content = turn.get("role"), turn.get("content")
        _require(role in ("user", "assistant"), "role must be user or assistant.", f"{where}.role")
        if isinstance(content, str):
            messages.append({"role": role, "content": content})
            continue
        _require(isinstance(content, list), "content must be a string or a list.", f"{where}.content")
        if role == "user":
            messages.extend(_user_message(content, f"{where}.content"))
        else:
            messages.append(_assistant_message(content, f"{where}.content"))
    payload: dict = {"model": body["model"], "messages": messages, "max_tokens": max_tokens}
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            payload[name] = body[name]
    if body.get("stop_sequences"):
        payload["stop"] = body["stop_sequences"]
    if body.get("stream") is True:
        payload["stream"] = True
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
        payload["user"] = metadata["user_id"]
    tools = body.get("tools")
    if tools:
        _require(isinstance(tools, list), "tools must be a list.", "tools")
        payload["tools"] = [_tool_to_chat(tool, f"tools.{index}") for index, tool in enumerate(tools)]
    if body.get("tool_choice") is not None:
        payload["tool_choice"], parallel = _tool_choice_to_chat(body["tool_choice"])
        if parallel is not None:
            payload["parallel_tool_calls"] = parallel
    return payload


def _tool_to_chat(tool, param: str) -> dict:
    _require(isinstance(tool, dict) and isinstance(tool.get("name"), str), "a tool needs a name.", param)
    if tool.get("type") not in (None, "custom"):
        raise TranslationError("server tools are not supported; declare client tools.", param=f"{param}.type")
    function = {"name": tool["name"], "parameters": tool.get("input_schema") or {"type": "object"}}
    if tool.get("description"):
        function["description"] = tool["description"]
    return {"type": "function", "function": function}


# --- Client speaks Anthropic: answer ------------------------------------------------------------


def _usage_to_anthropic(usage: dict | None) -> dict:
    usage = usage or {}
    cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
    return {
        "input_tokens": max(0, int(usage.get("prompt_tokens") or 0) - cached),
        "output_tokens": int(usage.get("completion_tokens") or 0),
        "cache_read_input_tokens": cached,
        "cache_creation_input_tokens": 0,
    }


def chat_to_message(chat: dict, *, model: str) -> dict:
    """A chat completion → an Anthropic Message (first choice)."""
    choice = (chat.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    content: list[dict] = []
    if message.get("content"):
        content.append({"type": "text", "text": str(message["content"])})
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": str(call.get("id") or _new_id("toolu_")),
                "name": str(function.get("name") or ""),
                "input": _arguments(function.get("arguments")),
            }
        )
    return {
        "id": _new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": FINISH_TO_STOP.get(choice.get("finish_reason") or "stop", "end_turn"),
        "stop_sequence": None,
        "usage": _usage_to_anthropic(chat.get("usage")),
    }


class ChatToMessagesStream(ChatChunkTranslator):
    """Chat-completion chunks in, Anthropic SSE events out; ``finish`` closes the message, its
    ``message_delta`` carrying the final usage."""

    def __init__(self, *, model: str, input_tokens_estimate: int = 0):
        super().__init__()
        self.model = model
        self._started = False
        self._block: tuple[str, int] | None = None  # (kind, index) of the open block
        self._blocks = 0
        self._tool_blocks: dict[int, int] = {}  # chat tool-call index → our block index
        self._estimate = input_tokens_estimate

    def _start(self) -> list[bytes]:
        if self._started:
            return []
        self._started = True
        message = {
            "id": _new_id("msg_"),
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": self._estimate, "output_tokens": 0},
        }
        return [sse_event("message_start", {"type": "message_start", "message": message})]

    def _close_block(self) -> list[bytes]:
        if self._block is None:
            return []
        _kind, index = self._block
        self._block = None
        return [sse_event("content_block_stop", {"type": "content_block_stop", "index": index})]

    def _open_block(self, kind: str, block: dict) -> list[bytes]:
        out = self._close_block()
        index = self._blocks
        self._blocks += 1
        self._block = (kind, index)
        event = {"type": "content_block_start", "index": index, "content_block": block}
        out.append(sse_event("content_block_start", event))
        return out

    def _text_delta(self, text: str) -> list[bytes]:
        out = []
        if self._block is None or self._block[0] != "text":
            out += self._open_block("text", {"type": "text", "text": ""})
        event = {
            "type": "content_block_delta",
            "index": self._block[1],
            "delta": {"type": "text_delta", "text": text},
        }
        out.append(sse_event("content_block_delta", event))
        return out

    def _call_delta(self, call: dict) -> list[bytes]:
        out: list[bytes] = []
        position = call.get("index", 0)
        function = call.get("function") or {}
        if position not in self._tool_blocks:
            block = {
                "type": "tool_use",
                "id": str(call.get("id") or _new_id("toolu_")),
                "name": str(function.get("name") or ""),
                "input": {},
            }
            out += self._open_block(f"tool{position}", block)
            self._tool_blocks[position] = self._block[1]
        arguments = function.get("arguments")
        if arguments:
            event = {
                "type": "content_block_delta",
                "index": self._tool_blocks[position],
                "delta": {"type": "input_json_delta", "partial_json": arguments},
            }
            out.append(sse_event("content_block_delta", event))
        return out

    def finish(self) -> list[bytes]:
        """Close the message; if the provider never said it finished, an ``error`` event."""
        if self._done:
            return []
        self._done = True
        out = self._start() + self._close_block()
        if self._finish is None:
            error = error_body(
                status=502, message="The provider's stream ended early.", code="upstream_error"
            )
            return out + [sse_event("error", error)]
        usage = _usage_to_anthropic(self._usage)
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": FINISH_TO_STOP.get(self._finish, "end_turn"), "stop_sequence": None},
            "usage": usage,
        }
        out.append(sse_event("message_delta", delta))
        out.append(sse_event("message_stop", {"type": "message_stop"}))
        return out
