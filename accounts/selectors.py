"""Reads for accounts. User-owned reads take ``user=``."""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.core.cache import cache
from django.db.models import Q, QuerySet
from django.utils import timezone

from core.exceptions import ApiError, retry_after_seconds
from core.rawsql import model_rows_aget, model_rows_get

from .crypto import secret_mask, secret_verify
from .keys import api_key_hash, api_key_is_well_formed
from .models import ApiKey, KeyReveal, ProviderCredential
from .providers import PROVIDERS, provider_get

API_KEY_CACHE_SECONDS = 300
API_KEY_REVOKED_MARKER = "revoked"  # cached in place of an identity once a key is revoked
# Bumped on every provider-key change (accounts.signals): in-process credential caches key on it.
PROVIDER_KEYS_VERSION_KEY = "accounts:provider-keys-version"
PROVIDER_SOURCE_ENV = "env"
PROVIDER_SOURCE_NONE = "none"


@dataclass(frozen=True)
class ApiKeyIdentity:
    """What the hot path needs to know about a presented key (cached in the shared cache)."""

    key_id: int
    user_id: int
    expires_at: datetime | None


def api_key_cache_key(key_hash: str) -> str:
    return f"apikey:{key_hash}"


def api_key_identity_get(
    *, raw_key: str, now=None, client_address: str | None = None
) -> ApiKeyIdentity | None:
    """Resolve a presented key. Malformed keys are rejected with no query at all.

    Positive lookups are cached in the shared cache; revocation and rotation overwrite the
    entry after commit (a "revoked" marker, or the identity with its new expiry), so a revoked
    key fails on its very next use from any worker.

    ``client_address``: the caller's address; when the cache does not know the key and that
    address has used up its failed authentications this minute, raises the 429 instead of
    querying (``auth_failure_throttle_check``). A key the cache knows pays nothing for it.
    """
    if not api_key_is_well_formed(raw_key):
        return None
    now = now or timezone.now()
    key_hash = api_key_hash(raw_key)
    cache_key = api_key_cache_key(key_hash)
    identity = cache.get(cache_key)
    if identity == API_KEY_REVOKED_MARKER:
        return None
    if identity is None:
        if client_address is not None:
            auth_failure_throttle_check(address=client_address, now=now.timestamp())
        row = (
            ApiKey.objects.filter(key_hash=key_hash, revoked_at__isnull=True, user__is_active=True)
            .values_list("id", "user_id", "expires_at")
            .first()
        )
        if row is None:
            return None
        identity = ApiKeyIdentity(key_id=row[0], user_id=row[1], expires_at=row[2])
        # add, not set: a revocation that committed meanwhile has written its marker, which
        # must win over this possibly stale read.
        cache.add(cache_key, identity, API_KEY_CACHE_SECONDS)
    if identity.expires_at is not None and identity.expires_at <= now:
        return None
    return identity


# --- Failed API-key authentications per client address ------------------------------------------

AUTH_FAILURE_WINDOW_SECONDS = 60


def auth_failure_limit() -> int:
    """Refused keys allowed per address and minute; 0 when the limit is off."""
    if not settings.RATELIMIT_ENABLE:
        return 0
    return max(0, settings.AUTH_FAILURES_PER_MINUTE)


def auth_failure_window(*, address: str, now: float | None = None) -> tuple[str, int]:
    """(counter key, epoch second the window ends) of the current minute for ``address``."""
    now = time.time() if now is None else now
    window = int(now // AUTH_FAILURE_WINDOW_SECONDS)
    return f"auth-failures:{address}:{window}", (window + 1) * AUTH_FAILURE_WINDOW_SECONDS


def auth_failure_throttle_error(*, reset_at: int, now: float | None = None) -> ApiError:
    now = time.time() if now is None else now
    retry_after = retry_after_seconds(reset_at - now)
    return ApiError(
        "too_many_failed_authentications",
        f"Too many failed API-key authentications from this address. Retry after {retry_after} seconds.",
        headers={"Retry-After": str(retry_after)},
    )


def auth_failure_throttle_check(*, address: str, now: float | None = None) -> None:
    """Raise the 429 when ``address`` has used up this minute's failed authentications (one GET)."""
    limit = auth_failure_limit()
    if limit <= 0:
        return
    counter, reset_at = auth_failure_window(address=address, now=now)
    if (cache.get(counter) or 0) >= limit:
        raise auth_failure_throttle_error(reset_at=reset_at, now=now)


# --- Customer API keys (dashboard / account API) ----------------------------------------------


def api_key_list(*, user) -> QuerySet[ApiKey]:
    """The user's keys, newest first (revoked ones included, for the audit trail)."""
    return ApiKey.objects.filter(user=user).order_by("-created_at", "-id")


def api_key_get(*, user, key_id) -> ApiKey:
    """One of the user's keys; anyone else's id answers 404 exactly like a missing one."""
    key = ApiKey.objects.filter(user=user, pk=key_id).first()
    if key is None:
        raise ApiError("not_found", "No such API key.", param="id")
    return key


def api_key_active_count(*, user, now=None) -> int:
    now = now or timezone.now()
    return (
        ApiKey.objects.filter(user=user, revoked_at__isnull=True)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .count()
    )


def key_reveal_get(*, user, token: str) -> KeyReveal:
    """The reveal behind a URL token, if it belongs to ``user``; else 404."""
    reveal = (
        KeyReveal.objects.select_related("api_key")
        .filter(token_hash=hashlib.sha256(token.encode()).hexdigest(), api_key__user=user)
        .first()
    )
    if reveal is None:
        raise ApiError("not_found", "This link is not valid.")
    return reveal


# --- Provider keys: personal > global (database) > environment > none -------------------------


@dataclass(frozen=True)
class ProviderSecret:
    """A usable provider secret and where it came from. Never log or serialise ``secret``."""

    secret: str
    source: str  # "personal" | "global" | "env"

    def __repr__(self):  # keeps the secret out of tracebacks and debug output
        return f"ProviderSecret(source={self.source!r}, secret={secret_mask(self.secret)!r})"


def _provider_known(provider: str) -> None:
    if provider_get(provider) is None:
        raise ApiError("not_found", f"Unknown provider '{provider}'.", param="provider")


def _provider_scope_filter(user) -> Q:
    """The global row plus, for a signed-in user, their personal row."""
    scope_filter = Q(scope=ProviderCredential.Scope.GLOBAL)
    if user is not None and user.is_authenticated:
        scope_filter |= Q(scope=ProviderCredential.Scope.PERSONAL, user_id=user.pk)
    return scope_filter


def _provider_credentials_query(*, user, provider: str) -> tuple[str, list]:
    # The proxy asks this on every call: one precompiled statement, same rows as
    # ProviderCredential.objects.filter(_provider_scope_filter(user), provider=provider).
    if user is not None and user.is_authenticated:
        where = '"provider" = %s AND ("scope" = %s OR ("scope" = %s AND "user_id" = %s))'
        return where, [provider, ProviderCredential.Scope.GLOBAL, ProviderCredential.Scope.PERSONAL, user.pk]
    return '"provider" = %s AND "scope" = %s', [provider, ProviderCredential.Scope.GLOBAL]


def _personal_and_global(credentials) -> tuple:
    personal = global_ = None
    for credential in credentials:
        if credential.scope == ProviderCredential.Scope.PERSONAL:
            personal = credential
        else:
            global_ = credential
    return personal, global_


def _provider_credentials(*, user, provider: str):
    """(personal, global) rows for one provider in a single query."""
    where, params = _provider_credentials_query(user=user, provider=provider)
    return _personal_and_global(model_rows_get(ProviderCredential, where=where, params=params))


def provider_env_secret_get(*, provider: str) -> str:
    """``<PROVIDER>_API_KEY`` from the process environment ("" when unset)."""
    return os.environ.get(f"{provider.upper()}_API_KEY", "").strip()


def provider_credential_secret(credential: ProviderCredential) -> str:
    """The decrypted secret, verified against its fingerprint (never the ciphertext)."""
    return secret_verify(
        credential.secret,
        credential.fingerprint,
        provider=credential.provider,
        scope=credential.scope,
        credential_id=credential.pk,
    )


def provider_key_get(*, user, provider: str) -> ProviderSecret | None:
    """The secret to call ``provider`` with for ``user``: personal > global > env > None.

    One query at most (both rows at once); raises ProviderKeyDecryptError (503) when the
    stored secret does not verify, rather than falling back silently to another key.
    """
    _provider_known(provider)
    return _provider_secret_pick(*_provider_credentials(user=user, provider=provider), provider=provider)


async def provider_key_aget(*, user, provider: str) -> ProviderSecret | None:
    """``provider_key_get`` on the proxy's fast lane (async connection pool, no thread)."""
    _provider_known(provider)
    where, params = _provider_credentials_query(user=user, provider=provider)
    credentials = await model_rows_aget(ProviderCredential, where=where, params=params)
    return _provider_secret_pick(*_personal_and_global(credentials), provider=provider)


def _provider_secret_pick(personal, global_, *, provider: str) -> ProviderSecret | None:
    for credential in (personal, global_):
        if credential is not None:
            return ProviderSecret(secret=provider_credential_secret(credential), source=credential.scope)
    env_secret = provider_env_secret_get(provider=provider)
    if env_secret:
        return ProviderSecret(secret=env_secret, source=PROVIDER_SOURCE_ENV)
    return None


def provider_key_source_get(*, user, provider: str) -> str:
    """ "personal" | "global" | "env" | "none" — without decrypting anything."""
    _provider_known(provider)
    scopes = set(
        ProviderCredential.objects.filter(_provider_scope_filter(user), provider=provider).values_list(
            "scope", flat=True
        )
    )
    for scope in (ProviderCredential.Scope.PERSONAL, ProviderCredential.Scope.GLOBAL):
        if scope in scopes:
            return str(scope)
    if provider_env_secret_get(provider=provider):
        return PROVIDER_SOURCE_ENV
    return PROVIDER_SOURCE_NONE


@dataclass(frozen=True)
class ProviderKeyStatus:
    provider: str
    name: str
    personal_configured: bool
    personal_masked: str | None
    global_configured: bool
    global_masked: str | None  # only shown to staff
    source: str


def provider_key_status_list(*, user) -> list[ProviderKeyStatus]:
    """Every registered provider with the user's personal key (masked) and the effective source.

    One query for all providers; nothing is decrypted.
    """
    rows = ProviderCredential.objects.filter(_provider_scope_filter(user)).values_list(
        "provider", "scope", "masked"
    )
    personal: dict[str, str] = {}
    global_: dict[str, str] = {}
    for provider, scope, masked in rows:
        (personal if scope == ProviderCredential.Scope.PERSONAL else global_)[provider] = masked
    statuses = []
    for code, info in PROVIDERS.items():
        if code in personal:
            source = "personal"
        elif code in global_:
            source = "global"
        elif provider_env_secret_get(provider=code):
            source = PROVIDER_SOURCE_ENV
        else:
            source = PROVIDER_SOURCE_NONE
        statuses.append(
            ProviderKeyStatus(
                provider=code,
                name=info.name,
                personal_configured=code in personal,
                personal_masked=personal.get(code),
                global_configured=code in global_,
                global_masked=global_.get(code),
                source=source,
            )
        )
    return statuses
