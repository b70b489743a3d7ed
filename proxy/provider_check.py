"""The provider-key check: one cheap, read-only request with the key, before it is saved.

``GET {base}/models`` costs nothing and needs a valid key at OpenAI, Anthropic (native, with
``x-api-key``), Gemini's OpenAI layer, Mistral, Groq and DeepSeek. OpenRouter lists its models
to anyone, so its key is checked on ``GET /key`` (the key's own limits). Instantly has no
read-only endpoint every key may call (keys carry scopes), so its keys are not checked.

The request goes through ``upstreams`` (same base URLs, auth headers, pooled client, scrubbing)
with a short overall timeout. Registered with ``accounts.key_checks`` by ``ProxyConfig.ready``.
"""

from __future__ import annotations

import json

from asgiref.sync import async_to_sync

from accounts.key_checks import (
    OUTCOME_OK,
    OUTCOME_REJECTED,
    OUTCOME_SKIPPED,
    OUTCOME_UNAVAILABLE,
    ProviderKeyCheck,
)
from accounts.providers import provider_get
from core.redact import secrets_redact

from . import upstreams

CHECK_TIMEOUT_SECONDS = 8.0  # an operator is waiting on the form
CHECK_PATHS = {"openrouter": "/key"}  # its /models answers without a key
DEFAULT_CHECK_PATH = "/models"
NOT_CHECKED = {
    "instantly": "Instantly keys carry scopes and Instantly has no read-only endpoint every key "
    "may call, so the key is saved without a check; send a test email to verify it.",
}


def _ok_message(content: bytes) -> str:
    try:
        body = json.loads(content)
    except ValueError:
        return "The provider accepted the key."
    data = body.get("data") if isinstance(body, dict) else None
    if isinstance(data, list):
        return f"The provider accepted the key ({len(data)} models listed)."
    return "The provider accepted the key."


async def provider_key_acheck(*, provider: str, secret: str) -> ProviderKeyCheck:
    """Ask ``provider`` whether ``secret`` works; never raises for the provider's answer."""
    if provider in NOT_CHECKED:
        return ProviderKeyCheck(provider=provider, outcome=OUTCOME_SKIPPED, message=NOT_CHECKED[provider])
    if provider_get(provider) is None:
        return ProviderKeyCheck(provider=provider, outcome=OUTCOME_SKIPPED, message="Unknown provider.")
    target = upstreams.target_build(provider=provider, secret=secret)
    if not target.base_url:
        return ProviderKeyCheck(
            provider=provider,
            outcome=OUTCOME_UNAVAILABLE,
            kind="config",
            message="No base URL is configured.",
        )
    path = CHECK_PATHS.get(provider, DEFAULT_CHECK_PATH)
    try:
        content = await upstreams.read_get(target=target, path=path, timeout=CHECK_TIMEOUT_SECONDS)
    except upstreams.UpstreamClientError as exc:
        return ProviderKeyCheck(
            provider=provider,
            outcome=OUTCOME_REJECTED,
            status=exc.status,
            message=secrets_redact(exc.message, extra=(secret,)),
        )
    except upstreams.UpstreamFailure as exc:
        return ProviderKeyCheck(
            provider=provider,
            outcome=OUTCOME_UNAVAILABLE,
            status=exc.status,
            kind=exc.kind,
            message=secrets_redact(exc.message, extra=(secret,)),
        )
    return ProviderKeyCheck(provider=provider, outcome=OUTCOME_OK, status=200, message=_ok_message(content))


def provider_key_check(*, provider: str, secret: str) -> ProviderKeyCheck:
    """The synchronous door (admin, DRF views): runs the async check to its end."""
    return async_to_sync(provider_key_acheck)(provider=provider, secret=secret)
