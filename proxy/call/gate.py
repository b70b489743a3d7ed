"""The gate: admission, the key, its workspace's plan, the rate limit and providers in cooldown.

The tenant of a call is the key's workspace: plan, quota, credits, provider keys and usage are
keyed by its id; the key's creator (a member) must be active. A key this process has seen passes
in ONE Redis round trip (``GATE_LUA``: the key's cached identity or revocation marker, the plan
catalogue's version, the workspace's plan entry, the provider-keys version, the cooldown flags,
the rate-limit INCR). A key's identity is cached only while its creator is active
(``accounts.signals``). Anything else — a key's first call in this process, an entry missing
from the cache — takes the ORM gate once in a thread (``gate_orm``), which teaches this process
the key's workspace and creator.

Admission: at most ``PROXY_ADMISSION_CONCURRENCY`` calls per worker between arrival and
reserve, first come first admitted, so a wave of simultaneous arrivals reaches its providers a
few at a time instead of all at once (docs/proxy.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import DEFAULT_DB_ALIAS
from django.utils import timezone

from accounts.keys import api_key_hash, api_key_is_well_formed
from accounts.models import Workspace
from accounts.providers import PROVIDERS
from accounts.selectors import (
    API_KEY_REVOKED_MARKER,
    PROVIDER_KEYS_VERSION_KEY,
    ApiKeyIdentity,
    api_key_cache_key,
)
from accounts.services import api_key_touch
from accounts.services.verification import user_email_verified
from billing.selectors import (
    CATALOG_VERSION_KEY,
    plan_for_workspace_get,
    plan_from_cached_get,
    workspace_plan_cache_key,
)
from core.fastio import cache_decode, cache_key, per_loop, redis_call
from core.rawsql import model_rows_aget

from ..dbcall import db_call
from ..ratelimit import (
    WINDOW_SECONDS,
    RateLimitState,
    rate_limit_error,
    rate_limit_hit,
    rate_limit_state,
    rate_limit_window,
)
from ..router import cooldown_key
from ..services import rate_limited_minute_record
from .detached import background_task_start
from .scripts import script_run

# --- Admission -------------------------------------------------------------------------------

_ticket: contextvars.ContextVar[Ticket | None] = contextvars.ContextVar("proxy_admission", default=None)
_semaphores: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}


class Ticket:
    __slots__ = ("semaphore",)

    def __init__(self, semaphore: asyncio.Semaphore | None):
        self.semaphore = semaphore

    def release(self) -> None:
        """Idempotent: the first call frees the slot."""
        if self.semaphore is not None:
            semaphore, self.semaphore = self.semaphore, None
            semaphore.release()


async def admission_enter() -> Ticket:
    """Wait for this call's turn; the ticket is also this context's, for ``admission_leave``."""
    limit = settings.PROXY_ADMISSION_CONCURRENCY
    if limit <= 0:
        ticket = Ticket(None)
    else:
        semaphore = per_loop(_semaphores, lambda: asyncio.Semaphore(limit))
        await semaphore.acquire()
        ticket = Ticket(semaphore)
    _ticket.set(ticket)
    return ticket


def admission_leave() -> None:
    """The call is admitted (reserved, or refused): let the next one in."""
    ticket = _ticket.get()
    if ticket is not None:
        ticket.release()


# --- The gate in one Redis script -------------------------------------------------------------

GATE_LUA = """
-- KEYS: api-key entry, plan-catalogue version, workspace's plan entry, rate-limit counter,
--       provider-keys version, then every provider's cooldown flag
-- ARGV: the revoked marker as the cache stores it, rate-limit window TTL
local ident = redis.call('GET', KEYS[1])
if not ident or ident == ARGV[1] then return {false, false, false, -1} end
local version = redis.call('GET', KEYS[2])
local entry = redis.call('GET', KEYS[3])
if not version or not entry then return {ident, version, entry, -1} end
local count = redis.call('INCR', KEYS[4])
if count == 1 then redis.call('EXPIRE', KEYS[4], ARGV[2]) end
local cooling = {}
for i = 6, #KEYS do cooling[i - 5] = redis.call('EXISTS', KEYS[i]) end
return {ident, version, entry, count, redis.call('GET', KEYS[5]), cooling}
"""

# key hash -> (key id, workspace id, creator's user id): never changes for a key
_key_owners: dict[str, tuple[int, int, int]] = {}
_PROCESS_CACHE_MAX = 100_000


def bearer_key(request) -> str | None:
    """The presented key when the header is a plain well-formed ``Bearer sk_agentai_…``."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, raw_key = header.partition(" ")
    if scheme.lower() != "bearer" or not api_key_is_well_formed(raw_key):
        return None
    return raw_key


def key_owner_learn(*, raw_key: str, identity: ApiKeyIdentity) -> None:
    """Remember the key's workspace and creator, after the ORM gate authenticated it once in
    this process."""
    if len(_key_owners) >= _PROCESS_CACHE_MAX:
        _key_owners.clear()
    _key_owners[api_key_hash(raw_key)] = (identity.key_id, identity.workspace_id, identity.user_id)


def workspace_ref(workspace_id: int) -> Workspace:
    """The call's workspace as a model instance that holds its id only (any other field would
    load on first read): the call keys everything by that id, so the gate reads no row for it."""
    return Workspace.from_db(DEFAULT_DB_ALIAS, ["id"], [workspace_id])


_learnings: dict = {}  # event loop -> {key hash -> future done when its ORM gate has ended}
KEY_LEARNING_WAIT_SECONDS = 5.0


@contextlib.contextmanager
def key_learning(raw_key: str):
    """Mark this key's ORM gate as running in this process, so that the other calls of a burst
    on a fresh worker wait for it (``key_learning_wait``) instead of all taking the ORM gate."""
    key_hash = api_key_hash(raw_key)
    learning = per_loop(_learnings, dict)
    leader = key_hash not in learning
    if leader:
        learning[key_hash] = asyncio.get_running_loop().create_future()
    try:
        yield
    finally:
        if leader:
            done = learning.pop(key_hash)
            if not done.done():
                done.set_result(None)


async def key_learning_wait(raw_key: str) -> bool:
    """Wait (once, briefly) for another call's ORM gate of this key; whether there was one."""
    pending = per_loop(_learnings, dict).get(api_key_hash(raw_key))
    if pending is None:
        return False
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(pending), KEY_LEARNING_WAIT_SECONDS)
    return True


@dataclass(frozen=True)
class Gate:
    user: object  # the key's creator
    workspace: Workspace  # the key's workspace: the tenant (``workspace_ref``)
    identity: ApiKeyIdentity
    plan: object
    rate: RateLimitState
    credentials_version: bytes | None
    cooling: frozenset[str]  # providers in cooldown right now


async def gate_script(*, raw_key: str) -> tuple[Gate | None, int | None]:
    """(Gate, count) from the one script, or (None, count) to take the ORM gate instead.

    ``count`` is this request's rate-limit count when the script already counted it (the ORM
    gate must not count it again), else None.
    """
    key_hash = api_key_hash(raw_key)
    owner = _key_owners.get(key_hash)
    if owner is None:
        return None, None
    key_id, workspace_id, user_id = owner
    rl_key, reset_at = rate_limit_window(key_id=key_id)
    reply = await redis_call(
        script_run(
            "gate",
            GATE_LUA,
            keys=[
                cache_key(api_key_cache_key(key_hash)),
                cache_key(CATALOG_VERSION_KEY),
                cache_key(workspace_plan_cache_key(workspace_id)),
                cache_key(rl_key),
                cache_key(PROVIDER_KEYS_VERSION_KEY),
                *_cooldown_keys(),
            ],
            args=[_revoked_marker_raw(), WINDOW_SECONDS + 5],
        )
    )
    ident_raw, version_raw, entry_raw, count = reply[:4]
    if count < 0:
        return None, None
    credentials_version, flags = reply[4], reply[5]
    cooling = frozenset(code for code, flag in zip(PROVIDERS, flags, strict=True) if flag)
    identity = _gate_value(ident_raw)
    now = timezone.now()
    if (
        not isinstance(identity, ApiKeyIdentity)
        or (identity.key_id, identity.workspace_id, identity.user_id) != owner
        or (identity.expires_at is not None and identity.expires_at <= now)
        or identity.suspended  # the ORM gate answers the 403
    ):
        return None, count
    plan = plan_from_cached_get(version=_gate_value(version_raw), entry=_gate_value(entry_raw), now=now)
    if plan is None:
        return None, count
    user = await _user_get(user_id)
    if user is None or not user_email_verified(user):  # the ORM gate re-reads and refuses
        return None, count
    rate = rate_limit_state(limit=plan.rate_limit_per_minute, count=count, reset_at=reset_at)
    gate = Gate(
        user=user,
        workspace=workspace_ref(workspace_id),
        identity=identity,
        plan=plan,
        rate=rate,
        credentials_version=credentials_version,
        cooling=cooling,
    )
    return gate, count


_gate_values: dict[bytes, object] = {}  # a cached value's bytes -> the value decoded
_MISSING = object()
_GATE_VALUES_MAX = 10_000


def _gate_value(raw: bytes | None):
    """The gate's cached values (a key's identity, the catalogue version, a workspace's plan
    entry) are immutable and the same on every call of a key: each distinct value is decoded once."""
    if raw is None:
        return None
    value = _gate_values.get(raw, _MISSING)
    if value is _MISSING:
        if len(_gate_values) >= _GATE_VALUES_MAX:
            _gate_values.clear()
        value = _gate_values[raw] = cache_decode(raw)
    return value


def _cooldown_keys() -> list[str]:
    return [cache_key(cooldown_key(code)) for code in PROVIDERS]


_users: dict[int, tuple[float, object]] = {}
USER_CACHE_SECONDS = 300


async def _user_get(user_id: int):
    """The key creator's User row, kept in process (``request.user``): whether they are active
    is decided by the key entry above; a creator found inactive here takes the ORM gate."""
    now = time.monotonic()
    cached = _users.get(user_id)
    if cached is not None and now - cached[0] < USER_CACHE_SECONDS:
        return cached[1]
    users = await model_rows_aget(get_user_model(), where='"is_active" AND "id" = %s', params=[user_id])
    if not users:
        _users.pop(user_id, None)
        return None
    if len(_users) >= _PROCESS_CACHE_MAX:
        _users.clear()
    _users[user_id] = (now, users[0])
    return users[0]


_marker_raw: bytes | None = None


def _revoked_marker_raw() -> bytes:
    global _marker_raw
    if _marker_raw is None:
        _marker_raw = cache.client.encode(API_KEY_REVOKED_MARKER)
    return _marker_raw


# --- The view's gate ---------------------------------------------------------------------------

_touched: dict[int, float] = {}
TOUCH_INTERVAL_SECONDS = 60


def _touch_due(key_id: int) -> bool:
    """``api_key_touch`` gates on the shared cache (a round trip per call); this process asks it
    at most once a minute per key, which is all ``last_used_at`` needs."""
    now = time.monotonic()
    if now - _touched.get(key_id, -TOUCH_INTERVAL_SECONDS) < TOUCH_INTERVAL_SECONDS:
        return False
    if len(_touched) > 100_000:
        _touched.clear()
    _touched[key_id] = now
    return True


def gate_orm(view, request, counted: int | None = None):
    """Auth, plan and rate limit on the ORM path (in a thread): a couple of indexed queries.
    Sets ``view.workspace``, the key's workspace.

    ``counted``: the gate's script already counted this request in its rate-limit window.
    """
    view.initial(request)
    identity = request.auth
    view.workspace = workspace_ref(identity.workspace_id)
    plan = plan_for_workspace_get(workspace=view.workspace)
    if counted is None:
        state = rate_limit_hit(key_id=identity.key_id, limit=plan.rate_limit_per_minute)
    else:
        _key, reset_at = rate_limit_window(key_id=identity.key_id)
        state = rate_limit_state(limit=plan.rate_limit_per_minute, count=counted, reset_at=reset_at)
    view._ratelimit_headers = state.headers()
    if state.exceeded:
        if state.first_refusal:
            rate_limited_minute_record(workspace_id=identity.workspace_id, day=timezone.now().date())
        raise rate_limit_error(state)
    if _touch_due(identity.key_id):
        api_key_touch(identity=identity)
    return plan


async def gate_pass(view, request):
    """The workspace's plan once the gate let the request in (sets ``request.user``/``auth``,
    the view's workspace, rate-limit headers, credentials version and cooldowns); raises its
    refusal."""
    raw_key = bearer_key(request)
    counted = None
    if raw_key is not None:
        passed, counted = await gate_script(raw_key=raw_key)
        if passed is None and counted is None and await key_learning_wait(raw_key):
            passed, counted = await gate_script(raw_key=raw_key)  # learnt meanwhile
        if passed is not None:
            request.user = passed.user
            request.auth = passed.identity
            view.workspace = passed.workspace
            view.credentials_version = passed.credentials_version
            view.cooling = passed.cooling
            view.initial(request)  # permissions etc.; authentication is already done
            view._ratelimit_headers = passed.rate.headers()
            if passed.rate.exceeded:
                if passed.rate.first_refusal:
                    background_task_start(
                        db_call(
                            rate_limited_minute_record,
                            workspace_id=passed.identity.workspace_id,
                            day=timezone.now().date(),
                        )
                    )
                raise rate_limit_error(passed.rate)
            if _touch_due(passed.identity.key_id):
                background_task_start(db_call(api_key_touch, identity=passed.identity))
            return passed.plan
    if raw_key is None:
        return await db_call(gate_orm, view, request, counted)
    with key_learning(raw_key):
        plan = await db_call(gate_orm, view, request, counted)
        key_owner_learn(raw_key=raw_key, identity=request.auth)
    return plan
