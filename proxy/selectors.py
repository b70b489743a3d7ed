"""Reads for the proxy. Prices and routes are immutable-ish operator data: they are loaded
whole and kept in process for ``CATALOG_CACHE_SECONDS`` so the hot path never queries
them; an admin edit is visible everywhere within that delay."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from decimal import Decimal

from billing.selectors import quota_block, quota_status_get
from core.time import isoformat_z

from .dbcall import db_call
from .models import ModelPrice, ModelRoute, UsageEvent

RECENT_USAGE_LIMIT = 100
# Seconds a worker keeps the price and route catalogue before reading it again (an admin edit
# moves the shared version, so the editing worker and the gate see it at once).
CATALOG_CACHE_SECONDS = 30


@dataclass(frozen=True)
class Price:
    input_usd_per_mtok: Decimal
    output_usd_per_mtok: Decimal


@dataclass(frozen=True)
class _Catalog:
    prices: dict[tuple[str, str], Price]
    routes: dict[tuple[str, str], str]
    requested_models: tuple[str, ...]
    loaded_at: float


_catalog: _Catalog | None = None
_catalog_lock = threading.Lock()


def _catalog_load() -> _Catalog:
    prices = {
        (provider, model): Price(Decimal(inp), Decimal(out))
        for provider, model, inp, out in ModelPrice.objects.values_list(
            "provider", "model", "input_usd_per_mtok", "output_usd_per_mtok"
        )
    }
    routes = {
        (requested, provider): upstream
        for requested, provider, upstream in ModelRoute.objects.values_list(
            "requested_model", "provider", "upstream_model"
        )
    }
    requested = tuple(sorted({r for r, _ in routes if r != ModelRoute.DEFAULT}))
    return _Catalog(prices=prices, routes=routes, requested_models=requested, loaded_at=time.monotonic())


def catalog_get() -> _Catalog:
    global _catalog
    current = _catalog
    if current is not None and time.monotonic() - current.loaded_at < CATALOG_CACHE_SECONDS:
        return current
    with _catalog_lock:
        if _catalog is None or time.monotonic() - _catalog.loaded_at >= CATALOG_CACHE_SECONDS:
            _catalog = _catalog_load()
        return _catalog


async def catalog_warm() -> None:
    """Load the catalogue at worker startup (ASGI lifespan) rather than on the first calls."""
    await db_call(catalog_get)


def catalog_is_fresh() -> bool:
    """Whether ``catalog_get`` would answer without a query (the fast lane loads it in a thread)."""
    current = _catalog
    return current is not None and time.monotonic() - current.loaded_at < CATALOG_CACHE_SECONDS


def catalog_invalidate() -> None:
    """Forget the in-process catalogue (admin saves and tests call it)."""
    global _catalog
    _catalog = None


def upstream_model_get(*, requested_model: str, provider: str) -> str:
    """Requested model → the model the provider serves.

    An explicit route wins; a model the provider prices under its own name passes through;
    anything else goes to the provider's default route, and failing that passes through as is
    (the provider then answers 4xx, which is relayed and charges nothing).
    """
    catalog = catalog_get()
    routed = catalog.routes.get((requested_model, provider))
    if routed:
        return routed
    if (provider, requested_model) in catalog.prices:
        return requested_model
    return catalog.routes.get((ModelRoute.DEFAULT, provider), requested_model)


def model_price_get(*, provider: str, model: str) -> Price | None:
    return catalog_get().prices.get((provider, model))


def model_providers_get(*, model: str, providers) -> list[str]:
    """Those of ``providers`` that serve ``model`` by name: an explicit route, or a price under
    the provider's own name. A provider's ``*`` default does not count (see ``proxy.model_access``)."""
    catalog = catalog_get()
    return [p for p in providers if (model, p) in catalog.routes or (p, model) in catalog.prices]


def models_served_get(*, providers) -> dict[str, str]:
    """Every model id ``providers`` serve by name → its owner: the provider that serves it under
    that very name (``gpt-4o`` on OpenAI), else the first of ``providers`` that routes it."""
    catalog = catalog_get()
    wanted = list(providers)
    owners: dict[str, str] = {}
    native: set[str] = set()
    for provider in wanted:
        for (requested, routed_provider), upstream in catalog.routes.items():
            if routed_provider != provider or requested == ModelRoute.DEFAULT:
                continue
            if upstream == requested and requested not in native:
                owners[requested] = provider
                native.add(requested)
            owners.setdefault(requested, provider)
        for priced_provider, model in catalog.prices:
            if priced_provider == provider and model not in native:
                owners[model] = provider
                native.add(model)
    return dict(sorted(owners.items()))


def usage_recent_list(*, workspace, limit: int = RECENT_USAGE_LIMIT):
    """The workspace's last calls (every member's), newest first (index usage_workspace_recent)."""
    return (
        UsageEvent.objects.filter(workspace=workspace)
        .order_by("-created_at", "-id")
        .only(
            "service", "endpoint", "total_tokens", "emails", "status_code", "created_at", "provider", "model"
        )[:limit]
    )


def usage_summary_get(*, workspace) -> dict:
    """``GET /api/proxy/usage``: the workspace's quota per meter and its last calls, newest first."""
    statuses = quota_status_get(workspace=workspace)
    tokens = statuses.get("llm_tokens")
    reset_at = getattr(tokens, "reset_at", None)

    def meter(name):
        block = quota_block(statuses.get(name))
        return {"used": block["used"], "limit": block["limit"], "remaining": block["remaining"]}

    requests_block = quota_block(statuses.get("requests"))
    recent = []
    for event in usage_recent_list(workspace=workspace):
        row = {"service": event.service, "endpoint": event.endpoint}
        if event.service == "instantly":
            row["emailsSent"] = event.emails
        else:
            row["tokensUsed"] = event.total_tokens
        row.update({"statusCode": event.status_code, "createdAt": isoformat_z(event.created_at)})
        recent.append(row)
    return {
        "success": True,
        "quota": {
            "deepseek": meter("llm_tokens"),
            "instantly": meter("emails"),
            "requests": requests_block,
            "resetDate": isoformat_z(reset_at) if reset_at else None,
        },
        "recentUsage": recent,
    }
