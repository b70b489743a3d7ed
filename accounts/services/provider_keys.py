"""Bring-your-own (a workspace's) and operator (global) provider keys, encrypted at rest.

A workspace key's set and delete are recorded in its audit log with the masked value only."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.db import transaction

from core.exceptions import ApiError
from core.locks import lock_objects

from ..crypto import ProviderKeyDecryptError, secret_fingerprint, secret_mask, secret_verify
from ..models import KeyReveal, ProviderCredential, User, Workspace
from ..providers import provider_get
from .audit import audit_record
from .errors import field_error

logger = logging.getLogger("tollgate.accounts")

PROVIDER_SECRET_MAX_LENGTH = 512


# --- Provider keys ----------------------------------------------------------------------------


def _provider_clean(provider: str) -> str:
    if provider_get(provider) is None:
        raise ApiError("not_found", f"Unknown provider '{provider}'.", param="provider")
    return provider


def provider_secret_clean(secret) -> str:
    """The one rule for provider secrets (API, pages, admin): stripped, 1–512 printable chars."""
    if not isinstance(secret, str):
        raise field_error("key", "The key must be a string.")
    secret = secret.strip()
    if not secret:
        raise field_error("key", "The key must not be empty.")
    if len(secret) > PROVIDER_SECRET_MAX_LENGTH:
        raise field_error("key", f"The key has at most {PROVIDER_SECRET_MAX_LENGTH} characters.")
    if any(ch.isspace() or not ch.isprintable() for ch in secret):
        raise field_error("key", "The key must not contain spaces or control characters.")
    return secret


def _scope_owner(scope: str, workspace: Workspace | None) -> Workspace | None:
    if scope == ProviderCredential.Scope.WORKSPACE:
        if workspace is None:
            raise ValueError("a workspace provider key needs a workspace")
        return workspace
    if scope == ProviderCredential.Scope.GLOBAL:
        if workspace is not None:
            raise ValueError("a global provider key has no workspace")
        return None
    raise ValueError(f"unknown scope {scope!r}")


def _provider_key_audit(action: str, *, owner: Workspace | None, provider: str, actor, request, **details):
    audit_record(
        action=action,
        actor=actor,
        workspace=owner,  # None for the operator's global keys
        target=f"provider_key:{provider}",
        details={"provider": provider, "scope": "workspace" if owner else "global", **details},
        request=request,
    )


def provider_credential_set(
    *,
    scope: str,
    provider: str,
    secret: str,
    workspace: Workspace | None = None,
    actor: User | None = None,
    request=None,
) -> ProviderCredential:
    """Store (or replace) a provider key, encrypted, with its fingerprint and masked form.

    ``scope="workspace"`` needs ``workspace`` (its key, used for every member's proxy keys;
    callers check ``provider_keys.manage``); ``scope="global"`` is the operator key (callers
    check staff). Empty, over-long or multi-line secrets are refused (the library would store
    "" as NULL).
    """
    provider = _provider_clean(provider)
    secret = provider_secret_clean(secret)
    owner = _scope_owner(scope, workspace)
    values = {"secret": secret, "fingerprint": secret_fingerprint(secret), "masked": secret_mask(secret)}
    with transaction.atomic():
        credential, created = ProviderCredential.objects.update_or_create(
            scope=scope, provider=provider, workspace=owner, defaults=values
        )
        _provider_key_audit(
            "provider_key.set",
            owner=owner,
            provider=provider,
            actor=actor,
            request=request,
            masked=credential.masked,
            replaced=not created,
        )
    logger.info(
        "provider key set",
        extra={
            "provider": provider,
            "scope": scope,
            "workspace_id": owner.pk if owner else None,
            "actor_id": actor.pk if actor else None,
            "masked": credential.masked,
            "is_new": created,
        },
    )
    return credential


def provider_credential_delete(
    *,
    scope: str,
    provider: str,
    workspace: Workspace | None = None,
    actor: User | None = None,
    request=None,
) -> bool:
    """Remove a provider key (idempotent). Returns whether one existed."""
    provider = _provider_clean(provider)
    owner = _scope_owner(scope, workspace)
    with transaction.atomic():
        deleted, _ = ProviderCredential.objects.filter(
            scope=scope, provider=provider, workspace=owner
        ).delete()
        if deleted:
            _provider_key_audit(
                "provider_key.deleted", owner=owner, provider=provider, actor=actor, request=request
            )
    logger.info(
        "provider key deleted",
        extra={
            "provider": provider,
            "scope": scope,
            "workspace_id": owner.pk if owner else None,
            "actor_id": actor.pk if actor else None,
            "deleted": bool(deleted),
        },
    )
    return bool(deleted)


@dataclass
class ReencryptReport:
    reencrypted: int = 0
    failed: list[str] = field(default_factory=list)  # "ProviderCredential 12 (openai, global)"


def provider_secrets_reencrypt() -> ReencryptReport:
    """Re-encrypt every stored secret under the current (first) key and fingerprint key.

    Each row is decrypted with any configured key, verified against its fingerprint, and
    written back inside its own transaction; a row that does not verify is reported and left
    untouched, so the command can be re-run after fixing the keys. Run it after prepending a
    new SALT_KEY (or moving the old SECRET_KEY to SECRET_KEY_FALLBACKS); then the old value
    can be dropped.
    """
    report = ReencryptReport()
    for pk in ProviderCredential.objects.order_by("pk").values_list("pk", flat=True):
        with transaction.atomic():
            rows = lock_objects(ProviderCredential.objects.filter(pk=pk))
            if not rows:
                continue
            credential = rows[0]
            try:
                secret = secret_verify(
                    credential.secret,
                    credential.fingerprint,
                    provider=credential.provider,
                    scope=credential.scope,
                    credential_id=credential.pk,
                )
            except ProviderKeyDecryptError:
                report.failed.append(f"ProviderCredential {pk} ({credential.provider}, {credential.scope})")
                continue
            ProviderCredential.objects.filter(pk=pk).update(
                secret=secret, fingerprint=secret_fingerprint(secret)
            )
            report.reencrypted += 1
    for pk in KeyReveal.objects.filter(secret__isnull=False).order_by("pk").values_list("pk", flat=True):
        with transaction.atomic():
            rows = lock_objects(KeyReveal.objects.filter(pk=pk))
            if not rows or rows[0].secret is None:
                continue
            reveal = rows[0]
            try:
                secret = secret_verify(reveal.secret, reveal.fingerprint, provider="tollgate", scope="reveal")
            except ProviderKeyDecryptError:
                report.failed.append(f"KeyReveal {pk}")
                continue
            KeyReveal.objects.filter(pk=pk).update(secret=secret, fingerprint=secret_fingerprint(secret))
            report.reencrypted += 1
    logger.info(
        "provider secrets re-encrypted",
        extra={"reencrypted": report.reencrypted, "failed": len(report.failed)},
    )
    return report
