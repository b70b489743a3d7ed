"""The bench tenant: a user's personal workspace on a plan with huge quotas and a high rate limit,
a proxy key, and
operator (global) keys for every LLM provider — so the measured path is the real one (key auth,
rate limit, quota reserve/settle, budget counter, usage event and rollup writes), never a
shortcut.

Users, keys and provider keys go through ``accounts.services``. The bench plan is operator data
(as the admin would create it); the subscription is written as billing's webhook fulfilment
would leave it, without a Stripe round trip.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import asdict, dataclass
from datetime import timedelta

from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from accounts.services import api_key_create, provider_credential_set, users_bulk_create
from billing.models import Meter, Period, Plan, PlanQuota, Subscription
from billing.selectors import workspace_plan_cache_key
from billing.services import plan_catalog_invalidate
from proxy.catalog import proxy_catalog_seed

BENCH_PLAN_CODE = "bench"
# Far beyond what one bench run can use: the bench measures the path, not the limits.
BENCH_TOKEN_QUOTA = 10**12
BENCH_RATE_LIMIT_PER_MINUTE = 100_000_000
BENCH_PROVIDER = "deepseek"  # priced (non-zero cost), so the budget counter does real work
LLM_PROVIDERS = ("openai", "anthropic", "google", "mistral", "groq", "openrouter", "deepseek")


@dataclass(frozen=True)
class BenchTenant:
    workspace_id: int  # the tenant: every call of the run is billed to it
    user_id: int  # its owner, who made the key
    email: str
    api_key_id: int
    api_key: str  # plaintext, kept by the bench process only

    def as_dict(self) -> dict:
        return asdict(self)


def bench_plan_ensure():
    """Create or refresh the private bench plan, then tell every worker the catalogue changed."""
    with transaction.atomic():
        plan, _ = Plan.objects.update_or_create(
            code=BENCH_PLAN_CODE,
            defaults={
                "name": "Bench (private)",
                "price_minor": 0,
                "is_public": False,
                "is_active": True,
                "rate_limit_per_minute": BENCH_RATE_LIMIT_PER_MINUTE,
                "routing_weights": {BENCH_PROVIDER: 100},
                "fallback_provider": "groq",
            },
        )
        for meter, period, limit in (
            (Meter.LLM_TOKENS, Period.MONTH, BENCH_TOKEN_QUOTA),
            (Meter.REQUESTS, Period.DAY, None),
            (Meter.EMAILS, Period.MONTH, 0),
        ):
            PlanQuota.objects.update_or_create(
                plan=plan, meter=meter, defaults={"period": period, "limit": limit}
            )
        plan_catalog_invalidate()  # every worker reloads plans after commit
    return plan


def bench_tenant_create(*, email: str | None = None, provider_secret: str | None = None) -> BenchTenant:
    """A fresh user (and personal workspace) per run, so each run's accounting is checked from zero."""
    proxy_catalog_seed()  # prices and model routes (idempotent)
    plan = bench_plan_ensure()
    email = email or f"bench-{uuid.uuid4().hex[:12]}@bench.invalid"
    # A synthetic account (confirmed address, unusable password), as the usage generator makes.
    (user,) = users_bulk_create(accounts=[(email, "Bench")])
    workspace = user.personal_workspace
    now = timezone.now()
    with transaction.atomic():
        Subscription.objects.create(
            workspace=workspace,
            plan=plan,
            status=Subscription.Status.ACTIVE,
            stripe_subscription_id=f"sub_bench_{uuid.uuid4().hex}",
            current_period_end=now + timedelta(days=30),
            activated_at=now,
        )
    cache.delete(workspace_plan_cache_key(workspace.pk))
    secret = provider_secret or f"sk-bench-{secrets.token_hex(16)}"
    for provider in LLM_PROVIDERS:
        provider_credential_set(scope="global", provider=provider, secret=secret)
    api_key, plaintext = api_key_create(workspace=workspace, created_by=user, name="bench")
    return BenchTenant(
        workspace_id=workspace.pk, user_id=user.pk, email=user.email, api_key_id=api_key.pk, api_key=plaintext
    )
