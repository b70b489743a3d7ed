"""Per-key, per-minute rate limit (``Plan.rate_limit_per_minute``) in the shared cache.

A fixed one-minute window counted with one atomic INCR, so the limit holds across processes
and machines. (django-ratelimit's core uses the same cache INCR scheme; this module calls the
cache directly to get the counter back for the X-RateLimit-* headers in the same round trip.)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings

from core.exceptions import ApiError, retry_after_seconds
from core.services import cache_counter_incr

WINDOW_SECONDS = 60


@dataclass(frozen=True)
class RateLimitState:
    limit: int
    remaining: int
    reset_at: int  # epoch seconds when the window ends
    exceeded: bool
    count: int = 0  # this request's place in its window

    @property
    def first_refusal(self) -> bool:
        """The window's first refused request (exactly one per key and minute, across processes)."""
        return self.exceeded and self.count == self.limit + 1

    def headers(self, *, now: float | None = None) -> dict[str, str]:
        """Ours (reset as an epoch second) and OpenAI's names (reset as a duration, "27s")."""
        now = time.time() if now is None else now
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_at),
            "x-ratelimit-limit-requests": str(self.limit),
            "x-ratelimit-remaining-requests": str(self.remaining),
            "x-ratelimit-reset-requests": f"{retry_after_seconds(self.reset_at - now)}s",
        }


def token_limit_headers(block: dict | None, *, now: datetime | None = None) -> dict[str, str]:
    """OpenAI's ``x-ratelimit-*-tokens`` trio from a quota block the call already computed
    (``llm_tokens``: limit, remaining, resetDate); nothing when the plan has no token limit."""
    if not isinstance(block, dict) or block.get("limit") is None or block.get("remaining") is None:
        return {}
    headers = {
        "x-ratelimit-limit-tokens": str(block["limit"]),
        "x-ratelimit-remaining-tokens": str(block["remaining"]),
    }
    reset = block.get("resetDate")
    if isinstance(reset, str):
        try:
            reset_at = datetime.fromisoformat(reset)
        except ValueError:
            return headers
        now = now or datetime.now(UTC)
        headers["x-ratelimit-reset-tokens"] = f"{retry_after_seconds((reset_at - now).total_seconds())}s"
    return headers


def rate_limit_window(*, key_id: int, now: float | None = None) -> tuple[str, int]:
    """(counter key, epoch second the window ends) of the current minute for ``key_id``."""
    now = time.time() if now is None else now
    window = int(now // WINDOW_SECONDS)
    return f"proxy:rl:{key_id}:{window}", (window + 1) * WINDOW_SECONDS


def rate_limit_state(*, limit: int, count: int, reset_at: int) -> RateLimitState:
    """The state after this request was counted as the ``count``-th of its window."""
    if not settings.RATELIMIT_ENABLE or limit <= 0:
        return RateLimitState(limit=limit, remaining=limit, reset_at=reset_at, exceeded=False)
    return RateLimitState(
        limit=limit, remaining=max(0, limit - count), reset_at=reset_at, exceeded=count > limit, count=count
    )


def rate_limit_hit(*, key_id: int, limit: int, now: float | None = None) -> RateLimitState:
    """Count one request of ``key_id`` in the current minute and say whether it is over ``limit``."""
    key, reset_at = rate_limit_window(key_id=key_id, now=now)
    applies = settings.RATELIMIT_ENABLE and limit > 0
    count = cache_counter_incr(key, ttl=WINDOW_SECONDS + 5) if applies else 0
    return rate_limit_state(limit=limit, count=count, reset_at=reset_at)


def rate_limit_error(state: RateLimitState, *, now: float | None = None) -> ApiError:
    now = time.time() if now is None else now
    retry_after = retry_after_seconds(state.reset_at - now)
    return ApiError(
        "rate_limit_exceeded",
        f"Rate limit of {state.limit} requests per minute exceeded for this key.",
        headers={"Retry-After": str(retry_after), **state.headers(now=now)},
        limit=state.limit,
    )
