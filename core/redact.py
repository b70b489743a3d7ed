"""One redaction for every text relayed from a provider: no secret of ours reaches a client,
a log line or a stored event through a provider's error message.

Removed: every provider secret this process has used (registered by ``secret_remember`` when a
key is resolved), and any key that starts with one of them (providers echo a key's first
characters), the secret of the call at hand, and anything shaped like a bearer token or a
provider API key.
"""

from __future__ import annotations

import re
import threading

REDACTED = "[redacted]"
_SHAPES = re.compile(
    r"(?i)\b(?:bearer|basic|token)\s+[A-Za-z0-9._~+/=*-]{6,}"
    r"|\bsk[-_][A-Za-z0-9._*-]{6,}"  # OpenAI, DeepSeek, Anthropic (sk-ant-), OpenRouter (sk-or-), ours
    r"|\b(?:gsk|xai|pk|rk|whsec|test)_[A-Za-z0-9_*-]{8,}"
    r"|\bAIza[A-Za-z0-9_*-]{20,}"  # Google
    r"|\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9._-]+"  # JWTs
)
_MAX_REMEMBERED = 10_000
_PREFIX_CHARS = 8

_remembered: set[str] = set()
_pattern: re.Pattern | None = None
_lock = threading.Lock()


def secret_remember(secret: str) -> None:
    """Register a provider secret this process sends, so relayed text can never carry it."""
    global _pattern
    if not secret or len(secret) < _PREFIX_CHARS or secret in _remembered:
        return
    with _lock:
        if len(_remembered) >= _MAX_REMEMBERED:
            _remembered.clear()
        _remembered.add(secret)
        _pattern = None


def _known_pattern() -> re.Pattern | None:
    global _pattern
    pattern = _pattern
    if pattern is None and _remembered:
        with _lock:
            prefixes = sorted({re.escape(s[:_PREFIX_CHARS]) for s in _remembered}, key=len, reverse=True)
            pattern = _pattern = re.compile(f"(?:{'|'.join(prefixes)})[A-Za-z0-9._~+/=*-]*")
    return pattern


def secrets_redact(text: str, *, extra: tuple[str, ...] = ()) -> str:
    """``text`` with every known secret, ``extra`` secret and token-shaped string removed."""
    if not text:
        return text
    for secret in extra:
        if secret:
            secret_remember(secret)
            text = text.replace(secret, REDACTED)
    pattern = _known_pattern()
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    return _SHAPES.sub(REDACTED, text)
