"""OpenAI Responses API ⇄ chat completions.

``POST /v1/responses`` runs as a chat completion on whichever provider the route picks:
``responses_to_chat`` builds the chat payload, ``chat_to_response`` and ``ChatToResponsesStream``
build the Response object and its SSE events (``response.created`` … ``response.completed``
with ``usage.input_tokens``/``output_tokens``), metered from the usage the provider reported.

Bridged: text and image input, instructions, function tools and their calls/outputs, tool
choice, ``text.format`` (JSON object and JSON schema), sampling parameters, reasoning effort,
metadata. Refused with a 400 naming the field: ``previous_response_id`` and ``conversation``
(Tollgate stores no responses: send the conversation in ``input``), ``background``, built-in
tools (web/file search, computer use, code interpreter) and file inputs.
"""

from __future__ import annotations

import secrets
import time

from . import TranslationError
from .sse import ChatChunkTranslator, sse_event


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def _require(condition: bool, message: str, param: str) -> None:
    if not condition:
        raise TranslationError(message, param=param)


_REFUSED = {
    "previous_response_id": "Tollgate stores no responses; send the whole conversation in input.",
    "conversation": "Tollgate stores no conversations; send the whole conversation in input.",
    "background": "background responses are not supported.",
}


def _content_to_chat(content, param: str):
    if isinstance(content, str):
        return content
    _require(isinstance(content, list), "content must be a string or a list of parts.", param)
    parts = []
    for index, part in enumerate(content):
        where = f"{param}.{index}"
        _require(isinstance(part, dict), "each content part must be an object.", where)
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text"):
            _require(isinstance(part.get("text"), str), "text must be a string.", f"{where}.text")
            parts.append({"type": "text", "text": part["text"]})
        elif kind == "input_image" and isinstance(part.get("image_url"), str):
            image = {"url": part["image_url"]}
            if part.get("detail") in ("low", "high", "auto"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        else:
            raise TranslationError(f"content part type {kind!r} is not supported.", param=f"{where}.type")
    if all(part["type"] == "text" for part in parts):
        return "".join(part["text"] for part in parts)
    return parts


def _input_to_messages(items, param: str) -> list[dict]:
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    _require(isinstance(items, list) and items, "input must be a string or a non-empty list.", param)
    messages: list[dict] = []
    for index, item in enumerate(items):
        where = f"{param}.{index}"
        _require(isinstance(item, dict), "each input item must be an object.", where)
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            _require(role in ("user", "assistant", "system", "developer"), "unknown role.", f"{where}.role")
            content = _content_to_chat(item.get("content"), f"{where}.content")
            messages.append({"role": "system" if role == "developer" else role, "content": content})
        elif kind == "function_call":
            _require(isinstance(item.get("name"), str), "function_call needs a name.", f"{where}.name")
            call = {
                "id": str(item.get("call_id") or _new_id("call")),
                "type": "function",
                "function": {"name": item["name"], "arguments": str(item.get("arguments") or "{}")},
            }
            last = messages[-1] if messages else None
            if last and last["role"] == "assistant" and "tool_calls" in last:
                last["tool_calls"].append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            _require(isinstance(item.get("call_id"), str), "call_id is required.", f"{where}.call_id")
            output = item.get("output")
            text = output if isinstance(output, str) else _content_to_chat(output, f"{where}.output")
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": text})
        elif kind == "reasoning":
            continue
        else:
            raise TranslationError(f"input item type {kind!r} is not supported.", param=f"{where}.type")
    return messages


def _tools_to_chat(tools) -> list[dict]:
    _require(isinstance(tools, list), "tools must be a list.", "tools")
    out = []
    for index, tool in enumerate(tools):
        where = f"tools.{index}"
        _require(isinstance(tool, dict), "each tool must be an object.", where)
        if tool.get("type") != "function":
            raise TranslationError(
                "only function tools are bridged; built-in tools are not.", param=f"{where}.type"
            )
        _require(isinstance(tool.get("name"), str), "a function tool needs a name.", f"{where}.name")
        function = {"name": tool["name"], "parameters": tool.get("parameters") or {"type": "object"}}
        if tool.get("description"):
            function["description"] = tool["description"]
        if tool.get("strict") is not None:
            function["strict"] = bool(tool["strict"])
        out.append({"type": "function", "function": function})
    return out


def _tool_choice_to_chat(choice):
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise TranslationError("tool_choice must be auto, none, required or a function.", param="tool_choice")


def _format_to_chat(text) -> dict | None:
    if text is None:
        return None
    _require(isinstance(text, dict), "text must be an object.", "text")
    fmt = text.get("format")
    if fmt is None or (isinstance(fmt, dict) and fmt.get("type") == "text"):
        return None
    _require(isinstance(fmt, dict), "text.format must be an object.", "text.format")
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}
    if fmt.get("type") == "json_schema":
        _require(isinstance(fmt.get("schema"), dict), "json_schema needs a schema.", "text.format.schema")
        schema = {"name": str(fmt.get("name") or "response"), "schema": fmt["schema"]}
        if fmt.get("strict") is not None:
            schema["strict"] = bool(fmt["strict"])
        return {"type": "json_schema", "json_schema": schema}
    raise TranslationError(
        "text.format.type must be text, json_object or json_schema.", param="text.format.type"
    )


def responses_to_chat(body: dict) -> dict:
    """A Responses API request → a chat-completions payload. Raises ``TranslationError``."""
    _require(isinstance(body.get("model"), str) and body["model"], "model is required.", "model")
    for name, why in _REFUSED.items():
        if body.get(name) not in (None, False):
            raise TranslationError(why, param=name)
    messages = _input_to_messages(body.get("input"), "input")
    instructions = body.get("instructions")
    if instructions is not None:
        _require(isinstance(instructions, str), "instructions must be a string.", "instructions")
        messages.insert(0, {"role": "system", "content": instructions})
    payload: dict = {"model": body["model"], "messages": messages}
    max_tokens = body.get("max_output_tokens")
    if max_tokens is not None:
        _require(
            type(max_tokens) is int and max_tokens >= 1, "must be a positive integer.", "max_output_tokens"
        )
        payload["max_tokens"] = max_tokens
    for name in ("temperature", "top_p", "parallel_tool_calls", "user"):
        if body.get(name) is not None:
            payload[name] = body[name]
    if body.get("stream") is True:
        payload["stream"] = True
    if body.get("tools"):
        payload["tools"] = _tools_to_chat(body["tools"])
    if body.get("tool_choice") is not None:
        payload["tool_choice"] = _tool_choice_to_chat(body["tool_choice"])
    response_format = _format_to_chat(body.get("text"))
    if response_format:
        payload["response_format"] = response_format
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict) and reasoning.get("effort"):
        payload["reasoning_effort"] = reasoning["effort"]
    return payload


# --- The answer ---------------------------------------------------------------------------------


def _usage(usage: dict | None) -> dict:
    usage = usage or {}
    prompt, completion = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    return {
        "input_tokens": prompt,
        "input_tokens_details": {
            "cached_tokens": int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
        },
        "output_tokens": completion,
        "output_tokens_details": {
            "reasoning_tokens": int(
                (usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
            )
        },
        "total_tokens": prompt + completion,
    }


def _status(finish_reason: str | None) -> tuple[str, dict | None]:
    if finish_reason == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    if finish_reason == "content_filter":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def _envelope(body: dict, *, response_id: str, model: str, created_at: int) -> dict:
    """The Response object's fields that echo the request."""
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": "in_progress",
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "metadata": body.get("metadata") or {},
        "model": model,
        "output": [],
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": None,
        "reasoning": {"effort": (body.get("reasoning") or {}).get("effort"), "summary": None},
        "store": False,
        "temperature": body.get("temperature"),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p"),
        "truncation": "disabled",
        "usage": None,
        "user": body.get("user"),
    }


def _message_item(item_id: str, text: str, status: str) -> dict:
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }


def _call_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> dict:
    return {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }


def chat_to_response(chat: dict, *, body: dict, model: str) -> dict:
    """A chat completion → a Response object."""
    choice = (chat.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    output = []
    if message.get("content"):
        output.append(_message_item(_new_id("msg"), str(message["content"]), "completed"))
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        output.append(
            _call_item(
                _new_id("fc"),
                str(call.get("id") or _new_id("call")),
                str(function.get("name") or ""),
                str(function.get("arguments") or ""),
                "completed",
            )
        )
    status, incomplete = _status(choice.get("finish_reason"))
    response = _envelope(body, response_id=_new_id("resp"), model=model, created_at=int(time.time()))
    response.update(
        status=status, incomplete_details=incomplete, output=output, usage=_usage(chat.get("usage"))
    )
    return response


class ChatToResponsesStream(ChatChunkTranslator):
    """Chat-completion chunks in, Responses API SSE events out (with ``sequence_number``)."""

    def __init__(self, *, body: dict, model: str):
        super().__init__()
        self._response = _envelope(
            body, response_id=_new_id("resp"), model=model, created_at=int(time.time())
        )
        self._sequence = 0
        self._started = False
        self._text_item: dict | None = None  # {"id", "index", "text"}
        # chat tool-call index → {"id", "index", "call_id", "name", "arguments"}
        self._calls: dict[int, dict] = {}
        self._items = 0

    def _event(self, kind: str, **fields) -> bytes:
        data = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return sse_event(kind, data)

    def _start(self) -> list[bytes]:
        if self._started:
            return []
        self._started = True
        return [
            self._event("response.created", response=dict(self._response)),
            self._event("response.in_progress", response=dict(self._response)),
        ]

    def _text_delta(self, text: str) -> list[bytes]:
        out = []
        if self._text_item is None:
            self._text_item = {"id": _new_id("msg"), "index": self._items, "text": ""}
            self._items += 1
            item = _message_item(self._text_item["id"], "", "in_progress")
            item["content"] = []
            out.append(
                self._event("response.output_item.added", output_index=self._text_item["index"], item=item)
            )
            out.append(
                self._event(
                    "response.content_part.added",
                    item_id=self._text_item["id"],
                    output_index=self._text_item["index"],
                    content_index=0,
                    part={"type": "output_text", "text": "", "annotations": [], "logprobs": []},
                )
            )
        self._text_item["text"] += text
        out.append(
            self._event(
                "response.output_text.delta",
                item_id=self._text_item["id"],
                output_index=self._text_item["index"],
                content_index=0,
                delta=text,
                logprobs=[],
            )
        )
        return out

    def _call_delta(self, call: dict) -> list[bytes]:
        out = []
        position = call.get("index", 0)
        function = call.get("function") or {}
        state = self._calls.get(position)
        if state is None:
            state = {
                "id": _new_id("fc"),
                "index": self._items,
                "call_id": str(call.get("id") or _new_id("call")),
                "name": str(function.get("name") or ""),
                "arguments": "",
            }
            self._items += 1
            self._calls[position] = state
            item = _call_item(state["id"], state["call_id"], state["name"], "", "in_progress")
            out.append(self._event("response.output_item.added", output_index=state["index"], item=item))
        if function.get("arguments"):
            state["arguments"] += function["arguments"]
            out.append(
                self._event(
                    "response.function_call_arguments.delta",
                    item_id=state["id"],
                    output_index=state["index"],
                    delta=function["arguments"],
                )
            )
        return out

    def finish(self) -> list[bytes]:
        """Close every item and the response; ``response.failed`` if the provider never finished."""
        if self._done:
            return []
        self._done = True
        out = self._start()
        output: list[tuple[int, dict]] = []
        if self._text_item is not None:
            item_id, index, text = self._text_item["id"], self._text_item["index"], self._text_item["text"]
            part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
            out.append(
                self._event(
                    "response.output_text.done",
                    item_id=item_id,
                    output_index=index,
                    content_index=0,
                    text=text,
                    logprobs=[],
                )
            )
            out.append(
                self._event(
                    "response.content_part.done",
                    item_id=item_id,
                    output_index=index,
                    content_index=0,
                    part=part,
                )
            )
            item = _message_item(item_id, text, "completed")
            out.append(self._event("response.output_item.done", output_index=index, item=item))
            output.append((index, item))
        for state in self._calls.values():
            out.append(
                self._event(
                    "response.function_call_arguments.done",
                    item_id=state["id"],
                    output_index=state["index"],
                    name=state["name"],
                    arguments=state["arguments"],
                )
            )
            item = _call_item(state["id"], state["call_id"], state["name"], state["arguments"], "completed")
            out.append(self._event("response.output_item.done", output_index=state["index"], item=item))
            output.append((state["index"], item))
        response = dict(self._response)
        response["output"] = [item for _, item in sorted(output, key=lambda pair: pair[0])]
        if self._finish is None:
            response.update(
                status="failed",
                error={"code": "server_error", "message": "The provider's stream ended early."},
            )
            return out + [self._event("response.failed", response=response)]
        status, incomplete = _status(self._finish)
        response.update(status=status, incomplete_details=incomplete, usage=_usage(self._usage))
        kind = "response.completed" if status == "completed" else "response.incomplete"
        return out + [self._event(kind, response=response)]
