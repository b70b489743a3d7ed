"""Test data for the proxy: users with keys, plans configured per test, provider keys."""

from __future__ import annotations

import uuid

import factory
from django.core.cache import cache

from accounts.models import ProviderCredential, User
from accounts.services import api_key_create, provider_credential_set
from billing.models import Plan, PlanQuota
from billing.selectors import CATALOG_VERSION_KEY

METER_PERIODS = {"llm_tokens": "month", "emails": "month", "requests": "day"}


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"proxy-user{n}@example.com")


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
    user = user or UserFactory()
    _key, plaintext = api_key_create(user=user, name="proxy test")
    return user, plaintext


def global_key_set(provider: str, secret: str = "sk-operator-0123456789") -> ProviderCredential:
    return provider_credential_set(scope=ProviderCredential.Scope.GLOBAL, provider=provider, secret=secret)


def personal_key_set(user: User, provider: str, secret: str = "sk-personal-0123456789") -> ProviderCredential:
    return provider_credential_set(
        scope=ProviderCredential.Scope.PERSONAL, provider=provider, secret=secret, user=user
    )
