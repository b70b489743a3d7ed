"""Reads for accounts. Tenant-owned reads (keys, provider keys) take ``workspace=``; reads about
the person (their reveal links, their role) take ``user=``."""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.core.cache import cache
from django.db.models import OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from core.exceptions import ApiError, retry_after_seconds
from core.rawsql import model_rows_aget, model_rows_get

from .crypto import secret_mask, secret_verify
from .keys import api_key_hash, api_key_is_well_formed
from .models import ApiKey, KeyReveal, Membership, ProviderCredential, Role, User, Workspace
from .providers import PROVIDERS, provider_get

API_KEY_CACHE_SECONDS = 300
API_KEY_REVOKED_MARKER = "revoked"  # cached in place of an identity once a key is revoked
# Bumped on every provider-key change (accounts.signals): in-process credential caches key on it.
PROVIDER_KEYS_VERSION_KEY = "accounts:provider-keys-version"
PROVIDER_SOURCE_ENV = "env"
PROVIDER_SOURCE_NONE = "none"


@dataclass(frozen=True)
class ApiKeyIdentity:
    """What the hot path needs to know about a presented key (cached in the shared cache).

    ``workspace_id`` is the tenant every call is billed to; ``user_id`` the member who created
    the key (the role it acts with). A key whose creator is gone or inactive has no identity.
    """

    key_id: int
    workspace_id: int
    user_id: int
    expires_at: datetime | None
    # The key's spend controls, so the proxy enforces them with no query of its own:
    # ((unit, window, amount), …) and the model ids it may call (empty: every model).
    limits: tuple[tuple[str, str, int], ...] = ()
    allowed_models: tuple[str, ...] = ()
    # The creator's membership and its monthly caps over all their keys (same shape as ``limits``).
    member_id: int | None = None
    member_limits: tuple[tuple[str, str, int], ...] = ()
    # The operator suspended the workspace: its keys answer 403 ``workspace_suspended``.
    suspended: bool = False


def api_key_limits_tuple(limits) -> tuple[tuple[str, str, int], ...]:
    """``ApiKey.limits`` (a JSON list) as the identity carries it."""
    return tuple((item["unit"], item["window"], int(item["amount"])) for item in limits or ())


def api_key_identity_build(
    *,
    key_id,
    workspace_id,
    user_id,
    expires_at,
    limits,
    allowed_models,
    member_id=None,
    member_limits=(),
    suspended=False,
):
    return ApiKeyIdentity(
        key_id=key_id,
        workspace_id=workspace_id,
        user_id=user_id,
        expires_at=expires_at,
        limits=api_key_limits_tuple(limits),
        allowed_models=tuple(allowed_models or ()),
        member_id=member_id,
        member_limits=api_key_limits_tuple(member_limits) if member_id is not None else (),
        suspended=bool(suspended),
    )


# What an identity is built from (``api_key_identity_rows``), in this order.
_IDENTITY_COLUMNS = (
    "id",
    "workspace_id",
    "created_by_id",
    "expires_at",
    "limits",
    "allowed_models",
    "member_id",
    "member_limits",
    "suspended",
)


def api_key_identity_rows(keys: QuerySet[ApiKey]) -> list[tuple]:
    """``keys`` as identity rows: the key's columns and its creator's membership (id and caps)
    in the same query."""
    memberships = Membership.objects.filter(
        workspace_id=OuterRef("workspace_id"), user_id=OuterRef("created_by_id")
    )
    return list(
        keys.annotate(
            member_id=Subquery(memberships.values("id")[:1]),
            member_limits=Subquery(memberships.values("limits")[:1]),
            suspended=Q(workspace__suspended_at__isnull=False),
        ).values_list(*_IDENTITY_COLUMNS)
    )


def api_key_identity_from_row(row: tuple) -> ApiKeyIdentity:
    return api_key_identity_build(
        **dict(zip(("key_id", "workspace_id", "user_id", *_IDENTITY_COLUMNS[3:]), row, strict=True))
    )


_member_limits_usage_reader = None  # billing's ``member_limits_usage_get``, registered by billing


def member_limits_usage_reader_register(fn) -> None:
    """Billing registers how to read the members' cap usage (accounts never imports billing)."""
    global _member_limits_usage_reader
    _member_limits_usage_reader = fn


def member_limits_usage_get(*, memberships) -> dict[int, list[dict]]:
    """Membership id -> its caps with ``used`` and ``resets_at`` (``None`` without a reader)."""
    memberships = [membership for membership in memberships if membership.limits]
    if not memberships:
        return {}
    if _member_limits_usage_reader is None:
        return {m.pk: [{**item, "used": None, "resets_at": None} for item in m.limits] for m in memberships}
    return _member_limits_usage_reader(memberships=memberships)


_key_limits_usage_reader = None  # billing's ``key_limits_usage_get``, registered by billing


def api_key_limits_usage_reader_register(fn) -> None:
    """Billing registers how to read the keys' limit usage (accounts never imports billing)."""
    global _key_limits_usage_reader
    _key_limits_usage_reader = fn


def api_key_limits_usage_get(*, api_keys) -> dict[int, list[dict]]:
    """Key id -> its limits with ``used`` and ``resets_at`` (``[]`` entries without a reader)."""
    api_keys = [api_key for api_key in api_keys if api_key.limits]
    if not api_keys:
        return {}
    if _key_limits_usage_reader is None:
        return {
            key.pk: [{**item, "used": None, "resets_at": None} for item in key.limits] for key in api_keys
        }
    return _key_limits_usage_reader(api_keys=api_keys)


def api_key_cache_key(key_hash: str) -> str:
    # v4: the identity gained the member's caps (v3: ``limits`` and ``allowed_models``); entries
    # cached by a previous release must never be read as the new shape.
    return f"apikey:v4:{key_hash}"


def api_key_identity_get(
    *, raw_key: str, now=None, client_address: str | None = None
) -> ApiKeyIdentity | None:
    """Resolve a presented key. Malformed keys are rejected with no query at all.

    Positive lookups are cached in the shared cache; revocation and rotation overwrite the
    entry after commit (a "revoked" marker, or the identity with its new expiry), so a revoked
    key fails on its very next use from any worker.

    ``client_address``: the caller's address; when the cache does not know the key and that
    address has used up its failed authentications this minute, raises the 429 instead of
    querying (``auth_failure_throttle_check``). A key the cache knows pays nothing for it.
    """
    if not api_key_is_well_formed(raw_key):
        return None
    now = now or timezone.now()
    key_hash = api_key_hash(raw_key)
    cache_key = api_key_cache_key(key_hash)
    identity = cache.get(cache_key)
    if identity == API_KEY_REVOKED_MARKER:
        return None
    if identity is None:
        if client_address is not None:
            auth_failure_throttle_check(address=client_address, now=now.timestamp())
        rows = api_key_identity_rows(
            ApiKey.objects.filter(key_hash=key_hash, revoked_at__isnull=True, created_by__is_active=True)
        )
        if not rows:
            return None
        identity = api_key_identity_from_row(rows[0])
        # add, not set: a revocation that committed meanwhile has written its marker, which
        # must win over this possibly stale read.
        cache.add(cache_key, identity, API_KEY_CACHE_SECONDS)
    if identity.expires_at is not None and identity.expires_at <= now:
        return None
    return identity


# --- Failed API-key authentications per client address ------------------------------------------

AUTH_FAILURE_WINDOW_SECONDS = 60


def auth_failure_limit() -> int:
    """Refused keys allowed per address and minute; 0 when the limit is off."""
    if not settings.RATELIMIT_ENABLE:
        return 0
    return max(0, settings.AUTH_FAILURES_PER_MINUTE)


def auth_failure_window(*, address: str, now: float | None = None) -> tuple[str, int]:
    """(counter key, epoch second the window ends) of the current minute for ``address``."""
    now = time.time() if now is None else now
    window = int(now // AUTH_FAILURE_WINDOW_SECONDS)
    return f"auth-failures:{address}:{window}", (window + 1) * AUTH_FAILURE_WINDOW_SECONDS


def auth_failure_throttle_error(*, reset_at: int, now: float | None = None) -> ApiError:
    now = time.time() if now is None else now
    retry_after = retry_after_seconds(reset_at - now)
    return ApiError(
        "too_many_failed_authentications",
        f"Too many failed API-key authentications from this address. Retry after {retry_after} seconds.",
        headers={"Retry-After": str(retry_after)},
    )


def auth_failure_throttle_check(*, address: str, now: float | None = None) -> None:
    """Raise the 429 when ``address`` has used up this minute's failed authentications (one GET)."""
    limit = auth_failure_limit()
    if limit <= 0:
        return
    counter, reset_at = auth_failure_window(address=address, now=now)
    if (cache.get(counter) or 0) >= limit:
        raise auth_failure_throttle_error(reset_at=reset_at, now=now)


# --- Customer API keys (dashboard / account API) ----------------------------------------------


def api_key_list(*, workspace: Workspace, created_by: User | None = None) -> QuerySet[ApiKey]:
    """The workspace's keys (only those ``created_by`` made, when given), newest first, with
    their creator; revoked ones included, for the audit trail."""
    keys = ApiKey.objects.filter(workspace=workspace)
    if created_by is not None:
        keys = keys.filter(created_by=created_by)
    return keys.select_related("created_by").order_by("-created_at", "-id")


def api_key_get(*, workspace: Workspace, key_id) -> ApiKey:
    """One of the workspace's keys; another workspace's id answers 404 exactly like a missing one."""
    key = ApiKey.objects.filter(workspace=workspace, pk=key_id).first()
    if key is None:
        raise ApiError("not_found", "No such API key.", param="id")
    return key


def api_key_manageable_get(*, context, key_id) -> ApiKey:
    """A key of the context's workspace that its member may revoke or rotate: their own, or
    any with ``keys.manage_any``. 404 outside the workspace; 403 ``forbidden`` (with the roles
    that may) for another member's key. ``context``: ``accounts.tenancy.WorkspaceContext``."""
    key = api_key_get(workspace=context.workspace, key_id=key_id)
    if key.created_by_id != context.user.pk:
        context.require("keys.manage_any")
    return key


def api_key_active_count(*, workspace: Workspace, created_by: User | None = None, now=None) -> int:
    """Usable keys of the workspace (of one member when ``created_by`` is given)."""
    now = now or timezone.now()
    keys = ApiKey.objects.filter(workspace=workspace, revoked_at__isnull=True)
    if created_by is not None:
        keys = keys.filter(created_by=created_by)
    return keys.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now)).count()


def key_reveal_get(*, user, token: str) -> KeyReveal:
    """The reveal behind a URL token, if ``user`` created its key; else 404."""
    reveal = (
        KeyReveal.objects.select_related("api_key")
        .filter(token_hash=hashlib.sha256(token.encode()).hexdigest(), api_key__created_by=user)
        .first()
    )
    if reveal is None:
        raise ApiError("not_found", "This link is not valid.")
    return reveal


# --- Workspace members (for billing e-mails and key checks) ------------------------------------

BILLING_CONTACT_ROLES = (Role.OWNER, Role.BILLING)


def workspace_billing_emails(*, workspace: Workspace) -> list[str]:
    """Where mail for "the customer" goes (quota alerts, receipts, renewals, low balance): the
    e-mails of the workspace's active owners and billing members, sorted, each once."""
    emails = Membership.objects.filter(
        workspace=workspace, role__in=BILLING_CONTACT_ROLES, user__is_active=True
    ).values_list("user__email", flat=True)
    return sorted(set(emails))


def workspace_billing_contacts(*, workspace: Workspace) -> list[tuple[str, str]]:
    """The same contacts as ``workspace_billing_emails``, each with the language their mail is
    written in (``User.language``, blank: English), for ``core.mail.mail_send_localized``."""
    contacts = Membership.objects.filter(
        workspace=workspace, role__in=BILLING_CONTACT_ROLES, user__is_active=True
    ).values_list("user__email", "user__language")
    return sorted(set(contacts))


def workspace_member_role_get(*, workspace: Workspace, user: User) -> str | None:
    """``user``'s role in ``workspace``, or None when they are not a member."""
    if user is None or not user.is_authenticated:
        return None
    return Membership.objects.filter(workspace=workspace, user=user).values_list("role", flat=True).first()


# --- Provider keys: the workspace's own > global (database) > environment > none ---------------

PROVIDER_SOURCE_WORKSPACE = ProviderCredential.Scope.WORKSPACE.value
PROVIDER_SOURCE_GLOBAL = ProviderCredential.Scope.GLOBAL.value


@dataclass(frozen=True)
class ProviderSecret:
    """A usable provider secret and where it came from. Never log or serialise ``secret``."""

    secret: str
    source: str  # "workspace" | "global" | "env"

    def __repr__(self):  # keeps the secret out of tracebacks and debug output
        return f"ProviderSecret(source={self.source!r}, secret={secret_mask(self.secret)!r})"


def _provider_known(provider: str) -> None:
    if provider_get(provider) is None:
        raise ApiError("not_found", f"Unknown provider '{provider}'.", param="provider")


def _tenant_pk(workspace: Workspace | None, workspace_id: int | None) -> int | None:
    """The workspace asked about, given as an instance (pages, APIs) or an id (the proxy's hot
    path knows only its key's ``workspace_id``); None: the operator's keys only."""
    if workspace is not None and workspace_id is not None and workspace.pk != workspace_id:
        raise ValueError("workspace and workspace_id disagree")
    return workspace.pk if workspace is not None else workspace_id


def _provider_scope_filter(workspace_pk: int | None) -> Q:
    """The global row plus, for a workspace, its own row."""
    scope_filter = Q(scope=ProviderCredential.Scope.GLOBAL)
    if workspace_pk is not None:
        scope_filter |= Q(scope=ProviderCredential.Scope.WORKSPACE, workspace_id=workspace_pk)
    return scope_filter


def _provider_credentials_query(*, workspace_pk: int | None, provider: str) -> tuple[str, list]:
    # The proxy asks this on every call: one precompiled statement, same rows as
    # ProviderCredential.objects.filter(_provider_scope_filter(workspace_pk), provider=provider).
    if workspace_pk is not None:
        where = '"provider" = %s AND ("scope" = %s OR ("scope" = %s AND "workspace_id" = %s))'
        scopes = [ProviderCredential.Scope.GLOBAL, ProviderCredential.Scope.WORKSPACE]
        return where, [provider, *scopes, workspace_pk]
    return '"provider" = %s AND "scope" = %s', [provider, ProviderCredential.Scope.GLOBAL]


def _own_and_global(credentials) -> tuple:
    own = global_ = None
    for credential in credentials:
        if credential.scope == ProviderCredential.Scope.WORKSPACE:
            own = credential
        else:
            global_ = credential
    return own, global_


def _provider_credentials(*, workspace_pk: int | None, provider: str):
    """(workspace, global) rows for one provider in a single query."""
    where, params = _provider_credentials_query(workspace_pk=workspace_pk, provider=provider)
    return _own_and_global(model_rows_get(ProviderCredential, where=where, params=params))


def provider_env_secret_get(*, provider: str) -> str:
    """``<PROVIDER>_API_KEY`` from the process environment ("" when unset)."""
    return os.environ.get(f"{provider.upper()}_API_KEY", "").strip()


def provider_credential_secret(credential: ProviderCredential) -> str:
    """The decrypted secret, verified against its fingerprint (never the ciphertext)."""
    return secret_verify(
        credential.secret,
        credential.fingerprint,
        provider=credential.provider,
        scope=credential.scope,
        credential_id=credential.pk,
    )


def provider_key_get(
    *, provider: str, workspace: Workspace | None = None, workspace_id: int | None = None
) -> ProviderSecret | None:
    """The secret to call ``provider`` with for a workspace (any member's key uses it):
    the workspace's own > global > env > None. Without a workspace: the operator's keys only.

    One query at most (both rows at once); raises ProviderKeyDecryptError (503) when the
    stored secret does not verify, rather than falling back silently to another key.
    """
    _provider_known(provider)
    rows = _provider_credentials(workspace_pk=_tenant_pk(workspace, workspace_id), provider=provider)
    return _provider_secret_pick(*rows, provider=provider)


async def provider_key_aget(
    *, provider: str, workspace: Workspace | None = None, workspace_id: int | None = None
) -> ProviderSecret | None:
    """``provider_key_get`` on the proxy's fast lane (async connection pool, no thread)."""
    _provider_known(provider)
    where, params = _provider_credentials_query(
        workspace_pk=_tenant_pk(workspace, workspace_id), provider=provider
    )
    credentials = await model_rows_aget(ProviderCredential, where=where, params=params)
    return _provider_secret_pick(*_own_and_global(credentials), provider=provider)


def _provider_secret_pick(own, global_, *, provider: str) -> ProviderSecret | None:
    for credential in (own, global_):
        if credential is not None:
            return ProviderSecret(secret=provider_credential_secret(credential), source=credential.scope)
    env_secret = provider_env_secret_get(provider=provider)
    if env_secret:
        return ProviderSecret(secret=env_secret, source=PROVIDER_SOURCE_ENV)
    return None


def provider_key_source_get(
    *, provider: str, workspace: Workspace | None = None, workspace_id: int | None = None
) -> str:
    """ "workspace" | "global" | "env" | "none" — without decrypting anything."""
    _provider_known(provider)
    scopes = set(
        ProviderCredential.objects.filter(
            _provider_scope_filter(_tenant_pk(workspace, workspace_id)), provider=provider
        ).values_list("scope", flat=True)
    )
    for scope in (ProviderCredential.Scope.WORKSPACE, ProviderCredential.Scope.GLOBAL):
        if scope in scopes:
            return str(scope)
    if provider_env_secret_get(provider=provider):
        return PROVIDER_SOURCE_ENV
    return PROVIDER_SOURCE_NONE


@dataclass(frozen=True)
class ProviderKeyStatus:
    provider: str
    name: str
    workspace_configured: bool
    workspace_masked: str | None
    global_configured: bool
    global_masked: str | None  # only shown to staff
    source: str


def provider_key_status_list(
    *, workspace: Workspace | None = None, workspace_id: int | None = None
) -> list[ProviderKeyStatus]:
    """Every registered provider with the workspace's own key (masked) and the effective source.

    One query for all providers; nothing is decrypted.
    """
    rows = ProviderCredential.objects.filter(
        _provider_scope_filter(_tenant_pk(workspace, workspace_id))
    ).values_list("provider", "scope", "masked")
    own: dict[str, str] = {}
    global_: dict[str, str] = {}
    for provider, scope, masked in rows:
        (own if scope == ProviderCredential.Scope.WORKSPACE else global_)[provider] = masked
    statuses = []
    for code, info in PROVIDERS.items():
        if code in own:
            source = PROVIDER_SOURCE_WORKSPACE
        elif code in global_:
            source = PROVIDER_SOURCE_GLOBAL
        elif provider_env_secret_get(provider=code):
            source = PROVIDER_SOURCE_ENV
        else:
            source = PROVIDER_SOURCE_NONE
        statuses.append(
            ProviderKeyStatus(
                provider=code,
                name=info.name,
                workspace_configured=code in own,
                workspace_masked=own.get(code),
                global_configured=code in global_,
                global_masked=global_.get(code),
                source=source,
            )
        )
    return statuses
