"""Which provider serves a call: the plan's weighted mix, then the fallback chain.

The choice itself is pure (weights + an injectable ``random.Random``) so it is unit-tested
deterministically; provider health (consecutive failures, cooldown) lives in the shared cache
so every worker skips a provider that is down.
"""

from __future__ import annotations

import random
import threading

from django.conf import settings
from django.core.cache import cache

from core.services import cache_counter_incr

_rng: random.Random | None = None
_rng_lock = threading.Lock()


def router_rng() -> random.Random:
    """The process-wide RNG, seeded from ``PROXY_ROUTER_SEED`` (None = OS entropy)."""
    global _rng
    if _rng is None:
        with _rng_lock:
            if _rng is None:
                _rng = random.Random(settings.PROXY_ROUTER_SEED)
    return _rng


def router_reseed(seed: int | None = None) -> None:
    global _rng
    _rng = random.Random(seed if seed is not None else settings.PROXY_ROUTER_SEED)


def provider_pick(*, weights: dict[str, int], rng: random.Random) -> str | None:
    """One provider drawn with probability weight / sum(weights). Zero/negative weights never win."""
    entries = sorted((p, int(w)) for p, w in weights.items() if int(w) > 0)
    total = sum(w for _, w in entries)
    if total <= 0:
        return None
    ticket = rng.randrange(total)
    for provider, weight in entries:
        if ticket < weight:
            return provider
        ticket -= weight
    return entries[-1][0]  # unreachable; keeps type checkers calm


def provider_chain(
    *, weights: dict[str, int], fallback_provider: str = "", rng: random.Random | None = None
) -> list[str]:
    """The order in which providers are tried: the weighted pick, the other weighted providers
    by decreasing weight, then the plan's fallback provider. No duplicates."""
    rng = rng or router_rng()
    chain: list[str] = []
    first = provider_pick(weights=weights, rng=rng)
    if first:
        chain.append(first)
    for provider, _ in sorted(weights.items(), key=lambda item: (-int(item[1]), item[0])):
        if int(weights[provider]) > 0 and provider not in chain:
            chain.append(provider)
    if fallback_provider and fallback_provider not in chain:
        chain.append(fallback_provider)
    return chain


# --- Health: N consecutive failures → cooldown, shared by every worker ----------------------


def failures_key(provider: str) -> str:
    return f"proxy:health:fails:{provider}"


def cooldown_key(provider: str) -> str:
    return f"proxy:health:cooldown:{provider}"


def providers_cooling_get(*, providers: list[str]) -> set[str]:
    """Providers currently in cooldown (one cache round trip)."""
    if not providers:
        return set()
    found = cache.get_many([cooldown_key(p) for p in providers])
    return {p for p in providers if cooldown_key(p) in found}


def chain_without_cooling(*, chain: list[str], cooling: frozenset[str] | None = None) -> list[str]:
    """Skip providers in cooldown; if every one is cooling, try them all rather than fail unseen.

    ``cooling``: the providers in cooldown when already read (the fast lane's gate reads them).
    """
    if cooling is None:
        cooling = providers_cooling_get(providers=chain)
    healthy = [p for p in chain if p not in cooling]
    return healthy or chain


def provider_failure_record(*, provider: str) -> bool:
    """Count a failure; returns True when it puts the provider into cooldown."""
    key = failures_key(provider)
    count = cache_counter_incr(key, ttl=settings.PROXY_COOLDOWN_SECONDS * 10)
    if count >= settings.PROXY_COOLDOWN_FAILURES:
        cache.set(cooldown_key(provider), 1, settings.PROXY_COOLDOWN_SECONDS)
        cache.delete(key)
        return True
    return False


def provider_success_record(*, provider: str) -> None:
    """A success ends a run of failures ("N failures in a row")."""
    cache.delete(failures_key(provider))
