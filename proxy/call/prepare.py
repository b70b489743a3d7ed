"""Prepare an attempt: its provider key, price and maximum cost, then hold that maximum.

The holds are the daily budget (Redis, ``budget.RESERVE_LUA``, operator-paid calls only) and
the plan's quota (a spare of this worker's ``billing.quota_pool`` or billing's one reserve
statement), in flight together; a refused quota goes to ``funding.funding_reserve`` (counters,
credits) in a thread. Each hold is undone when the other is refused, so a refused attempt holds
nothing. ``proxy_call_abandon`` releases the holds of an attempt that will not be settled.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from accounts.selectors import PROVIDER_KEYS_VERSION_KEY, provider_key_aget
from billing.quota_pool import quota_reserve_pooled
from billing.services import quota_reserve_many_fast
from core.exceptions import ApiError
from core.fastio import cache_key, redis_call, redis_client
from core.redact import secret_remember

from .. import budget, sandbox
from ..dbcall import db_call
from ..router import provider_failure_record
from ..selectors import Price, catalog_get, catalog_is_fresh, model_price_get, upstream_model_get
from ..upstreams import Target, target_build
from .charge import charge_meters, charge_rate_aget
from .funding import Funding, funding_release, funding_reserve
from .key_limits import key_holds_arelease, key_limits_areserve
from .scripts import script_run

OPERATOR_SOURCES = ("global", "env")
BYOK_SOURCE = "workspace"  # the workspace's own provider key (``ProviderCredential.Scope``)


class NoProviderKey(Exception):
    """No key for this provider (and no sandbox): try the next provider, else 503."""


class BudgetExhausted(Exception):
    """This call's maximum cost would pass today's budget: route to the plan's fallback provider."""


@dataclass
class PreparedCall:
    """Everything held for one attempt between prepare and settle."""

    call_id: uuid.UUID
    provider: str
    key_source: str
    target: Target
    requested_model: str
    upstream_model: str
    price: Price | None
    funding: Funding | None  # None only until the reserve (``attempt_prepared``)
    admitted_at: datetime  # when its holds were taken: the call's time in every day and period
    budget_micro: int = 0
    meters: dict[str, int] = field(default_factory=dict)
    closed: bool = False  # settled or released: its holds are no longer this call's to undo
    relayed: bool = False  # a stream relay owns the holds: it settles when the stream ends

    @property
    def budget_day(self) -> date:
        """The UTC day whose budget holds this attempt, and to which its cost is written."""
        return self.admitted_at.date()

    @property
    def is_operator_paid(self) -> bool:
        return self.key_source in OPERATOR_SOURCES


# --- Price and maximum ------------------------------------------------------------------------


def attempt_target(*, source: str, secret: str, provider: str, requested_model: str):
    """(Target, upstream model, Price) of one attempt: all from the in-process catalogue."""
    if source == "sandbox":
        target = Target(provider=sandbox.PROVIDER, base_url="", secret="")
        upstream_model = sandbox.sandbox_model_for(requested_model)
    else:
        secret_remember(secret)  # so no relayed provider text can ever carry it
        target = target_build(provider=provider, secret=secret)
        upstream_model = (
            upstream_model_get(requested_model=requested_model, provider=provider) if requested_model else ""
        )
    price = model_price_get(provider=target.provider, model=upstream_model) if upstream_model else None
    return target, upstream_model, price


def attempt_meters(*, source: str, meters: dict[str, int]) -> dict[str, int]:
    """A BYOK call's tokens are the workspace's own: off the quota unless
    ``BYOK_COUNTS_AGAINST_QUOTA``."""
    meters = dict(meters)
    if source == BYOK_SOURCE and not settings.BYOK_COUNTS_AGAINST_QUOTA:
        meters.pop("llm_tokens", None)
    return meters


def max_cost_micro(*, price: Price | None, prompt_tokens: int, max_tokens: int) -> int:
    if price is None:
        return 0
    # USD per Mtok × tokens = micro-USD.
    return budget.usd_to_micro(
        (Decimal(prompt_tokens) * price.input_usd_per_mtok + Decimal(max_tokens) * price.output_usd_per_mtok)
        / budget.MICRO
    )


def attempt_prepared(
    *,
    source: str,
    secret: str,
    provider: str,
    requested_model: str,
    prompt_tokens: int,
    max_tokens: int,
    meters: dict[str, int],
    now,
    check_budget: bool = True,
) -> PreparedCall:
    """An attempt before anything is held: its target and price, the meters it costs on the
    plan, and the most it may take from the operator's daily budget (0 when the operator does
    not pay, or without ``check_budget``). The caller reserves, then sets ``funding``."""
    target, upstream_model, price = attempt_target(
        source=source, secret=secret, provider=provider, requested_model=requested_model
    )
    budget_micro = 0
    if source in OPERATOR_SOURCES and check_budget:
        budget_micro = max_cost_micro(price=price, prompt_tokens=prompt_tokens, max_tokens=max_tokens)
    return PreparedCall(
        call_id=uuid.uuid4(),
        provider=target.provider,
        key_source=source,
        target=target,
        requested_model=requested_model,
        upstream_model=upstream_model,
        price=price,
        funding=None,
        admitted_at=now,
        budget_micro=budget_micro,
        meters=attempt_meters(source=source, meters=meters),
    )


# --- Provider key ----------------------------------------------------------------------------

_credentials: dict[tuple[int, str], object] = {}  # (workspace id, provider) -> ProviderSecret | None
_credentials_version: bytes | None = None
_PROCESS_CACHE_MAX = 100_000


async def _resolve_key(*, workspace, provider: str, credentials_version: bytes | None) -> tuple[str, str]:
    """The workspace's own > global > env > sandbox. Decrypted credentials are kept in process
    while the shared provider-keys version (read by the gate) does not move."""
    global _credentials_version
    secret = None
    if provider != sandbox.PROVIDER:
        if credentials_version is None or credentials_version != _credentials_version:
            _credentials.clear()
            _credentials_version = credentials_version
        cache_entry = (workspace.pk, provider)
        if credentials_version is not None and cache_entry in _credentials:
            secret = _credentials[cache_entry]
        else:
            secret = await provider_key_aget(workspace=workspace, provider=provider)
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
    return cache.client.encode(uuid.uuid4().hex)


# --- Holds -----------------------------------------------------------------------------------


async def proxy_call_aprepare(
    *,
    workspace,
    provider: str,
    endpoint: str,
    requested_model: str,
    prompt_tokens: int,
    max_tokens: int,
    meters: dict[str, int],
    plan,
    credentials_version: bytes | None = None,
    now=None,
    api_key_id: int | None = None,
    key_limits=(),
    member_id: int | None = None,
    member_limits=(),
    user_id: int | None = None,
) -> PreparedCall:
    """Resolve the provider key, price the attempt, and hold its maximum: the key's own limits
    and its creator's monthly caps (only when there are some: ``key_limits``,
    ``member_limits``), the daily budget (Redis) and the quota, or
    credits for overage (PostgreSQL). Holds nothing when it raises.

    The call's charge rate (``charge``: in process, no I/O while fresh) is captured on its
    funding; a key with credit or money limits holds the most the call can be charged."""
    now = now or timezone.now()
    rate = await charge_rate_aget(endpoint=endpoint, plan=plan)
    key_holds = []
    if key_limits or member_limits:
        most = rate.charge_for(rate.credits_for(meters))
        key_holds = await key_limits_areserve(
            api_key_id=api_key_id,
            key_limits=key_limits,
            member_id=member_id,
            member_limits=member_limits,
            meters=charge_meters(meters=meters, charge=most),
            currency=rate.currency,
            now=now,
        )
    try:
        prepared = await _aprepare(
            workspace=workspace,
            provider=provider,
            endpoint=endpoint,
            requested_model=requested_model,
            prompt_tokens=prompt_tokens,
            max_tokens=max_tokens,
            meters=meters,
            plan=plan,
            credentials_version=credentials_version,
            now=now,
        )
    except BaseException:
        if key_holds:
            await asyncio.shield(key_holds_arelease(key_holds))
        raise
    if key_holds:
        prepared.funding.key_holds = key_holds
        prepared.funding.key_id = api_key_id
        prepared.funding.user_id = user_id
        prepared.funding.workspace_id = workspace.pk
        prepared.funding.key_currency = rate.currency
    prepared.funding.charge_rate = rate
    return prepared


async def _aprepare(
    *,
    workspace,
    provider: str,
    endpoint: str,
    requested_model: str,
    prompt_tokens: int,
    max_tokens: int,
    meters: dict[str, int],
    plan,
    credentials_version: bytes | None,
    now,
) -> PreparedCall:
    if not catalog_is_fresh():
        await db_call(catalog_get)
    source, secret = await _resolve_key(
        workspace=workspace, provider=provider, credentials_version=credentials_version
    )
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
                workspace=workspace, endpoint=endpoint, meters=prepared.meters, plan=plan, now=now
            )
        except BaseException:
            await asyncio.shield(_budget_release(**hold))
            raise
        return prepared
    prepared.funding = await _holds_side_by_side(
        prepared=prepared, workspace=workspace, endpoint=endpoint, plan=plan, now=now
    )
    return prepared


_budget_refused_at: dict = {}  # budget day -> monotonic time of this process's last refusal
BUDGET_REFUSAL_MEMORY_SECONDS = 30.0


def _budget_recently_refused(day) -> bool:
    refused_at = _budget_refused_at.get(day)
    return refused_at is not None and time.monotonic() - refused_at < BUDGET_REFUSAL_MEMORY_SECONDS


async def _holds_side_by_side(*, prepared: PreparedCall, workspace, endpoint: str, plan, now) -> Funding:
    """The budget hold (Redis) and the quota reserve (PostgreSQL) in flight together: the call
    waits for the slower of the two round trips, not their sum. Each is undone when the other
    is refused. Once the budget refuses, this process takes the budget first for a while, so a
    day past its cap does not pay a reserve and a release for every diverted call."""
    day = prepared.budget_day
    hold = {"day": day, "amount_micro": prepared.budget_micro, "hold_id": prepared.call_id}
    budget_hold = asyncio.ensure_future(_budget_reserve(**hold))
    try:
        funding = await _funding_reserve(
            workspace=workspace, endpoint=endpoint, meters=prepared.meters, plan=plan, now=now
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


async def _funding_reserve(*, workspace, endpoint: str, meters: dict[str, int], plan, now) -> Funding:
    """A spare reservation of this worker or the quota reserve statement; when that is
    refused, the ORM path decides (counters, credits)."""
    options = {
        "workspace_id": workspace.pk,
        "meters": meters,
        "plan": plan,
        "now": now,
        "synchronous_commit": settings.PROXY_SYNCHRONOUS_COMMIT,
    }
    reservations = await quota_reserve_pooled(**options)
    if reservations is None:
        reservations = await quota_reserve_many_fast(**options)
    if reservations is None:
        return await db_call(
            funding_reserve, workspace=workspace, endpoint=endpoint, meters=meters, plan=plan
        )
    funding = Funding(endpoint=endpoint, reserved=dict(meters), plan=plan)
    funding.reservations = {reservation.meter: reservation for reservation in reservations}
    return funding


async def _budget_reserve(*, day, amount_micro: int, hold_id) -> bool:
    if amount_micro <= 0:
        return True
    keys, args = budget.reserve_script_args(day=day, amount_micro=amount_micro, hold_id=hold_id)
    for _ in range(2):
        held = await redis_call(script_run("budget", budget.RESERVE_LUA, keys=keys, args=args))
        if held >= 0:
            return held == 1
        await db_call(budget.budget_counter_ensure, day)  # rebuilt from DailySpend, then retry
    return await db_call(budget.budget_reserve, day=day, amount_micro=amount_micro, hold_id=hold_id)


async def budget_settle_many(holds: list[tuple[list, list]], *, deletes: list[str] = ()) -> None:
    """``budget.SETTLE_LUA`` for many holds (and keys to delete) in one round trip."""
    keys, args = [], []
    for hold_keys, hold_args in holds:
        keys += hold_keys
        args += hold_args
    overshoots = await redis_call(
        script_run(
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
        await budget_settle_many([hold])


def proxy_call_abandon(*, prepared: PreparedCall) -> None:
    """Release every hold of an attempt that will not be settled. Idempotent: the call path
    calls it on every exit that did not settle, whatever went wrong."""
    if prepared.closed:
        return
    prepared.closed = True
    if prepared.funding is not None:
        funding_release(funding=prepared.funding)
    budget.budget_release(
        day=prepared.budget_day, hold_id=prepared.call_id, amount_micro=prepared.budget_micro
    )


def attempt_abandon(*, prepared: PreparedCall, provider: str) -> None:
    """Release an attempt whose provider failed, and count the failure towards its cooldown."""
    proxy_call_abandon(prepared=prepared)
    provider_failure_record(provider=provider)
