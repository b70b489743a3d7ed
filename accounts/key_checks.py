"""Checking a global provider key with the provider before it is saved.

A wrong operator key turns every call of every workspace without a key of its own into an
error, so the doors that save a global key (admin, operator API, profile page) ask the provider
first and refuse a key it rejects. Asking is an upstream call, which belongs to ``proxy``;
``accounts`` may not import it, so ``proxy`` registers its check here in ``AppConfig.ready()``
(the same registry pattern billing uses for checkout handlers).

A check result carries the provider's answer, secret-scrubbed, and never the key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from core.exceptions import ApiError

from .providers import provider_get
from .services import provider_secret_clean


@dataclass(frozen=True)
class ProviderKeyCheck:
    provider: str
    outcome: str  # one of the OUTCOME_* below
    message: str  # the provider's answer (or why nothing was asked), secret-scrubbed
    status: int | None = None  # the provider's HTTP status, when it answered
    kind: str = ""  # for OUTCOME_UNAVAILABLE: connect | timeout | status | redirect | garbage | …

    @property
    def ok(self) -> bool:
        return self.outcome == OUTCOME_OK

    def as_dict(self) -> dict:
        return asdict(self)


OUTCOME_OK = "ok"  # the provider accepted the key
OUTCOME_REJECTED = "rejected"  # the provider refused the key (a 4xx: 401/403, Gemini's 400)
OUTCOME_UNAVAILABLE = "unavailable"  # no usable answer: down, timeout, 5xx, 429, not reachable
OUTCOME_SKIPPED = "skipped"  # nothing was asked (no check for this provider, or none installed)

ProviderKeyChecker = Callable[..., ProviderKeyCheck]  # checker(*, provider=, secret=)

_checker: ProviderKeyChecker | None = None


def provider_key_checker_register(checker: ProviderKeyChecker) -> None:
    """Install the check (``proxy`` does, in its ``ready()``); the last registration wins."""
    global _checker
    _checker = checker


def provider_key_check(*, provider: str, secret: str) -> ProviderKeyCheck:
    """Ask the provider whether ``secret`` works. Runs a network call: never inside a
    transaction or a lock."""
    if _checker is None:
        return ProviderKeyCheck(
            provider=provider, outcome=OUTCOME_SKIPPED, message="No provider-key check is installed."
        )
    return _checker(provider=provider, secret=secret)


def provider_key_check_enforce(check: ProviderKeyCheck, *, allow_unavailable: bool = False) -> None:
    """Refuse to save a key the check did not vouch for.

    Rejected by the provider: always 400 ``invalid_provider_key`` with the provider's answer.
    Provider unreachable or failing: 502 ``upstream_error`` (retryable) unless the operator
    explicitly saves anyway (``allow_unavailable``). Skipped checks pass.
    """
    if check.outcome == OUTCOME_REJECTED:
        raise ApiError(
            "invalid_provider_key",
            f"{check.provider} rejected the key ({check.status}): {check.message}",
            param="key",
            status_code=400,
            provider=check.provider,
            provider_status=check.status,
        )
    if check.outcome == OUTCOME_UNAVAILABLE and not allow_unavailable:
        raise ApiError(
            "upstream_error",
            f"The key could not be checked: {check.message} Retry later, or save it anyway "
            "(the admin's checkbox, or skip_check=1 on the API) if you know the provider is down.",
            param="key",
            provider=check.provider,
            provider_status=check.status,
        )


def provider_key_verify(
    *, provider: str, secret: str, skip: bool = False, allow_unavailable: bool = False
) -> ProviderKeyCheck:
    """The rule every door that saves a global key applies first: a known provider (404), a
    well-formed secret (400), then the provider's check, enforced. ``skip`` asks nothing (the
    operator API's ``skip_check``). Returns the check, to show the provider's answer."""
    if provider_get(provider) is None:
        raise ApiError("not_found", f"Unknown provider '{provider}'.", param="provider")
    secret = provider_secret_clean(secret)
    if skip:
        return ProviderKeyCheck(provider=provider, outcome=OUTCOME_SKIPPED, message="Saved without a check.")
    check = provider_key_check(provider=provider, secret=secret)
    provider_key_check_enforce(check, allow_unavailable=allow_unavailable)
    return check
