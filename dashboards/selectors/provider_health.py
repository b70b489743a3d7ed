"""Provider health for the operator: last success, last failure (when, what), failures in a row
and cooldown (until when), per provider, beside its global key.

Read from what the proxy already records: the usage log (a call answered by the provider, or
one that failed because of it) over the last ``HEALTH_WINDOW``, and the router's counters in the
shared cache (``proxy.router``: the run of failures and the cooldown flag with its TTL). A call
that failed over to another provider and was served there is recorded under the provider that
served it; the failed attempt shows only in the failure counter and the cooldown.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.core.cache import cache
from django.db.models import Max, Q
from django.utils import timezone

from accounts.models import ProviderCredential
from accounts.providers import PROVIDERS
from proxy.models import UsageEvent
from proxy.router import cooldown_key, failures_key, providers_cooling_get

HEALTH_WINDOW = timedelta(hours=24)

# A failure of the provider itself, as the call path records it (not the customer's own errors:
# quota, credits, a bad request relayed as a 4xx).
FAILURE_KINDS = {
    "upstream_error": "provider failed",
    "upstream_timeout": "timeout",
    "upstream_rate_limited": "rate limited",
    "provider_error": "key rejected",  # only with 401/403 (below): the provider refused our key
}
_FAILURE = Q(error_code__in=["upstream_error", "upstream_timeout", "upstream_rate_limited"]) | Q(
    error_code="provider_error", status_code__in=[401, 403]
)
_SUCCESS = Q(status_code=200, error_code="")


@dataclass(frozen=True)
class ProviderHealth:
    provider: str
    name: str
    global_key_masked: str | None  # None: no global key in the database
    global_key_id: int | None
    last_success_at: datetime | None
    last_failure_at: datetime | None
    last_failure_kind: str  # e.g. "timeout (504)", "" when no failure in the window
    failures_in_a_row: int  # the router's current run (cooldown at PROXY_COOLDOWN_FAILURES)
    cooldown_until: datetime | None  # None: not in cooldown

    @property
    def in_cooldown(self) -> bool:
        return self.cooldown_until is not None

    @property
    def status(self) -> str:
        """``cooldown``, ``failing`` (last call failed), ``ok``, or ``idle`` (no call in the window)."""
        if self.in_cooldown:
            return "cooldown"
        if self.last_failure_at and (not self.last_success_at or self.last_failure_at > self.last_success_at):
            return "failing"
        return "ok" if self.last_success_at else "idle"


def _last_calls(*, providers: list[str], since: datetime) -> dict[str, dict]:
    """provider -> last success, last failure and what it was, over the window: two queries,
    each one range scan of ``usage_created`` (no per-row subquery: a correlated one landed in
    the GROUP BY and ran once per event, 4 s at 1 M events)."""
    window = UsageEvent.objects.filter(created_at__gte=since, provider__in=providers)
    rows = {
        row["provider"]: row
        for row in window.values("provider").annotate(
            success=Max("created_at", filter=_SUCCESS), failure=Max("created_at", filter=_FAILURE)
        )
    }
    failures = (
        window.filter(_FAILURE)
        .order_by("provider", "-created_at")
        .distinct("provider")
        .values("provider", "error_code", "status_code")
    )
    for failure in failures:
        row = rows.get(failure["provider"])
        if row is not None:
            row["failure_code"], row["failure_status"] = failure["error_code"], failure["status_code"]
    return rows


def _failure_kind(row: dict) -> str:
    if not row.get("failure"):
        return ""
    return f"{FAILURE_KINDS.get(row['failure_code'], row['failure_code'])} ({row['failure_status']})"


def _cooldowns_until(*, providers: list[str], now: datetime) -> dict[str, datetime]:
    """provider -> end of its cooldown, from the flag's remaining TTL in the shared cache."""
    result = {}
    for provider in sorted(providers_cooling_get(providers=providers)):
        seconds = cache.ttl(cooldown_key(provider))
        if seconds:  # None (no expiry) or 0 (gone since): shown as cooling until now
            result[provider] = now + timedelta(seconds=seconds)
        else:
            result[provider] = now
    return result


def provider_health_list(*, now: datetime | None = None) -> list[ProviderHealth]:
    """One row per provider of the registry, in registry order (3 queries, 2–3 cache trips)."""
    now = now or timezone.now()
    providers = list(PROVIDERS)
    last = _last_calls(providers=providers, since=now - HEALTH_WINDOW)
    cooling = _cooldowns_until(providers=providers, now=now)
    runs = cache.get_many([failures_key(p) for p in providers])
    keys = {
        provider: (pk, masked)
        for pk, provider, masked in ProviderCredential.objects.filter(
            scope=ProviderCredential.Scope.GLOBAL
        ).values_list("pk", "provider", "masked")
    }
    rows = []
    for provider in providers:
        row = last.get(provider, {})
        key_id, masked = keys.get(provider, (None, None))
        rows.append(
            ProviderHealth(
                provider=provider,
                name=PROVIDERS[provider].name,
                global_key_masked=masked,
                global_key_id=key_id,
                last_success_at=row.get("success"),
                last_failure_at=row.get("failure"),
                last_failure_kind=_failure_kind(row),
                failures_in_a_row=int(runs.get(failures_key(provider)) or 0),
                cooldown_until=cooling.get(provider),
            )
        )
    return rows
