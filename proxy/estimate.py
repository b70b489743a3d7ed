"""The most prompt tokens a chat request can cost, counted before anything is reserved.

Everything the provider bills as input is counted: messages, tools and functions, the response
format (a JSON schema is prompt text), tool choice, predictions. The rate is conservative on
purpose, because the reservation is what keeps the daily budget and the quotas exact:

- ASCII text: 1 token per 3 characters (English prose runs ~4, code and JSON ~3);
- other text: 1 token per 2 UTF-8 bytes (Cyrillic and Arabic: 1 per character; CJK: 1.5;
  emoji: 2), where a chars/4 count undercounts non-Latin scripts 3 to 4 times;
- each image part: ``IMAGE_TOKENS`` (the largest per-image charge of the providers we route
  to), whatever its URL or data;
- each message: 4 tokens of framing; object keys count as text.

A provider that reports more than this estimate still gets settled to what it reports; the
budget then records the overshoot (``proxy.budget``).
"""

from __future__ import annotations

IMAGE_TOKENS = 1600
MESSAGE_TOKENS = 4
IMAGE_PART_TYPES = frozenset({"image_url", "image", "input_image"})
# Request fields that are settings, not input text: never counted.
NOT_PROMPT = frozenset(
    {
        "model",
        "stream",
        "stream_options",
        "max_tokens",
        "max_completion_tokens",
        "n",
        "temperature",
        "top_p",
        "presence_penalty",
        "frequency_penalty",
        "seed",
        "user",
        "logprobs",
        "top_logprobs",
        "parallel_tool_calls",
        "store",
        "service_tier",
    }
)


def _text_tokens(ascii_chars: int, other_bytes: int) -> int:
    return -(-ascii_chars // 3) + -(-other_bytes // 2)


def prompt_tokens_estimate(payload: dict) -> int:
    """Upper estimate of the input tokens of ``payload`` (an OpenAI chat request body)."""
    ascii_chars = other_bytes = images = 0
    stack = [value for key, value in payload.items() if key not in NOT_PROMPT]
    stack.extend(key for key in payload if key not in NOT_PROMPT)
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if item.isascii():
                ascii_chars += len(item)
            else:
                encoded = len(item.encode("utf-8", "surrogatepass"))
                plain = len(item.encode("ascii", "ignore"))
                ascii_chars += plain
                other_bytes += encoded - plain
        elif isinstance(item, dict):
            if item.get("type") in IMAGE_PART_TYPES:
                images += 1
                continue
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif item is not None:
            ascii_chars += len(str(item))
    messages = payload.get("messages")
    framing = MESSAGE_TOKENS * len(messages) if isinstance(messages, list) else 0
    return max(1, _text_tokens(ascii_chars, other_bytes) + images * IMAGE_TOKENS + framing)
