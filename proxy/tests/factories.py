"""Test data for the proxy: plans configured per test, and users, keys and provider keys made by
the accounts factories."""

from __future__ import annotations

import uuid

from django.core.cache import cache

from accounts.models import ProviderCredential, User
from accounts.tests.factories import UserFactory, api_key_for, global_key_for, personal_key_for
from billing.models import Plan, PlanQuota
from billing.selectors import CATALOG_VERSION_KEY

__all__ = ("UserFactory", "global_key_set", "key_for", "personal_key_set", "plan_configure")

METER_PERIODS = {"llm_tokens": "month", "emails": "month", "requests": "day"}


def plan_configure(
    *,
    code: str = "free",
    weights: dict | None = None,
    fallback_provider: str = "",
    rate_limit_per_minute: int = 1000,
    limits: dict | None = None,
    default_max_tokens: int = 100,
    max_tokens_cap: int | None = 4000,
) -> Plan:
    """Create or reshape a plan (``free`` is every user's default) and make every process reload it."""
    plan, _ = Plan.objects.update_or_create(
        code=code,
        defaults={
            "name": code.title(),
            "routing_weights": weights if weights is not None else {"deepseek": 100},
            "fallback_provider": fallback_provider,
            "rate_limit_per_minute": rate_limit_per_minute,
            "default_max_tokens": default_max_tokens,
            "max_tokens_cap": max_tokens_cap,
        },
    )
    limits = limits if limits is not None else {"llm_tokens": 1_000_000, "emails": 100, "requests": None}
    for meter, limit in limits.items():
        PlanQuota.objects.update_or_create(
            plan=plan, meter=meter, defaults={"limit": limit, "period": METER_PERIODS[meter]}
        )
    # A fresh version (not a delete): a catalogue loaded concurrently from the old rows is
    # tagged with an older version and reloaded on the next call.
    cache.set(CATALOG_VERSION_KEY, uuid.uuid4().hex, None)
    return plan


def key_for(user: User | None = None) -> tuple[User, str]:
    """A user and the plaintext of a new key of theirs."""
    user = user or UserFactory()
    _key, plaintext = api_key_for(user, name="proxy test")
    return user, plaintext


def global_key_set(provider: str, secret: str = "sk-operator-0123456789") -> ProviderCredential:
    return global_key_for(provider=provider, secret=secret)


def personal_key_set(user: User, provider: str, secret: str = "sk-personal-0123456789") -> ProviderCredential:
    return personal_key_for(user, provider=provider, secret=secret)
