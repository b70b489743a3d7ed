"""Writes for accounts, one module per concern:

- ``users``: sign-up, DRF tokens, bulk creation;
- ``verification``: the link that confirms an email address, and what an unconfirmed one may do;
- ``workspaces``: workspaces (the billing tenant), members, invitations;
- ``member_limits``: a member's monthly spend caps over all their keys;
- ``suspension``: the operator's suspension of a workspace (its keys answer 403);
- ``audit``: the audit log's writer (``audit_record``), shared by all of them;
- ``keys``: a workspace's API keys (sk_agentai_…), their one-time reveal links, refusal counters;
- ``provider_keys``: a workspace's own (bring your own) and the operator's provider keys,
  encrypted at rest.

Callers import from ``accounts.services``; the names below are that interface.
"""

from .audit import audit_record
from .keys import (
    API_KEY_TOUCH_INTERVAL_SECONDS,
    KEY_REVEAL_TTL,
    ApiKeyRotation,
    KeyRevealResult,
    api_key_create,
    api_key_limits_set,
    api_key_reveal_link_create,
    api_key_revoke,
    api_key_rotate,
    api_key_touch,
    api_keys_cache_republish,
    api_keys_revoke_created_by,
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
from .verification import (
    email_unverified_error,
    email_verification_send,
    email_verified_by_proof,
    email_verify,
    user_email_verified,
)
from .workspaces import (
    INVITATION_TTL,
    invitation_accept,
    invitation_accept_url,
    invitation_create,
    invitation_revoke,
    membership_create,
    membership_remove,
    membership_role_change,
    workspace_create,
    workspace_delete,
    workspace_delete_refusals,
    workspace_personal_create,
    workspace_update,
    workspaces_personal_bulk_create,
)

__all__ = [
    "api_keys_cache_republish",
    "API_KEY_TOUCH_INTERVAL_SECONDS",
    "INVITATION_TTL",
    "KEY_REVEAL_TTL",
    "PROVIDER_SECRET_MAX_LENGTH",
    "api_key_create",
    "api_key_reveal_link_create",
    "api_key_limits_set",
    "api_key_revoke",
    "api_key_rotate",
    "api_key_touch",
    "api_keys_revoke_created_by",
    "api_keys_unusable_create",
    "audit_record",
    "auth_failure_record",
    "email_unverified_error",
    "email_verification_send",
    "email_verified_by_proof",
    "email_verify",
    "field_error",
    "invalid_key_refusal_record",
    "invitation_accept",
    "invitation_accept_url",
    "invitation_create",
    "invitation_revoke",
    "key_reveal_consume",
    "key_reveals_purge",
    "membership_create",
    "membership_remove",
    "membership_role_change",
    "provider_credential_delete",
    "provider_credential_set",
    "provider_secret_clean",
    "provider_secrets_reencrypt",
    "user_email_verified",
    "user_register",
    "user_token_get_or_create",
    "user_tokens_revoke",
    "users_bulk_create",
    "workspace_create",
    "workspace_delete",
    "workspace_delete_refusals",
    "workspace_personal_create",
    "workspace_update",
    "workspaces_personal_bulk_create",
    "ApiKeyRotation",
    "KeyRevealResult",
    "ReencryptReport",
]
