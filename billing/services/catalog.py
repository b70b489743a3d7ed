"""Writes for the plan catalogue: seed the default plans and their quotas, and drop the cached
plan lookups when the catalogue changes.

Kept apart because it runs from admin saves and the seed command, never on a call's path.
"""

from __future__ import annotations

import uuid

from django.core.cache import cache
from django.db import transaction

from ..catalog import (
    DEFAULT_CATALOG,
    DEFAULT_CURRENCY,
    DEFAULT_MAX_TOKENS,
    DEFAULT_MAX_TOKENS_CAP,
    METER_PERIODS,
)
from ..models import Plan, PlanQuota
from ..selectors import CATALOG_VERSION_KEY

# =============================================================================================
# Catalogue
# =============================================================================================


def plan_catalog_invalidate() -> None:
    """Tell every process to reload plans (after commit, so nobody reloads the old rows)."""
    transaction.on_commit(lambda: cache.set(CATALOG_VERSION_KEY, uuid.uuid4().hex, None))


def plan_catalog_seed() -> list[Plan]:
    """Install the default catalogue. Idempotent: existing plans and quotas are left as the
    operator edited them; only missing ones are created."""
    created = []
    with transaction.atomic():
        for spec in DEFAULT_CATALOG:
            plan, was_created = Plan.objects.get_or_create(
                code=spec["code"],
                defaults={
                    "name": spec["name"],
                    "price_minor": spec["price_minor"],
                    "currency": DEFAULT_CURRENCY,
                    "rate_limit_per_minute": spec["rate_limit_per_minute"],
                    "routing_weights": spec["routing_weights"],
                    "default_max_tokens": DEFAULT_MAX_TOKENS,
                    "max_tokens_cap": DEFAULT_MAX_TOKENS_CAP,
                    "sort_order": spec["sort_order"],
                    "price_dzd_minor": spec.get("price_dzd_minor"),
                },
            )
            if was_created:
                created.append(plan)
            for meter, limit in spec["quotas"].items():
                PlanQuota.objects.get_or_create(
                    plan=plan, meter=meter, defaults={"period": METER_PERIODS[meter], "limit": limit}
                )
        plan_catalog_invalidate()
    return created
