"""Writes for accounts, one module per concern:

- ``users``: sign-up, DRF tokens, bulk creation;
- ``workspaces``: workspaces (the billing tenant), members, invitations, the audit log;
- ``keys``: customer API keys (sk_agentai_…), their one-time reveal links, refusal counters;
- ``provider_keys``: bring-your-own and operator provider keys, encrypted at rest.

Callers import from ``accounts.services``; the names below are that interface.
"""

from .keys import (
    API_KEY_TOUCH_INTERVAL_SECONDS,
    KEY_REVEAL_TTL,
    ApiKeyRotation,
    KeyRevealResult,
    api_key_create,
    api_key_reveal_link_create,
    api_key_revoke,
    api_key_rotate,
    api_key_touch,
    api_keys_unusable_create,
    auth_failure_record,
    invalid_key_refusal_record,
    key_reveal_consume,
    key_reveals_purge,
)
from .provider_keys import (
    PROVIDER_SECRET_MAX_LENGTH,
    ReencryptReport,
    provider_credential_delete,
    provider_credential_set,
    provider_secret_clean,
    provider_secrets_reencrypt,
)
from .users import field_error, user_register, user_token_get_or_create, user_tokens_revoke, users_bulk_create
from .workspaces import audit_record, workspace_personal_create, workspaces_personal_bulk_create

__all__ = [
    "API_KEY_TOUCH_INTERVAL_SECONDS",
    "KEY_REVEAL_TTL",
    "PROVIDER_SECRET_MAX_LENGTH",
    "ApiKeyRotation",
    "KeyRevealResult",
    "ReencryptReport",
    "api_key_create",
    "api_key_reveal_link_create",
    "api_key_revoke",
    "api_key_rotate",
    "api_key_touch",
    "api_keys_unusable_create",
    "audit_record",
    "auth_failure_record",
    "field_error",
    "invalid_key_refusal_record",
    "key_reveal_consume",
    "key_reveals_purge",
    "provider_credential_delete",
    "provider_credential_set",
    "provider_secret_clean",
    "provider_secrets_reencrypt",
    "user_register",
    "user_token_get_or_create",
    "user_tokens_revoke",
    "users_bulk_create",
    "workspace_personal_create",
    "workspaces_personal_bulk_create",
]
