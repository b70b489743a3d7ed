"""Test data for the proxy: plans configured per test, and users, keys and provider keys made
through ``accounts.services`` (a key belongs to a workspace: its creator's personal one unless
a test names another)."""

from __future__ import annotations

import uuid

from django.core.cache import cache

from accounts.models import ProviderCredential, User, Workspace
from accounts.services import api_key_create, provider_credential_set
from accounts.tests.factories import UserFactory
from billing.models import Plan, PlanQuota
from billing.selectors import CATALOG_VERSION_KEY

__all__ = ("UserFactory", "global_key_set", "key_for", "plan_configure", "workspace_key_set")

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
    """Create or reshape a plan (``free`` is every workspace's default) and make every process
    reload it."""
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


def key_for(user: User | None = None, *, workspace: Workspace | None = None) -> tuple[User, str]:
    """A user and the plaintext of a new key they created in ``workspace`` (their personal one
    by default; a member's key of a team workspace otherwise)."""
    user = user or UserFactory()
    _key, plaintext = api_key_create(
        workspace=workspace or user.personal_workspace, created_by=user, name="proxy test"
    )
    return user, plaintext


def global_key_set(provider: str, secret: str = "sk-operator-0123456789") -> ProviderCredential:
    return provider_credential_set(scope=ProviderCredential.Scope.GLOBAL, provider=provider, secret=secret)


def workspace_key_set(
    workspace: Workspace, provider: str, secret: str = "sk-workspace-0123456789"
) -> ProviderCredential:
    """The workspace's own provider key (bring your own)."""
    return provider_credential_set(
        scope=ProviderCredential.Scope.WORKSPACE, provider=provider, secret=secret, workspace=workspace
    )
