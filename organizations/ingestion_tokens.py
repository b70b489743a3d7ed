"""Per-organization ingestion token format: ``vaultai_org_<43 url-safe characters>`` (256 bits).

Stored as a SHA-256 hex digest, like customer API keys: the token is random and long, so an
unkeyed hash is enough, and it survives a SECRET_KEY rotation. The prefix lets the ingestion
API skip the database for anything that cannot be an organization's token.
"""

import hashlib
import secrets

PREFIX = "vaultai_org_"
DISPLAY_EXTRA = 4  # characters of the random part kept for display


def ingestion_token_generate() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def ingestion_token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def ingestion_token_looks_valid(raw: str) -> bool:
    return raw.startswith(PREFIX) and len(raw) == len(PREFIX) + 43


def ingestion_token_display_prefix(raw: str) -> str:
    return raw[: len(PREFIX) + DISPLAY_EXTRA]
