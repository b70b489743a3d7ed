"""Which models a caller can reach, and the rule for a model nobody configured.

A requested model is served only by the providers that know it by name (a ``ModelRoute`` or a
``ModelPrice`` under the provider's own name). A name no provider of the plan knows answers
``404 model_not_found`` before anything is held — unless the plan's routing deliberately
serves every model from its tier mix (``PROXY_ANY_MODEL_PLANS``, the seed's free/student/pro):
then each provider's ``*`` route serves it, and the answer names the model that served
(body ``model``, ``x-tollgate-served-model``).
"""

from __future__ import annotations

from django.conf import settings

from accounts.providers import PROVIDERS
from accounts.selectors import PROVIDER_SOURCE_NONE, provider_key_status_list
from core.exceptions import ApiError

from . import sandbox
from .catalog import EMBEDDING_MODELS
from .dbcall import db_call
from .selectors import catalog_get, catalog_is_fresh, model_providers_get, models_served_get


def plan_serves_any_model(plan) -> bool:
    """Whether ``plan`` answers unknown model names from its tier mix (``*`` routes)."""
    return (getattr(plan, "code", "") or "") in settings.PROXY_ANY_MODEL_PLANS


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


async def chat_model_check(call) -> None:
    """Before anything is held: narrow the call's providers to those that serve its model by
    name, or answer 404 ``model_not_found``. A plan that serves any model keeps its chain."""
    if plan_serves_any_model(call.plan):
        return
    if not catalog_is_fresh():
        await db_call(catalog_get)
    chain = model_providers_get(model=call.requested_model, providers=call.chain)
    if not chain:
        raise model_not_found_error(call.requested_model)
    call.chain = chain
    if call.fallback_provider and call.fallback_provider not in chain:
        call.fallback_provider = ""


def models_reachable_get(*, workspace, plan) -> dict[str, str]:
    """Model id → owner provider, for every model the workspace can call: the chat models the
    plan's providers serve by name, and the embedding models (exact routes, any provider,
    whatever the plan's mix) — each through a provider it has a key for (the workspace's own,
    global or environment; any provider with the sandbox on)."""
    providers = plan_providers(plan)
    embedders = list(PROVIDERS) + [sandbox.PROVIDER]
    if not sandbox.sandbox_enabled():
        keyed = {
            s.provider
            for s in provider_key_status_list(workspace=workspace)
            if s.source != PROVIDER_SOURCE_NONE
        }
        providers = [p for p in providers if p in keyed]
        embedders = [p for p in embedders if p in keyed]
    embeddings = models_served_get(providers=embedders)
    reachable = {m: o for m, o in embeddings.items() if m in EMBEDDING_MODELS}
    reachable.update(models_served_get(providers=providers))
    return dict(sorted(reachable.items()))


def model_object(model: str, owner: str) -> dict:
    """OpenAI's model object."""
    return {"id": model, "object": "model", "created": 0, "owned_by": owner}
