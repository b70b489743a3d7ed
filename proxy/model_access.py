"""Which models a caller can reach: those the plan's providers serve by name (a ``ModelRoute``
or a ``ModelPrice`` under the provider's own name) and the caller has a key for."""

from __future__ import annotations

from accounts.selectors import PROVIDER_SOURCE_NONE, provider_key_status_list
from core.exceptions import ApiError

from . import sandbox
from .selectors import models_served_get


def plan_providers(plan) -> list[str]:
    """The providers a plan can route to: weighted ones by weight, then its fallback."""
    weights = getattr(plan, "routing_weights", None) or {}
    providers = [p for p, w in sorted(weights.items(), key=lambda i: (-int(i[1]), i[0])) if int(w) > 0]
    fallback = getattr(plan, "fallback_provider", "") or ""
    if fallback and fallback not in providers:
        providers.append(fallback)
    return providers


def model_not_found_error(model: str) -> ApiError:
    return ApiError(
        "model_not_found",
        f"The model '{model[:128]}' does not exist or is not available on your plan.",
        param="model",
    )


def models_reachable_get(*, user, plan) -> dict[str, str]:
    """Model id → owner provider, for every model the plan's providers serve by name and the
    caller has a key for (personal, global or environment; any provider with the sandbox on)."""
    providers = plan_providers(plan)
    if not sandbox.sandbox_enabled():
        keyed = {s.provider for s in provider_key_status_list(user=user) if s.source != PROVIDER_SOURCE_NONE}
        providers = [p for p in providers if p in keyed]
    return models_served_get(providers=providers)


def model_object(model: str, owner: str) -> dict:
    """OpenAI's model object."""
    return {"id": model, "object": "model", "created": 0, "owned_by": owner}
