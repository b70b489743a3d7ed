"""Reads for accounts. User-owned reads take ``user=``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.core.cache import cache
from django.utils import timezone

from .keys import api_key_hash, api_key_is_well_formed
from .models import ApiKey

API_KEY_CACHE_SECONDS = 300


@dataclass(frozen=True)
class ApiKeyIdentity:
    """What the hot path needs to know about a presented key (cached in the shared cache)."""

    key_id: int
    user_id: int
    expires_at: datetime | None


def api_key_cache_key(key_hash: str) -> str:
    return f"apikey:{key_hash}"


def api_key_identity_get(*, raw_key: str, now=None) -> ApiKeyIdentity | None:
    """Resolve a presented key. Malformed keys are rejected with no query at all.

    Positive lookups are cached in the shared cache; revocation deletes the entry, so a
    revoked key fails on its very next use from any worker.
    """
    if not api_key_is_well_formed(raw_key):
        return None
    now = now or timezone.now()
    key_hash = api_key_hash(raw_key)
    cache_key = api_key_cache_key(key_hash)
    identity = cache.get(cache_key)
    if identity is None:
        row = (
            ApiKey.objects.filter(key_hash=key_hash, revoked_at__isnull=True, user__is_active=True)
            .values_list("id", "user_id", "expires_at")
            .first()
        )
        if row is None:
            return None
        identity = ApiKeyIdentity(key_id=row[0], user_id=row[1], expires_at=row[2])
        cache.set(cache_key, identity, API_KEY_CACHE_SECONDS)
    if identity.expires_at is not None and identity.expires_at <= now:
        return None
    return identity
