"""Customer API keys (sk_agentai_…) of a workspace and their one-time reveal links.

Every create, revoke and rotation is recorded in the workspace's audit log (never the secret:
the key's name and display prefix only)."""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass, field
from datetime import UTC, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from core.exceptions import ApiError
from core.locks import lock_objects
from core.services import cache_counter_incr, counter_row_bump

from ..crypto import secret_fingerprint, secret_verify
from ..keys import api_key_display_prefix, api_key_generate, api_key_hash, api_key_is_well_formed
from ..models import ApiKey, InvalidKeyDay, KeyReveal, User, Workspace
from ..selectors import (
    API_KEY_CACHE_SECONDS,
    API_KEY_REVOKED_MARKER,
    AUTH_FAILURE_WINDOW_SECONDS,
    ApiKeyIdentity,
    api_key_active_count,
    api_key_cache_key,
    api_key_get,
    api_key_identity_from_row,
    api_key_identity_rows,
    auth_failure_limit,
    auth_failure_throttle_error,
    auth_failure_window,
    key_reveal_get,
)
from .audit import audit_record
from .errors import field_error

logger = logging.getLogger("tollgate.accounts")

KEY_REVEAL_TTL = timedelta(hours=24)
API_KEY_TOUCH_INTERVAL_SECONDS = 60


# --- Customer API keys ------------------------------------------------------------------------


def _api_key_insert(*, workspace: Workspace, created_by_id: int, name: str) -> tuple[ApiKey, str]:
    plaintext = api_key_generate()
    api_key = ApiKey.objects.create(
        workspace=workspace,
        created_by_id=created_by_id,
        name=name,
        prefix=api_key_display_prefix(plaintext),
        key_hash=api_key_hash(plaintext),
    )
    return api_key, plaintext


def _api_key_name_clean(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise field_error("name", "A key name is required.")
    if len(name) > 100:
        raise field_error("name", "A key name has at most 100 characters.")
    return name


def _api_key_audit(
    action: str, api_key: ApiKey, *, workspace: Workspace, actor: User | None, request=None, **details
) -> None:
    audit_record(
        action=action,
        actor=actor,
        workspace=workspace,
        target=f"api_key:{api_key.pk}",
        details={"name": api_key.name, "prefix": api_key.prefix, **details},
        request=request,
    )


def api_key_create(
    *, workspace: Workspace, created_by: User, name: str, now=None, request=None
) -> tuple[ApiKey, str]:
    """Create a proxy key of ``workspace`` made by the member ``created_by`` (it acts with their
    role); the plaintext is returned here and never again.

    ``API_KEYS_PER_USER_LIMIT`` caps each member's active keys in a workspace; it is checked
    under a lock on the member's user row, so two concurrent creates cannot both pass it.
    """
    name = _api_key_name_clean(name)
    with transaction.atomic():
        lock_objects(User.objects.filter(pk=created_by.pk))
        limit = settings.API_KEYS_PER_USER_LIMIT
        if api_key_active_count(workspace=workspace, created_by=created_by, now=now) >= limit:
            raise ApiError(
                "invalid_request",
                f"You already have {limit} active API keys in this workspace; revoke one first.",
                param="name",
                limit=limit,
            )
        api_key, plaintext = _api_key_insert(workspace=workspace, created_by_id=created_by.pk, name=name)
        _api_key_audit("api_key.created", api_key, workspace=workspace, actor=created_by, request=request)
    logger.info(
        "api key created",
        extra={"workspace_id": workspace.pk, "user_id": created_by.pk, "key_id": api_key.pk},
    )
    return api_key, plaintext


def api_keys_unusable_create(*, workspace_ids: list[int], name: str) -> dict[int, int]:
    """One key per workspace, in a single INSERT, that can never authenticate (a random hash
    whose plaintext never existed), made by the workspace's personal owner: synthetic usage data
    needs keys to point at. Returns workspace id → key id."""
    owners = dict(Workspace.objects.filter(pk__in=workspace_ids).values_list("pk", "personal_owner_id"))
    keys = ApiKey.objects.bulk_create(
        [
            ApiKey(
                workspace_id=workspace_id,
                created_by_id=owners.get(workspace_id),
                name=name,
                prefix=f"{settings.PROXY_KEY_PREFIX}gen{i % 10}",
                key_hash=hashlib.sha256(secrets.token_bytes(32)).hexdigest(),
            )
            for i, workspace_id in enumerate(workspace_ids)
        ]
    )
    return {key.workspace_id: key.pk for key in keys}


def _api_key_identity(api_key: ApiKey) -> ApiKeyIdentity | str:
    """What the shared cache should hold for the key now: its identity (read back with its
    creator's membership, as the proxy's lookup reads it), or the revoked marker."""
    if api_key.revoked_at is not None or api_key.created_by_id is None:
        return API_KEY_REVOKED_MARKER
    rows = api_key_identity_rows(ApiKey.objects.filter(pk=api_key.pk))
    return api_key_identity_from_row(rows[0]) if rows else API_KEY_REVOKED_MARKER


def _api_key_cache_publish(api_key: ApiKey) -> None:
    """After commit, overwrite the shared-cache identity with the key's new state.

    Overwriting (rather than deleting) closes the race where a request that read the row just
    before the commit caches the stale identity afterwards: the selector only ``add``s.
    """
    cache_key = api_key_cache_key(api_key.key_hash)
    value = _api_key_identity(api_key)
    transaction.on_commit(lambda: cache.set(cache_key, value, API_KEY_CACHE_SECONDS))


def api_keys_cache_republish(*, workspace: Workspace, created_by: User | None = None) -> int:
    """After commit, overwrite the cached identity of every live key of ``workspace`` (only those
    ``created_by`` made, when given) with its state now: for a change the identity carries that
    is not the key's own (the creator's caps, the workspace's state). One query; returns how
    many keys."""
    keys = ApiKey.objects.filter(workspace=workspace, revoked_at__isnull=True)
    if created_by is not None:
        keys = keys.filter(created_by=created_by)
    hashes = dict(keys.values_list("id", "key_hash"))
    values = {
        api_key_cache_key(hashes[row[0]]): api_key_identity_from_row(row)
        # A key whose creator is inactive keeps whatever is cached (the lookup refuses it).
        for row in api_key_identity_rows(keys.filter(created_by__is_active=True))
    }
    if values:
        transaction.on_commit(lambda: cache.set_many(values, API_KEY_CACHE_SECONDS))
    return len(values)


# ``money``: minor units (cents) of the workspace plan's currency; ``credits``: credits. Both
# count each call's customer-facing charge (``UsageEvent.charge_*``).
KEY_LIMIT_UNITS = ("requests", "tokens", "credits", "money")
KEY_LIMIT_WINDOWS = ("day", "month", "total")
KEY_ALLOWED_MODELS_MAX = 50
KEY_MODEL_ID_MAX = 128


def api_key_limits_clean(limits) -> list[dict]:
    """``limits`` validated (400 ``invalid_request`` with ``param``): a list of
    ``{"unit", "window", "amount"}``, at most one per unit and window."""
    if not isinstance(limits, list):
        raise field_error("limits", "limits must be a list.")
    cleaned, seen = [], set()
    for index, item in enumerate(limits):
        param = f"limits[{index}]"
        if not isinstance(item, dict) or set(item) != {"unit", "window", "amount"}:
            raise field_error(param, 'Each limit is {"unit", "window", "amount"}.')
        unit, window, amount = item["unit"], item["window"], item["amount"]
        if unit not in KEY_LIMIT_UNITS:
            raise field_error(f"{param}.unit", f"unit must be one of {', '.join(KEY_LIMIT_UNITS)}.")
        if window not in KEY_LIMIT_WINDOWS:
            raise field_error(f"{param}.window", f"window must be one of {', '.join(KEY_LIMIT_WINDOWS)}.")
        if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= 2**62:
            raise field_error(f"{param}.amount", "amount must be a positive integer.")
        if (unit, window) in seen:
            raise field_error(param, f"There is already a {unit} limit per {window}.")
        seen.add((unit, window))
        cleaned.append({"unit": unit, "window": window, "amount": amount})
    return cleaned


def api_key_allowed_models_clean(models) -> list[str]:
    if not isinstance(models, list):
        raise field_error("allowed_models", "allowed_models must be a list of model ids.")
    if len(models) > KEY_ALLOWED_MODELS_MAX:
        raise field_error("allowed_models", f"At most {KEY_ALLOWED_MODELS_MAX} models.")
    cleaned = []
    for model in models:
        if not isinstance(model, str) or not model.strip() or len(model) > KEY_MODEL_ID_MAX:
            raise field_error(
                "allowed_models", f"Each model id is a string of 1 to {KEY_MODEL_ID_MAX} characters."
            )
        if model not in cleaned:
            cleaned.append(model)
    return cleaned


_UNSET = object()


def api_key_limits_set(
    *,
    workspace: Workspace,
    key_id,
    limits=_UNSET,
    allowed_models=_UNSET,
    actor: User | None = None,
    request=None,
) -> ApiKey:
    """Set a key's request/token/credit/money limits and/or its model allow-list (each left as is when not
    given). The cached identity is re-published after commit, so the proxy enforces the new
    controls from the key's very next call on any worker."""
    changes = {}
    if limits is not _UNSET:
        changes["limits"] = api_key_limits_clean(limits)
    if allowed_models is not _UNSET:
        changes["allowed_models"] = api_key_allowed_models_clean(allowed_models)
    with transaction.atomic():
        api_key = api_key_get(workspace=workspace, key_id=key_id)
        api_key = lock_objects(ApiKey.objects.filter(pk=api_key.pk))[0]
        before = {field: getattr(api_key, field) for field in changes}
        for field_name, value in changes.items():
            setattr(api_key, field_name, value)
        api_key.save(update_fields=[*changes, "updated_at"])
        _api_key_audit(
            "api_key.limits_changed",
            api_key,
            workspace=workspace,
            actor=actor,
            request=request,
            before=before,
            after=changes,
        )
        _api_key_cache_publish(api_key)
    return api_key


def api_key_revoke(
    *, workspace: Workspace, key_id, actor: User | None = None, now=None, request=None
) -> ApiKey:
    """Revoke one of the workspace's keys now (idempotent). The very next use answers 401 from
    any worker. Who may revoke which key is the caller's check (``api_key_manageable_get``)."""
    now = now or timezone.now()
    with transaction.atomic():
        api_key = api_key_get(workspace=workspace, key_id=key_id)
        revoked = ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(
            revoked_at=now, updated_at=now
        )
        if revoked:
            api_key.revoked_at = now
            _api_key_audit("api_key.revoked", api_key, workspace=workspace, actor=actor, request=request)
        else:
            api_key.refresh_from_db(fields=["revoked_at"])
        _api_key_cache_publish(api_key)
    logger.info(
        "api key revoked",
        extra={"workspace_id": workspace.pk, "user_id": actor.pk if actor else None, "key_id": api_key.pk},
    )
    return api_key


def api_keys_revoke_created_by(
    *, workspace: Workspace, user: User, now=None, actor: User | None = None, request=None
) -> list[ApiKey]:
    """Revoke every key ``user`` created in ``workspace`` that is not revoked yet (a member who
    leaves or is removed takes no working key along). After commit, each key's cached identity
    becomes the revoked marker, so its next call answers 401 from any worker. Returns them."""
    now = now or timezone.now()
    with transaction.atomic():
        keys = lock_objects(
            ApiKey.objects.filter(workspace=workspace, created_by=user, revoked_at__isnull=True)
        )
        ApiKey.objects.filter(pk__in=[key.pk for key in keys]).update(revoked_at=now, updated_at=now)
        for api_key in keys:
            api_key.revoked_at = api_key.updated_at = now
            _api_key_audit(
                "api_key.revoked",
                api_key,
                workspace=workspace,
                actor=actor,
                request=request,
                created_by=user.email,
            )
            _api_key_cache_publish(api_key)
    if keys:
        logger.info(
            "api keys of a member revoked",
            extra={"workspace_id": workspace.pk, "user_id": user.pk, "count": len(keys)},
        )
    return keys


@dataclass
class ApiKeyRotation:
    new_key: ApiKey
    plaintext: str
    old_key: ApiKey


def api_key_rotate(
    *, workspace: Workspace, key_id, actor: User | None = None, grace_seconds: int = 0, now=None, request=None
) -> ApiKeyRotation:
    """Replace a key: a new one now; the old one revoked now or expiring after the grace period.

    The replacement keeps the old key's creator (it acts with their role, whoever rotates it).
    Rotation does not count against the active-key limit (it is a replacement). A key already
    revoked or already on its way out cannot be rotated again (the key's row lock makes that
    hold for two rotations at once), nor a key whose creator's account is gone.
    """
    now = now or timezone.now()
    max_grace = settings.API_KEY_ROTATE_MAX_GRACE_SECONDS
    if not isinstance(grace_seconds, int) or not 0 <= grace_seconds <= max_grace:
        raise field_error("grace_seconds", f"grace_seconds must be between 0 and {max_grace}.")
    with transaction.atomic():
        old_key = api_key_get(workspace=workspace, key_id=key_id)
        old_key = lock_objects(ApiKey.objects.filter(pk=old_key.pk))[0]
        if not old_key.is_usable(now=now) or old_key.expires_at is not None:
            raise ApiError("conflict", "This key is revoked or already being rotated.", param="id")
        if old_key.created_by_id is None:
            raise ApiError("conflict", "This key's creator has left; create a new key instead.", param="id")
        if grace_seconds:
            old_key.expires_at = now + timedelta(seconds=grace_seconds)
        else:
            old_key.revoked_at = now
        old_key.save(update_fields=["expires_at", "revoked_at", "updated_at"])
        new_key, plaintext = _api_key_insert(
            workspace=workspace, created_by_id=old_key.created_by_id, name=old_key.name
        )
        _api_key_audit(
            "api_key.rotated",
            old_key,
            workspace=workspace,
            actor=actor,
            request=request,
            new_key_id=new_key.pk,
            new_prefix=new_key.prefix,
            grace_seconds=grace_seconds,
        )
        _api_key_cache_publish(old_key)
    logger.info(
        "api key rotated",
        extra={
            "workspace_id": workspace.pk,
            "user_id": actor.pk if actor else None,
            "key_id": old_key.pk,
            "new_key_id": new_key.pk,
            "grace": grace_seconds,
        },
    )
    return ApiKeyRotation(new_key=new_key, plaintext=plaintext, old_key=old_key)


def api_key_touch(*, identity, now=None) -> bool:
    """Record use at most once a minute per key: a shared-cache gate, then one UPDATE.

    Returns whether a write happened. The UPDATE never moves ``last_used_at`` backwards.
    """
    if not cache.add(f"apikey-touch:{identity.key_id}", 1, API_KEY_TOUCH_INTERVAL_SECONDS):
        return False
    now = now or timezone.now()
    ApiKey.objects.filter(pk=identity.key_id).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=now)
    ).update(last_used_at=now)
    return True


def invalid_key_refusal_record(*, raw_key: str, now=None) -> bool:
    """Count a refused key against its workspace's day, once per key and minute.

    Called when a well-formed key is refused. A shared-cache gate keeps a flood of refusals to
    one lookup and one row update per key per minute. Returns whether a minute was counted
    (False for a key nobody was ever issued).
    """
    if not api_key_is_well_formed(raw_key):
        return False
    now = now or timezone.now()
    key_hash = api_key_hash(raw_key)
    if not cache.add(f"invalid-key:{key_hash}:{int(now.timestamp()) // 60}", 1, 120):
        return False
    workspace_id = ApiKey.objects.filter(key_hash=key_hash).values_list("workspace_id", flat=True).first()
    if workspace_id is None:
        return False
    counter_row_bump(
        InvalidKeyDay, field="minutes", workspace_id=workspace_id, day=now.astimezone(UTC).date()
    )
    return True


def auth_failure_record(*, address: str, now: float | None = None) -> None:
    """Count one refused key from ``address`` in the current minute; raise the 429 past the limit.

    One atomic INCR in the shared cache (fixed one-minute window, as ``proxy.ratelimit``), so
    the limit holds across processes. Reaching the limit logs one warning per address and
    minute (the INCR that returns exactly the limit happens once); the key is never logged.
    """
    limit = auth_failure_limit()
    if limit <= 0:
        return
    counter, reset_at = auth_failure_window(address=address, now=now)
    count = cache_counter_incr(counter, ttl=AUTH_FAILURE_WINDOW_SECONDS + 5)
    if count == limit:
        logger.warning(
            "failed API-key authentications reached the limit for a client address; "
            "its unknown keys are refused until the minute ends",
            extra={"client_address": address, "limit": limit, "window_ends_at": reset_at},
        )
    if count > limit:
        raise auth_failure_throttle_error(reset_at=reset_at, now=now)


# --- One-time reveal links --------------------------------------------------------------------


def api_key_reveal_link_create(*, api_key: ApiKey, plaintext: str, now=None) -> str:
    """An absolute, one-time, 24-hour URL that shows ``plaintext`` once to the key's creator."""
    if api_key_hash(plaintext) != api_key.key_hash:
        raise ValueError("plaintext does not belong to this key")
    now = now or timezone.now()
    token = secrets.token_urlsafe(32)
    KeyReveal.objects.create(
        api_key=api_key,
        token_hash=hashlib.sha256(token.encode()).hexdigest(),
        secret=plaintext,
        fingerprint=secret_fingerprint(plaintext),
        expires_at=now + KEY_REVEAL_TTL,
    )
    return settings.SITE_URL + reverse("accounts:key-reveal", kwargs={"token": token})


@dataclass
class KeyRevealResult:
    api_key: ApiKey
    plaintext: str | None  # None: already shown, expired, or the key is no longer usable
    reason: str = field(default="")


def key_reveal_consume(*, user: User, token: str, now=None) -> KeyRevealResult:
    """Show the plaintext once: read it and wipe it in the same locked transaction."""
    now = now or timezone.now()
    with transaction.atomic():
        reveal = key_reveal_get(user=user, token=token)
        lock_objects(KeyReveal.objects.filter(pk=reveal.pk))
        reveal.refresh_from_db()
        api_key = reveal.api_key
        if reveal.secret is None:
            return KeyRevealResult(api_key=api_key, plaintext=None, reason="already_shown")
        wipe = {"secret": None, "fingerprint": "", "updated_at": now}
        if reveal.expires_at <= now or not api_key.is_usable(now=now):
            KeyReveal.objects.filter(pk=reveal.pk).update(**wipe)
            return KeyRevealResult(api_key=api_key, plaintext=None, reason="expired")
        plaintext = secret_verify(reveal.secret, reveal.fingerprint, provider="tollgate", scope="reveal")
        KeyReveal.objects.filter(pk=reveal.pk).update(revealed_at=now, **wipe)
    return KeyRevealResult(api_key=api_key, plaintext=plaintext)


def key_reveals_purge(*, now=None) -> int:
    """Wipe the plaintext of every expired, unshown reveal (safe to run any time)."""
    now = now or timezone.now()
    return KeyReveal.objects.filter(expires_at__lte=now, secret__isnull=False).update(
        secret=None, fingerprint="", updated_at=now
    )
