"""Customer API key format: ``<PROXY_KEY_PREFIX><40 random base62><6 base62 checksum>``.

The checksum lets us reject a malformed or mistyped key without touching the database.
"""

import hashlib
import hmac
import re
import secrets
import zlib

from django.conf import settings

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
BODY_LENGTH = 40
CHECKSUM_LENGTH = 6
DISPLAY_PREFIX_EXTRA = 4  # characters of the random body kept for display
_BODY_RE = re.compile(rf"^[0-9A-Za-z]{{{BODY_LENGTH + CHECKSUM_LENGTH}}}$")


def _base62(number: int, length: int) -> str:
    chars = []
    for _ in range(length):
        number, rem = divmod(number, 62)
        chars.append(BASE62[rem])
    return "".join(reversed(chars))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode()), CHECKSUM_LENGTH)


def api_key_generate() -> str:
    body = "".join(secrets.choice(BASE62) for _ in range(BODY_LENGTH))
    return f"{settings.PROXY_KEY_PREFIX}{body}{_checksum(body)}"


def api_key_is_well_formed(raw: str) -> bool:
    """Format and checksum check only; no database access."""
    prefix = settings.PROXY_KEY_PREFIX
    if not isinstance(raw, str) or not raw.startswith(prefix):
        return False
    rest = raw[len(prefix) :]
    if not _BODY_RE.match(rest):
        return False
    body, checksum = rest[:BODY_LENGTH], rest[BODY_LENGTH:]
    return hmac.compare_digest(_checksum(body), checksum)


def api_key_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def api_key_display_prefix(raw: str) -> str:
    return raw[: len(settings.PROXY_KEY_PREFIX) + DISPLAY_PREFIX_EXTRA]
