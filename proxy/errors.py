"""How a provider's refusal reaches the client, keeping its meaning.

A provider's 4xx is relayed with its ``code``, ``param`` and message (already secret-scrubbed
by ``proxy.upstreams``) plus ``provider``: an SDK's ``NotFoundError`` or a ``param`` a client
checks still mean what the provider meant. When every provider failed, the last failure
decides: a 429 answers ``upstream_rate_limited`` with the provider's ``Retry-After`` rounded
up (retryable), a timeout ``upstream_timeout``, anything else ``upstream_error``.
"""

from __future__ import annotations

from core.exceptions import ApiError, retry_after_seconds

from .upstreams import UpstreamClientError, UpstreamFailure


def upstream_client_error(exc: UpstreamClientError, *, provider: str) -> ApiError:
    """The provider's 4xx as our error: its status, code, param and type, and who said it."""
    error = ApiError(
        exc.code or "invalid_request",
        exc.message,
        param=exc.param,
        status_code=exc.status,
        provider=provider,
    )
    if exc.error_type:
        error.error_type = exc.error_type
    return error


def chain_exhausted_error(*, last_failure: UpstreamFailure | None, budget_fallback: bool) -> ApiError:
    """The answer when no provider of the chain served the call."""
    if last_failure is not None:
        if last_failure.is_timeout:
            return ApiError("upstream_timeout", "Every provider timed out for this request.")
        if last_failure.is_rate_limited:
            headers = {}
            if last_failure.retry_after is not None:
                headers["Retry-After"] = str(retry_after_seconds(last_failure.retry_after))
            return ApiError(
                "upstream_rate_limited",
                "Every provider that can serve this request is rate-limiting it; retry later.",
                headers=headers,
            )
        return ApiError("upstream_error", "Every provider failed for this request.")
    if budget_fallback:
        return ApiError("no_provider_available", "Today's provider budget is exhausted; try again later.")
    return ApiError("no_provider_available", "No provider is available for this request right now.")
