"""The built-in ``sandbox`` provider: in-process, deterministic, offline.

Used only when ``SANDBOX_PROVIDER_ENABLED`` (DEBUG) is on and no provider key is configured, so
``make run`` serves the whole flow without network. It reports realistic usage (~4 characters
per token, like the OpenAI tokenizer on English) so quotas, rollups and dashboards move.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import struct
import time

from django.conf import settings

PROVIDER = "sandbox"
MODEL = "sandbox-chat"


def sandbox_enabled() -> bool:
    return bool(settings.SANDBOX_PROVIDER_ENABLED)


def prompt_tokens_count(messages: list) -> int:
    chars = 0
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            chars += sum(len(str(part.get("text", ""))) for part in content if isinstance(part, dict))
    return max(1, chars // 4 + 4 * len(messages))


def _reply_text(messages: list, max_tokens: int) -> str:
    last = ""
    for message in reversed(messages):
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            last = message["content"]
            break
    digest = hashlib.sha256(last.encode()).hexdigest()[:8]
    words = f"Sandbox reply {digest}: you said “{last[:80]}”. This answer is generated offline.".split()
    return " ".join(words[: max(1, max_tokens)])


def _completion_tokens(text: str, max_tokens: int) -> int:
    return max(1, min(max_tokens, len(text) // 4 + 1))


def schema_sample(schema, *, depth: int = 0):
    """A value that satisfies a (simple) JSON schema: the first enum or const, the minimum, or
    a plain value of the type; objects get their required properties (all, if none are listed)."""
    if not isinstance(schema, dict) or depth > 8:
        return None
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return schema_sample(schema[key][0], depth=depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties") or {}
        names = schema.get("required") or list(properties)
        return {name: schema_sample(properties.get(name, {}), depth=depth + 1) for name in names}
    if kind == "array":
        return [schema_sample(schema.get("items") or {}, depth=depth + 1)] * max(1, schema.get("minItems", 1))
    if kind == "integer":
        return int(schema.get("minimum", 1))
    if kind == "number":
        return float(schema.get("minimum", 1.0))
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return "sandbox"


def _tool_to_call(payload: dict) -> dict | None:
    """The tool the sandbox calls: the one ``tool_choice`` names, else the first, unless the
    caller said ``none`` or the last message already answers a call (then it replies)."""
    tools = [t for t in payload.get("tools") or [] if isinstance(t, dict) and t.get("type") == "function"]
    choice = payload.get("tool_choice")
    messages = payload.get("messages") or []
    last_role = messages[-1].get("role") if messages and isinstance(messages[-1], dict) else None
    if not tools or choice == "none" or last_role == "tool":
        return None
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        tools = [t for t in tools if (t.get("function") or {}).get("name") == name] or tools
    return tools[0].get("function") or {}


def _json_reply(payload: dict, text: str) -> str | None:
    """JSON mode: an object matching the schema, or ``{"reply": …}`` for ``json_object``."""
    response_format = payload.get("response_format")
    if not isinstance(response_format, dict):
        return None
    if response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema") or {"type": "object"}
        return json.dumps(schema_sample(schema))
    if response_format.get("type") == "json_object":
        return json.dumps({"reply": text})
    return None


def sandbox_chat(*, payload: dict, model: str) -> dict:
    """A deterministic answer: a tool call matching the declared schema when tools are offered,
    JSON when JSON mode is asked, else a short text echoing the last message."""
    messages = payload.get("messages") or []
    max_tokens = int(payload.get("max_tokens") or payload.get("max_completion_tokens") or 256)
    digest = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()
    text = _reply_text(messages, max_tokens)
    function = _tool_to_call(payload)
    if function is not None:
        arguments = json.dumps(schema_sample(function.get("parameters") or {"type": "object"}))
        call = {"id": "call_sandbox_" + digest[:12], "type": "function"}
        call["function"] = {"name": function.get("name", ""), "arguments": arguments}
        message = {"role": "assistant", "content": None, "tool_calls": [call]}
        finish, said = "tool_calls", arguments
    else:
        text = _json_reply(payload, text) or text
        message, finish, said = {"role": "assistant", "content": text}, "stop", text
    prompt = prompt_tokens_count(messages)
    completion = _completion_tokens(said, max(max_tokens, 1))
    return {
        "id": "chatcmpl-sandbox-" + digest[:16],
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


def sandbox_stream_chunks(*, payload: dict, model: str) -> list[bytes]:
    """The SSE byte chunks of a streamed sandbox answer (usage chunk last, then [DONE])."""
    body = sandbox_chat(payload=payload, model=model)
    choice = body["choices"][0]
    base = {"id": body["id"], "object": "chat.completion.chunk", "created": body["created"], "model": model}
    deltas: list[dict] = []
    if choice["message"].get("tool_calls"):
        calls = [{"index": i, **call} for i, call in enumerate(choice["message"]["tool_calls"])]
        deltas.append({"role": "assistant", "content": None, "tool_calls": calls})
    else:
        words = choice["message"]["content"].split(" ")
        deltas += [{"content": word if i == 0 else " " + word} for i, word in enumerate(words)]
        deltas[0]["role"] = "assistant"
    chunks = []
    for delta in deltas:
        event = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
        chunks.append(b"data: " + json.dumps(event).encode() + b"\n\n")
    final = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]}]}
    chunks.append(b"data: " + json.dumps(final).encode() + b"\n\n")
    usage = {**base, "choices": [], "usage": body["usage"]}
    chunks.append(b"data: " + json.dumps(usage).encode() + b"\n\n")
    chunks.append(b"data: [DONE]\n\n")
    return chunks


def sandbox_email_send(*, to: str, subject: str) -> str:
    return "msg_sandbox_" + hashlib.sha256(f"{to}|{subject}|{time.time_ns()}".encode()).hexdigest()[:16]


# --- Embeddings ----------------------------------------------------------------------------------

EMBED_MODEL = "sandbox-embed"
# Each model's own default width, so a client sized for the real model gets vectors that fit.
EMBEDDING_DIMENSIONS = {
    "sandbox-embed": 256,
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
    "mistral-embed": 1024,
    "gemini-embedding-001": 3072,
}
DEFAULT_EMBEDDING_DIMENSIONS = 1536


def sandbox_model_for(requested_model: str) -> str:
    """The model name the sandbox serves a call as: an embedding model as itself (its vectors
    have that model's width), any chat model as ``sandbox-chat``."""
    return requested_model if requested_model in EMBEDDING_DIMENSIONS else MODEL


def _unit_vector(seed: bytes, dimensions: int) -> list[float]:
    """A deterministic unit vector: the same text always lands on the same point."""
    digest = hashlib.shake_256(seed).digest(4 * dimensions)
    raw = [value / 2_147_483_648 - 1.0 for value in struct.unpack(f"<{dimensions}I", digest)]
    norm = math.sqrt(sum(value * value for value in raw)) or 1.0
    # Rounded through float32, as the providers' vectors are, so base64 and float agree.
    return list(struct.unpack(f"<{dimensions}f", struct.pack(f"<{dimensions}f", *(v / norm for v in raw))))


def sandbox_embeddings(*, payload: dict, model: str) -> dict:
    """OpenAI's embeddings answer: one unit vector per input (a hash of its text), ``dimensions``
    honoured (else the model's own width), ~4 characters per token of usage, and little-endian
    float32 base64 when ``encoding_format`` asks for it."""
    inputs = payload.get("input")
    if isinstance(inputs, str) or (isinstance(inputs, list) and inputs and isinstance(inputs[0], int)):
        inputs = [inputs]
    dimensions = payload.get("dimensions") or EMBEDDING_DIMENSIONS.get(
        model.rsplit("/", 1)[-1], DEFAULT_EMBEDDING_DIMENSIONS
    )
    data, tokens = [], 0
    for index, item in enumerate(inputs or []):
        if isinstance(item, str):
            seed = item.encode("utf-8", "surrogatepass")
            tokens += max(1, len(item) // 4)
        else:  # token ids: one token each
            seed = json.dumps(item).encode()
            tokens += len(item)
        vector = _unit_vector(seed, dimensions)
        embedding = vector
        if payload.get("encoding_format") == "base64":
            embedding = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    return {
        "object": "list",
        "data": data,
        "model": EMBED_MODEL,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
