"""Standard Webhooks signatures (https://www.standardwebhooks.com): what a receiver verifies.

``webhook-signature`` is ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`` keyed with the
bytes of the secret (base64 after ``whsec_``); during a rotation's overlap both secrets sign,
space-separated, so a receiver holding either verifies.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24


def webhook_secret_generate() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _key(secret: str) -> bytes:
    """The HMAC key; a value that is not ours (a wrong decryption key yields the ciphertext)
    is refused rather than used."""
    if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX):
        raise ValueError("not a webhook secret (wrong encryption key?)")
    return base64.b64decode(secret[len(SECRET_PREFIX) :])


def signature(*, secret: str, msg_id: str, timestamp: int, body: str) -> str:
    digest = hmac.new(_key(secret), f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_header(*, secrets_: list[str], msg_id: str, timestamp: int, body: str) -> str:
    return " ".join(signature(secret=s, msg_id=msg_id, timestamp=timestamp, body=body) for s in secrets_)


def payload_body(*, event) -> str:
    """The request body of ``event`` (the same bytes at every attempt)."""
    payload = {
        "id": event.event_id,
        "type": event.type,
        "timestamp": event.created_at.isoformat().replace("+00:00", "Z"),
        "workspace_id": event.workspace_id,
        "data": event.data,
    }
    return json.dumps(payload, separators=(",", ":"), sort_keys=True, default=str)
