"""The embeddings call: OpenAI's ``POST /v1/embeddings`` through the one call path.

An embeddings call is a chat call with no output: it is built here (validated body, input
token estimate, chain of providers), then reserved, sent, settled and logged by the same steps
as chat (``upstream.chat_call_run`` with ``upstreams.embeddings_create`` as its provider call).
It holds ``requests`` 1 and the estimated input tokens on ``llm_tokens`` (or credits at the
``/api/proxy/v1/embeddings`` endpoint cost), and settles to the provider's
``usage.prompt_tokens``, priced per input token from the price table.

Routing: only the exact routes of the requested model (``ModelRoute``), never a provider's
``*`` chat default and never the plan's tier mix — a vector from another model than the one
asked for would be silently useless. The provider that serves the name itself goes first, the
others (OpenRouter…) follow as fallback in name order. A name with no route → 404.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from rest_framework import serializers

from .. import upstreams
from ..dbcall import db_call
from ..estimate import prompt_tokens_estimate
from ..model_access import model_not_found_error
from ..models import ModelRoute
from ..selectors import catalog_get, catalog_is_fresh
from .input import ChatCall, StrictIntegerField, validated
from .upstream import chat_call_run

EMBEDDINGS_ENDPOINT = "/api/proxy/v1/embeddings"
# OpenAI's own limits: 2 048 inputs a request; no model we route is wider than 3 072.
MAX_INPUTS = 2048
MAX_DIMENSIONS = 4096
MAX_TOKEN_ID = 2**31 - 1


def _is_token_ids(value) -> bool:
    return isinstance(value, list) and all(type(item) is int and 0 <= item <= MAX_TOKEN_ID for item in value)


def embeddings_inputs(value) -> list:
    """The request's ``input`` as a list of inputs (each a non-empty string or a non-empty list
    of token ids), or a ValidationError saying what OpenAI accepts."""
    if isinstance(value, str):
        value = [value]
    elif isinstance(value, list) and value and all(type(item) is int for item in value):
        value = [value]  # one tokenized input
    if not isinstance(value, list):
        raise serializers.ValidationError(
            "Must be a string, a list of strings, a list of token ids or a list of token-id lists."
        )
    if not value:
        raise serializers.ValidationError("Must not be empty.")
    if len(value) > MAX_INPUTS:
        raise serializers.ValidationError(f"At most {MAX_INPUTS} inputs per request.")
    if all(isinstance(item, str) for item in value):
        if not all(value):
            raise serializers.ValidationError("Inputs must not be empty strings.")
        return value
    if all(_is_token_ids(item) for item in value):
        if not all(value):
            raise serializers.ValidationError("Token-id lists must not be empty.")
        return value
    raise serializers.ValidationError(
        "Must be a string, a list of strings, a list of token ids or a list of token-id lists "
        f"(token ids are integers from 0 to {MAX_TOKEN_ID}; strings and token ids are not mixed)."
    )


class StrictCharField(serializers.CharField):
    """A JSON string as sent: no number turned into one, no spaces trimmed (the body is
    forwarded to the provider unchanged, so what we route on must be what it reads)."""

    def __init__(self, **kwargs):
        super().__init__(trim_whitespace=False, **kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class EmbeddingsInputSerializer(serializers.Serializer):
    """OpenAI's embeddings request. Every field is forwarded to the provider as sent."""

    model = StrictCharField(max_length=128)
    input = serializers.JSONField()
    encoding_format = serializers.ChoiceField(choices=["float", "base64"], required=False)
    dimensions = StrictIntegerField(required=False, min_value=1, max_value=MAX_DIMENSIONS)
    user = StrictCharField(required=False, max_length=256, allow_blank=True)

    def validate_input(self, value):
        return embeddings_inputs(value)


def embeddings_tokens_estimate(inputs: list) -> int:
    """The most input tokens the inputs can cost: text by ``proxy.estimate``'s conservative
    rate, token ids one each (exactly what the provider counts)."""
    texts = [item for item in inputs if isinstance(item, str)]
    ids = sum(len(item) for item in inputs if isinstance(item, list))
    return (prompt_tokens_estimate({"input": texts}) if texts else 0) + ids


@dataclass
class EmbeddingsCall(ChatCall):
    """A validated embeddings request: a ``ChatCall`` with no output (``max_tokens`` 0), whose
    reservation is the input estimate."""

    inputs: list | None = None

    def __post_init__(self):
        self.prompt_tokens = embeddings_tokens_estimate(self.inputs or [])


def embeddings_call_build(view, request, payload: dict) -> EmbeddingsCall:
    """The ``EmbeddingsCall`` of a request body: validated (400 with ``param``)."""
    data = validated(EmbeddingsInputSerializer(data=payload))
    plan = view.plan
    return EmbeddingsCall(
        workspace=view.workspace,
        api_key_id=request.auth.key_id,
        service="router",
        endpoint=EMBEDDINGS_ENDPOINT,
        payload=payload,
        requested_model=data["model"],
        max_tokens=0,
        chain=[],  # exact routes only: set by ``embeddings_chain_set``
        request_id=view.request_id,
        plan=plan,
        credentials_version=view.credentials_version,
        cooling=view.cooling,
        inputs=data["input"],
        key_limits=request.auth.limits,
        allowed_models=request.auth.allowed_models,
        member_id=request.auth.member_id,
        member_limits=request.auth.member_limits,
        user_id=request.auth.user_id,
    )


def embeddings_providers_get(*, model: str) -> list[str]:
    """The providers with a route for exactly ``model``: the one serving it under that very
    name first, then the others by name."""
    routes = catalog_get().routes
    if model == ModelRoute.DEFAULT:
        return []
    providers = sorted(provider for requested, provider in routes if requested == model)
    return sorted(providers, key=lambda provider: routes[(model, provider)] != model)


async def embeddings_chain_set(call: EmbeddingsCall) -> None:
    """Before anything is held: the call's chain from the exact routes, or 404 ``model_not_found``."""
    if not catalog_is_fresh():
        await db_call(catalog_get)
    chain = embeddings_providers_get(model=call.requested_model)
    if not chain:
        raise model_not_found_error(call.requested_model)
    call.chain = chain


async def _create(*, target, payload: dict, requested_model: str) -> dict:
    """The provider call of one attempt. The sandbox is handed the model asked for, so its
    vectors have that model's width."""
    if target.is_sandbox:
        payload = {**payload, "model": requested_model}
    return await upstreams.embeddings_create(target=target, payload=payload)


async def embeddings_call_run(call: EmbeddingsCall) -> dict:
    """Serve an embeddings call: the provider's answer with ``provider``, ``fallback``, ``cost``
    and the ``quota`` block added. Raises ApiError (nothing charged) when it fails."""
    await embeddings_chain_set(call)
    complete = partial(_create, requested_model=call.requested_model)
    return await chat_call_run(call, complete=complete)
