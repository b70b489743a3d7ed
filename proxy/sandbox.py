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


def sandbox_chat(*, payload: dict, model: str) -> dict:
    messages = payload.get("messages") or []
    max_tokens = int(payload.get("max_tokens") or 256)
    text = _reply_text(messages, max_tokens)
    prompt = prompt_tokens_count(messages)
    completion = _completion_tokens(text, max_tokens)
    return {
        "id": "chatcmpl-sandbox-" + hashlib.sha256(json.dumps(messages).encode()).hexdigest()[:16],
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


def sandbox_stream_chunks(*, payload: dict, model: str) -> list[bytes]:
    """The SSE byte chunks of a streamed sandbox answer (usage chunk last, then [DONE])."""
    body = sandbox_chat(payload=payload, model=model)
    text = body["choices"][0]["message"]["content"]
    base = {"id": body["id"], "object": "chat.completion.chunk", "created": body["created"], "model": model}
    chunks = []
    words = text.split(" ")
    for index, word in enumerate(words):
        delta = {"content": word if index == 0 else " " + word}
        if index == 0:
            delta["role"] = "assistant"
        event = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
        chunks.append(b"data: " + json.dumps(event).encode() + b"\n\n")
    final = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
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
