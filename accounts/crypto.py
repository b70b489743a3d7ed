"""Fingerprints and masking for provider secrets (the encryption itself is the field's).

Placeholder completed by the accounts work: ``secret_fingerprint``, ``secret_mask``,
``crypto_self_test``.
"""

import hashlib
import hmac

from django.conf import settings


def secret_fingerprint(secret: str) -> str:
    key = hashlib.sha256(("tollgate-fingerprint:" + settings.SECRET_KEY).encode()).digest()
    return hmac.new(key, secret.encode(), hashlib.sha256).hexdigest()


def secret_mask(secret: str) -> str:
    if len(secret) <= 8:
        return "…" + secret[-2:] if len(secret) > 2 else "…"
    return f"{secret[:5]}…{secret[-2:]}"


def crypto_self_test() -> str | None:
    return None
