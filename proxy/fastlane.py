"""The proxy's fast lane: a call's gate, reserve and settle as coroutines on the event loop.

With the ORM path every call ran three database blocks in worker threads; under load those
threads and the event loop fought over one GIL per process, which stretched each ~1 ms block
several times over and capped a worker well below what its CPU could serve (docs/speed.md).
Here the steady hot case runs without a thread, on ``core.fastio``'s async pool and Redis:

- gate: ONE Redis round trip (a Lua script: the key's cached identity or revocation marker,
  the plan-catalogue version, the user's plan entry, the provider-keys version, every
  provider's cooldown flag, the rate-limit INCR). A key's identity is cached only while its
  user is active (``accounts.signals``), so no user query is needed;
- reserve: the provider key from an in-process cache tagged with the provider-keys version, then
  a budget script (INCRBY, undone past the cap) beside the quota reservations: one of this
  worker's spares (``billing.quota_pool``) or billing's one reserve statement, which also takes
  spares for the next calls; each undone when the other is refused;
- settle: the grouped settle writer (calls settling while a statement is in flight share the
  next one), then grouped Redis moves of the budget counters and failure runs.

The SQL is the ORM path's own (built by the same functions), so both paths keep the same
books. Anything off the steady case falls back to the ORM path in a thread and behaves exactly
as before: a key's first call in this process (the calls of a burst that arrive meanwhile wait
for it: ``key_learning``), a key, user-plan or budget entry missing from the cache, a catalogue version this
process has not loaded, a refused reserve (counter row to create, quota exhausted → credits),
credit-funded, failed or BYOK-quota calls, and quota alerts to queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import date

from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone
from redis.exceptions import NoScriptError

from accounts.keys import api_key_hash, api_key_is_well_formed
from accounts.providers import PROVIDERS
from accounts.selectors import (
    API_KEY_REVOKED_MARKER,
    PROVIDER_KEYS_VERSION_KEY,
    ApiKeyIdentity,
    api_key_cache_key,
    provider_key_aget,
)
from billing.quota_pool import quota_reserve_pooled
from billing.selectors import CATALOG_VERSION_KEY, plan_from_cached_get, user_plan_cache_key
from billing.services import quota_alert_may_be_due, quota_reserve_many_fast, quota_settle_pairs_sql
from core.exceptions import ApiError
from core.fastio import cache_decode, cache_key, db_fetch, per_loop, redis_call, redis_client
from core.rawsql import model_rows_aget

from . import budget, sandbox
from .dbcall import db_call
from .funding import (
    Funding,
    funding_quota_block,
    funding_release,
    funding_reserve,
    funding_settle_finish,
    funding_settle_pairs,
)
from .ratelimit import WINDOW_SECONDS, RateLimitState, rate_limit_state, rate_limit_window
from .router import cooldown_key, failures_key
from .selectors import catalog_get, catalog_is_fresh
from .services import (
    BudgetExhausted,
    CallRecord,
    NoProviderKey,
    PreparedCall,
    attempt_prepared,
    call_cost_get,
    settle_batch_sql,
    settles_in_one_statement,
    usage_event_build,
)

logger = logging.getLogger("tollgate.proxy")

# --- Gate: key, plan, rate limit in one round trip -------------------------------------------

GATE_LUA = """
-- KEYS: api-key entry, plan-catalogue version, user's plan entry, rate-limit counter,
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


class _SettleCounters:
    """The Redis side of settles, grouped: one script per flush, not one per call.

    A flush starts as soon as a call settles and none is in flight; calls settling meanwhile
    ride on the next one. Under load that is one round trip for many calls; alone, one per call
    as before. Delaying a budget move is safe: until it lands the counter still holds the
    call's reserved maximum, which only makes the cap stricter.
    """

    def __init__(self):
        self.holds: list[tuple[list, list]] = []  # (keys, args) of budget.SETTLE_LUA per hold
        self.resets: set[str] = set()
        self.flushing: asyncio.Task | None = None

    def add(self, *, hold: tuple[list, list] | None, failures_key: str) -> None:
        if hold is not None:
            self.holds.append(hold)
        self.resets.add(failures_key)
        if self.flushing is None:
            self.flushing = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        try:
            while self.holds or self.resets:
                holds, resets = self.holds, self.resets
                self.holds, self.resets = [], set()
                try:
                    await _budget_settle_many(holds, deletes=list(resets))
                except Exception:  # holds stay at the reserved maximum until swept: stricter
                    logger.warning("budget counter moves not applied", exc_info=True)
        finally:
            self.flushing = None


_settle_counters: dict[asyncio.AbstractEventLoop, _SettleCounters] = {}


def _settle_counters_get() -> _SettleCounters:
    return per_loop(_settle_counters, _SettleCounters)


async def settle_counters_drain() -> None:
    """Let this loop's pending budget moves and failure-run resets land (worker shutdown)."""
    counters = _settle_counters.get(asyncio.get_running_loop())
    if counters is not None and counters.flushing is not None:
        await counters.flushing


_scripts: dict[int, dict] = {}
_key_owners: dict[str, tuple[int, int]] = {}  # key hash -> (key id, user id): never changes
_PROCESS_CACHE_MAX = 100_000


def _script_run(name: str, lua: str, *, keys: list, args: list):
    """EVALSHA the script (loading it when the server does not know it). redis-py's
    ``AsyncScript.__call__`` does the same after a Protocol ``isinstance`` check that cost ~1 %
    of a call's CPU in the stream profile."""
    client = redis_client()
    scripts = _scripts.setdefault(id(client), {})
    script = scripts.get(name)
    if script is None:
        script = scripts[name] = client.register_script(lua)
    return _evalsha(client, script, len(keys), *keys, *args)


async def _evalsha(client, script, numkeys: int, *keys_and_args):
    try:
        return await client.evalsha(script.sha, numkeys, *keys_and_args)
    except NoScriptError:  # a restarted or different server: load it and run it again
        script.sha = await client.script_load(script.script)
        return await client.evalsha(script.sha, numkeys, *keys_and_args)


def bearer_key(request) -> str | None:
    """The presented key when the header is a plain well-formed ``Bearer sk_agentai_…``."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, raw_key = header.partition(" ")
    if scheme.lower() != "bearer" or not api_key_is_well_formed(raw_key):
        return None
    return raw_key


def key_owner_learn(*, raw_key: str, identity: ApiKeyIdentity) -> None:
    """Remember whose key this is, after the ORM path authenticated it once in this process."""
    if len(_key_owners) >= _PROCESS_CACHE_MAX:
        _key_owners.clear()
    _key_owners[api_key_hash(raw_key)] = (identity.key_id, identity.user_id)


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
    user: object
    identity: ApiKeyIdentity
    plan: object
    rate: RateLimitState
    credentials_version: bytes | None
    cooling: frozenset[str]  # providers in cooldown right now


async def gate(*, raw_key: str) -> tuple[Gate | None, int | None]:
    """(Gate, count) on the fast lane, or (None, count) to run the ORM gate instead.

    ``count`` is this request's rate-limit count when the script already counted it (the ORM
    gate must not count it again), else None. The identity entry exists only for an active key
    of an active user (``accounts.signals``), so no user query is needed here.
    """
    key_hash = api_key_hash(raw_key)
    owner = _key_owners.get(key_hash)
    if owner is None:
        return None, None
    key_id, user_id = owner
    rl_key, reset_at = rate_limit_window(key_id=key_id)
    reply = await redis_call(
        _script_run(
            "gate",
            GATE_LUA,
            keys=[
                cache_key(api_key_cache_key(key_hash)),
                cache_key(CATALOG_VERSION_KEY),
                cache_key(user_plan_cache_key(user_id)),
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
        or (identity.key_id, identity.user_id) != owner
        or (identity.expires_at is not None and identity.expires_at <= now)
    ):
        return None, count
    plan = plan_from_cached_get(version=_gate_value(version_raw), entry=_gate_value(entry_raw), now=now)
    if plan is None:
        return None, count
    user = await _user_get(user_id)
    if user is None:
        return None, count
    rate = rate_limit_state(limit=plan.rate_limit_per_minute, count=count, reset_at=reset_at)
    gate = Gate(
        user=user,
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
    """The gate's cached values (a key's identity, the catalogue version, a user's plan entry)
    are immutable and the same on every call of a key: each distinct value is decoded once."""
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
    """The caller's User row, kept in process: whether the user is active is decided by the key
    entry above, so the row only feeds what the call records (its id) and ORM fallbacks."""
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
        from django.core.cache import cache

        _marker_raw = cache.client.encode(API_KEY_REVOKED_MARKER)
    return _marker_raw


# --- Reserve ---------------------------------------------------------------------------------


async def _budget_reserve(*, day, amount_micro: int, hold_id) -> bool:
    if amount_micro <= 0:
        return True
    keys, args = budget.reserve_script_args(day=day, amount_micro=amount_micro, hold_id=hold_id)
    for _ in range(2):
        held = await redis_call(_script_run("budget", budget.RESERVE_LUA, keys=keys, args=args))
        if held >= 0:
            return held == 1
        await db_call(budget.budget_counter_ensure, day)  # rebuilt from DailySpend, then retry
    return await db_call(budget.budget_reserve, day=day, amount_micro=amount_micro, hold_id=hold_id)


async def _budget_settle_many(holds: list[tuple[list, list]], *, deletes: list[str] = ()) -> None:
    """``budget.SETTLE_LUA`` for many holds (and keys to delete) in one round trip."""
    keys, args = [], []
    for hold_keys, hold_args in holds:
        keys += hold_keys
        args += hold_args
    overshoots = await redis_call(
        _script_run(
            "settle",
            budget.SETTLE_LUA,
            keys=[*keys, *deletes],
            args=[budget.budget_cap_micro(), len(holds), *args],
        )
    )
    for (hold_keys, _args), over in zip(holds, overshoots, strict=False):
        if int(over):
            day = date.fromisoformat(hold_keys[0].rsplit(":", 1)[1])
            budget.budget_overshoot_log(day=day, overshoot_micro=int(over))


async def _budget_release(*, day, amount_micro: int, hold_id) -> None:
    if amount_micro > 0:
        hold = budget.settle_script_item(
            day=day, hold_id=hold_id, reserved_micro=amount_micro, actual_micro=0
        )
        await _budget_settle_many([hold])


_credentials: dict[tuple[int, str], object] = {}  # (user id, provider) -> ProviderSecret | None
_credentials_version: bytes | None = None


async def _resolve_key(*, user, provider: str, credentials_version: bytes | None) -> tuple[str, str]:
    """personal > global > env > sandbox. Decrypted credentials are
    kept in process while the shared provider-keys version (read by the gate) does not move."""
    global _credentials_version
    secret = None
    if provider != sandbox.PROVIDER:
        if credentials_version is None or credentials_version != _credentials_version:
            _credentials.clear()
            _credentials_version = credentials_version
        cache_entry = (user.pk, provider)
        if credentials_version is not None and cache_entry in _credentials:
            secret = _credentials[cache_entry]
        else:
            secret = await provider_key_aget(user=user, provider=provider)
            if credentials_version is not None:
                if len(_credentials) >= _PROCESS_CACHE_MAX:
                    _credentials.clear()
                _credentials[cache_entry] = secret
            else:  # no version published yet: publish one so later calls can cache
                await redis_call(
                    redis_client().set(cache_key(PROVIDER_KEYS_VERSION_KEY), _new_version_raw(), nx=True)
                )
    if secret is not None:
        return secret.source, secret.secret
    if sandbox.sandbox_enabled():
        return "sandbox", ""
    raise NoProviderKey(provider)


def _new_version_raw() -> bytes:
    from django.core.cache import cache

    return cache.client.encode(uuid.uuid4().hex)


async def proxy_call_aprepare(
    *,
    user,
    provider: str,
    endpoint: str,
    requested_model: str,
    prompt_tokens: int,
    max_tokens: int,
    meters: dict[str, int],
    plan,
    credentials_version: bytes | None = None,
    now=None,
) -> PreparedCall:
    """Resolve the provider key, price the attempt, and hold its maximum: the daily budget
    (Redis) and the quota, or credits for overage (PostgreSQL). Holds nothing when it raises."""
    now = now or timezone.now()
    if not catalog_is_fresh():
        await db_call(catalog_get)
    source, secret = await _resolve_key(user=user, provider=provider, credentials_version=credentials_version)
    prepared = attempt_prepared(
        source=source,
        secret=secret,
        provider=provider,
        requested_model=requested_model,
        prompt_tokens=prompt_tokens,
        max_tokens=max_tokens,
        meters=meters,
        now=now,
    )
    if prepared.budget_micro <= 0 or _budget_recently_refused(prepared.budget_day):
        hold = {
            "day": prepared.budget_day,
            "amount_micro": prepared.budget_micro,
            "hold_id": prepared.call_id,
        }
        if not await _budget_reserve(**hold):
            raise BudgetExhausted(provider)
        try:
            prepared.funding = await _funding_reserve(
                user=user, endpoint=endpoint, meters=prepared.meters, plan=plan, now=now
            )
        except BaseException:
            await asyncio.shield(_budget_release(**hold))
            raise
        return prepared
    prepared.funding = await _holds_side_by_side(
        prepared=prepared, user=user, endpoint=endpoint, plan=plan, now=now
    )
    return prepared


_budget_refused_at: dict = {}  # budget day -> monotonic time of this process's last refusal
BUDGET_REFUSAL_MEMORY_SECONDS = 30.0


def _budget_recently_refused(day) -> bool:
    refused_at = _budget_refused_at.get(day)
    return refused_at is not None and time.monotonic() - refused_at < BUDGET_REFUSAL_MEMORY_SECONDS


async def _holds_side_by_side(*, prepared: PreparedCall, user, endpoint: str, plan, now) -> Funding:
    """The budget hold (Redis) and the quota reserve (PostgreSQL) in flight together: the call
    waits for the slower of the two round trips, not their sum. Each is undone when the other
    is refused. Once the budget refuses, this process takes the budget first for a while, so a
    day past its cap does not pay a reserve and a release for every diverted call."""
    day = prepared.budget_day
    hold = {"day": day, "amount_micro": prepared.budget_micro, "hold_id": prepared.call_id}
    budget_hold = asyncio.ensure_future(_budget_reserve(**hold))
    try:
        funding = await _funding_reserve(
            user=user, endpoint=endpoint, meters=prepared.meters, plan=plan, now=now
        )
    except BaseException as exc:
        try:
            held = await asyncio.shield(budget_hold)
        except Exception:
            held = None
        if held:
            await asyncio.shield(_budget_release(**hold))
        elif held is False and isinstance(exc, ApiError):  # as in sequence: the budget decides first
            _budget_refused_at[day] = time.monotonic()
            raise BudgetExhausted(prepared.provider) from None
        raise
    try:
        held = await asyncio.shield(budget_hold)
    except BaseException:
        await db_call(funding_release, funding=funding)
        raise
    if not held:
        _budget_refused_at[day] = time.monotonic()
        await db_call(funding_release, funding=funding)
        raise BudgetExhausted(prepared.provider)
    return funding


async def _funding_reserve(*, user, endpoint: str, meters: dict[str, int], plan, now) -> Funding:
    """A spare reservation of this worker or the quota reserve statement; when that is
    refused, the ORM path decides (counters, credits)."""
    options = {
        "user_id": user.pk,
        "meters": meters,
        "plan": plan,
        "now": now,
        "synchronous_commit": settings.PROXY_SYNCHRONOUS_COMMIT,
    }
    reservations = await quota_reserve_pooled(**options)
    if reservations is None:
        reservations = await quota_reserve_many_fast(**options)
    if reservations is None:
        return await db_call(funding_reserve, user=user, endpoint=endpoint, meters=meters, plan=plan)
    funding = Funding(endpoint=endpoint, reserved=dict(meters), plan=plan)
    funding.reservations = {reservation.meter: reservation for reservation in reservations}
    return funding


# --- Settle ----------------------------------------------------------------------------------

SETTLE_BATCH_MAX = 64


@dataclass
class _PendingSettle:
    event: object
    spend_day: object
    pairs: list
    future: asyncio.Future


class _SettleWriter:
    """Quota-funded successes settled in grouped statements (group commit).

    A write starts as soon as a call settles and none is in flight; calls settling meanwhile
    ride on the next statement (up to ``SETTLE_BATCH_MAX``). Alone, a call gets its own
    statement at once, as before; under load one statement serves many calls. Each caller
    still waits for its own settle to commit before answering, so nothing is answered before
    it is on the books. If a grouped statement fails (it changed nothing: one statement), each
    call is retried alone so that one bad call cannot fail the others.
    """

    def __init__(self):
        self.pending: list[_PendingSettle] = []
        self.flushing: asyncio.Task | None = None

    async def write(self, *, event, spend_day, pairs) -> tuple[int, list[tuple]]:
        """(event id, the call's settled counter rows) once committed."""
        loop = asyncio.get_running_loop()
        item = _PendingSettle(event=event, spend_day=spend_day, pairs=pairs, future=loop.create_future())
        self.pending.append(item)
        if self.flushing is None:
            self.flushing = loop.create_task(self._run())
        return await item.future

    async def _run(self) -> None:
        try:
            while self.pending:
                batch = self.pending[:SETTLE_BATCH_MAX]
                del self.pending[: len(batch)]
                try:
                    await self._write(batch)
                except ApiError as exc:  # database unavailable: every call answers 503
                    _fail(batch, exc)
                except Exception as exc:
                    if len(batch) == 1:
                        _fail(batch, exc)
                        continue
                    # Rare and slow (one round trip per call): say so, or a slow run has no trace.
                    logger.warning(
                        "grouped settle failed; settling its %d calls one by one",
                        len(batch),
                        extra={"error": type(exc).__name__},
                    )
                    for item in batch:
                        try:
                            await self._write([item])
                        except Exception as alone:
                            _fail([item], alone)
        finally:
            self.flushing = None

    async def _write(self, batch: list[_PendingSettle]) -> None:
        now = timezone.now()
        quota_part = quota_settle_pairs_sql(
            pairs=[pair for item in batch for pair in item.pairs],
            now=now,
            synchronous_commit=settings.PROXY_SYNCHRONOUS_COMMIT,
        )
        sql, params = settle_batch_sql(
            items=[(item.event, item.spend_day) for item in batch], quota_part=quota_part, now=now
        )
        # One call's statement has a fixed text (prepared once); a group's text varies with its size.
        rows = await db_fetch(sql, params, prepare=None if len(batch) == 1 else False)  # all or nothing
        events = {row[1]: row[2] for row in rows if row[0] == "e"}
        counters = {row[3]: row[3:] for row in rows if row[0] == "c"}
        for item in batch:
            if not item.future.done():
                held = [counters[r.counter_id] for r, _units in item.pairs if r.counter_id in counters]
                item.future.set_result((events[item.event.call_id], held))


def _fail(batch: list[_PendingSettle], exc: BaseException) -> None:
    for item in batch:
        if not item.future.done():
            item.future.set_exception(exc)


_settle_writers: dict[asyncio.AbstractEventLoop, _SettleWriter] = {}


def _settle_writer_get() -> _SettleWriter:
    return per_loop(_settle_writers, _SettleWriter)


async def settle_success_fast(*, prepared: PreparedCall, record: CallRecord, user, quota_meter: str | None):
    """Settle a quota-funded success in one statement; None when it is not that case (the
    caller then settles on the ORM path). Returns (event, quota block)."""
    if not settles_in_one_statement(prepared=prepared, record=record):
        return None
    now = timezone.now()
    cost = call_cost_get(prepared=prepared, record=record)
    total_tokens = record.prompt_tokens + record.completion_tokens
    funding = prepared.funding
    pairs = funding_settle_pairs(
        funding=funding, actual={"requests": 1, "llm_tokens": total_tokens, "emails": record.emails}
    )
    event = usage_event_build(prepared=prepared, record=record, cost=cost, now=now)
    event.pk, counter_rows = await _settle_writer_get().write(
        event=event, spend_day=prepared.budget_day if cost > 0 else None, pairs=pairs
    )
    event._state.adding = False
    prepared.closed = True  # on the books: nothing of this call may be released any more
    if quota_alert_may_be_due(rows=counter_rows, plan=funding.plan):
        await db_call(funding_settle_finish, funding=funding, rows=counter_rows, now=now)
    else:  # nothing to queue: pure bookkeeping
        funding_settle_finish(funding=funding, rows=counter_rows, now=now)
    hold = None
    if prepared.budget_micro or cost > 0:
        hold = budget.settle_script_item(
            day=prepared.budget_day,
            hold_id=prepared.call_id,
            reserved_micro=prepared.budget_micro,
            actual_micro=budget.usd_to_micro(cost),
        )
    _settle_counters_get().add(hold=hold, failures_key=cache_key(failures_key(prepared.provider)))
    block = None
    if quota_meter:
        if quota_meter in funding.counters:
            block = funding_quota_block(funding=funding, user=user, meter=quota_meter)
        else:  # not on this call's counters (e.g. BYOK tokens): read it
            block = await db_call(funding_quota_block, funding=funding, user=user, meter=quota_meter)
    return event, block
