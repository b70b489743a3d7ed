"""Settle a finished attempt: charge what was used, release the rest, log the call.

A quota-funded success (the hot path) settles in one statement shared with the other calls
settling at that moment (``_SettleWriter``: quota settle, ``UsageEvent``, rollup and the day's
spend), then its budget counter moves in a grouped Redis script (``_SettleCounters``). Failures
and credit-funded calls settle in one transaction in a thread (``proxy_call_settle``).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from contextlib import nullcontext
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing.services import quota_alert_may_be_due, quota_settle_pairs_sql
from core.exceptions import ApiError
from core.fastio import cache_key, db_fetch, per_loop
from core.money import usd

from .. import budget
from ..dbcall import db_call
from ..models import UsageEvent
from ..router import failures_key, provider_success_record
from ..selectors import Price
from ..services import event_write, settle_batch_sql
from .funding import (
    funding_charge,
    funding_key_settle,
    funding_quota_block,
    funding_release,
    funding_settle,
    funding_settle_finish,
    funding_settle_pairs,
    funding_settle_sql,
)
from .prepare import PreparedCall, budget_settle_many

logger = logging.getLogger("tollgate.proxy")


@dataclass(frozen=True)
class CallRecord:
    """What the log needs to know about a finished call."""

    workspace_id: int
    api_key_id: int | None
    service: str
    endpoint: str
    status_code: int
    model: str = ""
    provider: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    emails: int = 0
    latency_ms: int = 0
    is_fallback: bool = False
    is_budget_fallback: bool = False
    is_estimated: bool = False
    request_id: str = ""
    error_code: str = ""


def chat_record(
    call,
    attempts,
    *,
    status: int,
    provider: str = "",
    error_code: str = "",
    prompt: int = 0,
    completion: int = 0,
    estimated: bool = False,
) -> CallRecord:
    """The record of a chat call (``input.ChatCall``) after its ``upstream.Attempts``."""
    return CallRecord(
        workspace_id=call.workspace.pk,
        api_key_id=call.api_key_id,
        service=call.service,
        endpoint=call.endpoint,
        status_code=status,
        model=call.requested_model,
        provider=provider,
        prompt_tokens=prompt,
        completion_tokens=completion,
        latency_ms=attempts.latency_ms,
        is_fallback=attempts.failures > 0,
        is_budget_fallback=attempts.budget_fallback,
        is_estimated=estimated,
        request_id=call.request_id,
        error_code=error_code,
    )


def cost_usd_get(*, price: Price | None, prompt_tokens: int, completion_tokens: int) -> Decimal:
    """Operator cost of a call in USD (6 decimals); unknown price costs 0 and is logged."""
    if price is None:
        return Decimal("0.000000")
    raw = (
        Decimal(prompt_tokens) * price.input_usd_per_mtok
        + Decimal(completion_tokens) * price.output_usd_per_mtok
    ) / Decimal(1_000_000)
    return usd(raw)


def call_cost_get(*, prepared: PreparedCall | None, record: CallRecord) -> Decimal:
    """What a finished call cost the operator: nothing when it failed or ran on the workspace's key."""
    if prepared is None or record.status_code >= 400 or not prepared.is_operator_paid:
        return Decimal("0.000000")
    return cost_usd_get(
        price=prepared.price, prompt_tokens=record.prompt_tokens, completion_tokens=record.completion_tokens
    )


def call_actual_meters(record: CallRecord) -> dict[str, int]:
    """What a successful call counts on each quota meter."""
    return {
        "requests": 1,
        "llm_tokens": record.prompt_tokens + record.completion_tokens,
        "emails": record.emails,
    }


def usage_event_build(*, prepared: PreparedCall | None, record: CallRecord, cost: Decimal, now) -> UsageEvent:
    """The (unsaved) UsageEvent of a finished call; a failed call records no usage and no charge."""
    succeeded = record.status_code < 400
    total_tokens = record.prompt_tokens + record.completion_tokens
    funding = prepared.funding if prepared is not None else None
    charge = funding_charge(funding=funding, actual=call_actual_meters(record)) if succeeded else None
    rate = funding.charge_rate if funding is not None else None
    return UsageEvent(
        call_id=prepared.call_id if prepared is not None else uuid.uuid4(),
        workspace_id=record.workspace_id,
        api_key_id=record.api_key_id,
        service=record.service,
        endpoint=record.endpoint,
        provider=record.provider or (prepared.provider if prepared else ""),
        model=record.model,
        upstream_model=prepared.upstream_model if prepared else "",
        prompt_tokens=record.prompt_tokens if succeeded else 0,
        completion_tokens=record.completion_tokens if succeeded else 0,
        total_tokens=total_tokens if succeeded else 0,
        emails=record.emails if succeeded else 0,
        cost_usd=cost,
        credits_charged=prepared.funding.credits_charged if prepared else 0,
        charge_credits=charge.credits if charge is not None else 0,
        charge_micros=charge.micros if charge is not None else 0,
        charge_currency=rate.currency if rate is not None else "",
        status_code=record.status_code,
        error_code=record.error_code[:32],
        latency_ms=record.latency_ms,
        key_source=prepared.key_source if prepared else UsageEvent.KeySource.NONE,
        is_fallback=record.is_fallback,
        is_budget_fallback=record.is_budget_fallback,
        is_estimated=record.is_estimated,
        request_id=record.request_id[:64],
        # An attempt's event is dated when its holds were taken, like its quota period and its
        # budget day, so a call that crosses midnight stays on one day in every ledger.
        created_at=prepared.admitted_at if prepared is not None else now,
    )


def settles_in_one_statement(*, prepared: PreparedCall | None, record: CallRecord) -> bool:
    """A quota-funded success (the hot path): settle, event, rollup and spend in ONE statement."""
    return (
        prepared is not None
        and record.status_code < 400
        and prepared.funding.credit_hold is None
        and bool(prepared.funding.reservations)
    )


def proxy_call_settle(*, prepared: PreparedCall | None, record: CallRecord, now=None) -> UsageEvent:
    """Finish a call: charge what was used (or release everything on failure) and log it.

    Atomic: funding settle/release, the UsageEvent, the rollup and the day's spend (one
    statement for a quota-funded success, else one transaction, so the hot rows are locked only
    while it runs). The budget counter follows after commit. A call with no prepared attempt
    (quota refused, every provider failed) is logged with no charge.
    """
    now = now or timezone.now()
    succeeded = record.status_code < 400
    cost = call_cost_get(prepared=prepared, record=record)
    actual_micro = budget.usd_to_micro(cost)
    one_statement = settles_in_one_statement(prepared=prepared, record=record)
    quota_part = None
    actual = call_actual_meters(record)
    with nullcontext() if one_statement else transaction.atomic():
        if one_statement:
            quota_part = funding_settle_sql(funding=prepared.funding, actual=actual, now=now)
        elif prepared is not None:
            if succeeded:
                funding_settle(
                    funding=prepared.funding, actual=actual, idempotency_key=f"proxy-call:{prepared.call_id}"
                )
            else:
                funding_release(funding=prepared.funding)
        event = usage_event_build(prepared=prepared, record=record, cost=cost, now=now)
        counter_rows = event_write(
            event=event,
            rollup_provider=event.provider or "none",
            is_error=not succeeded,
            spend_day=prepared.budget_day if cost > 0 else None,
            now=now,
            quota_part=quota_part,
        )
        if quota_part is not None:
            funding_settle_finish(funding=prepared.funding, rows=counter_rows, now=now)
            funding_key_settle(funding=prepared.funding, actual=actual)
    if prepared is not None:
        prepared.closed = True
        budget.budget_settle(
            day=prepared.budget_day,
            hold_id=prepared.call_id,
            reserved_micro=prepared.budget_micro,
            actual_micro=actual_micro,
        )
    return event


def _settle_and_quota(*, prepared, record: CallRecord, workspace, quota_meter: str | None) -> tuple:
    """Settle a successful call, mark its provider healthy and read the quota block to show."""
    event = proxy_call_settle(prepared=prepared, record=record)
    if record.status_code < 400:
        provider_success_record(provider=prepared.provider)
    block = None
    if quota_meter:
        block = funding_quota_block(
            funding=prepared.funding if prepared else None, workspace=workspace, meter=quota_meter
        )
    return event, block


async def settle(*, prepared: PreparedCall, record: CallRecord, workspace, quota_meter: str | None) -> tuple:
    """(event, quota block) of a finished attempt: one grouped statement for a quota-funded
    success, else one transaction (failures, credits)."""
    done = await settle_success_fast(
        prepared=prepared, record=record, workspace=workspace, quota_meter=quota_meter
    )
    if done is not None:
        return done
    return await db_call(
        _settle_and_quota, prepared=prepared, record=record, workspace=workspace, quota_meter=quota_meter
    )


def settle_email(*, prepared, record, workspace):
    """(event, ``emails`` quota block) of a sent email."""
    event = proxy_call_settle(prepared=prepared, record=record)
    return event, funding_quota_block(funding=prepared.funding, workspace=workspace, meter="emails")


# --- The grouped settle of quota-funded successes ---------------------------------------------

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
    ride on the next statement (up to ``SETTLE_BATCH_MAX``). Each caller waits for its own
    settle to commit before answering. A grouped statement that fails changed nothing (one
    statement): each of its calls is then retried alone, so one bad call cannot fail the others.
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


class _SettleCounters:
    """The Redis side of settles, grouped: one script per flush, not one per call.

    Calls settling while a flush is in flight ride on the next one. Delaying a budget move is
    safe: until it lands the counter still holds the call's reserved maximum, which only makes
    the cap stricter.
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
                    await budget_settle_many(holds, deletes=list(resets))
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


async def settle_success_fast(
    *, prepared: PreparedCall, record: CallRecord, workspace, quota_meter: str | None
):
    """Settle a quota-funded success in one statement; None when it is not that case (the
    caller then settles in a thread). Returns (event, quota block)."""
    if not settles_in_one_statement(prepared=prepared, record=record):
        return None
    now = timezone.now()
    cost = call_cost_get(prepared=prepared, record=record)
    funding = prepared.funding
    actual = call_actual_meters(record)
    pairs = funding_settle_pairs(funding=funding, actual=actual)
    event = usage_event_build(prepared=prepared, record=record, cost=cost, now=now)
    event.pk, counter_rows = await _settle_writer_get().write(
        event=event, spend_day=prepared.budget_day if cost > 0 else None, pairs=pairs
    )
    event._state.adding = False
    prepared.closed = True  # on the books: nothing of this call may be released any more
    if funding.key_holds:  # only a key with limits of its own: one more statement
        try:
            await db_call(funding_key_settle, funding=funding, actual=actual)
        except Exception:  # the call is on the books: its key holds wait for the stale sweep
            logger.warning("key limit settle failed", exc_info=True)
    if quota_alert_may_be_due(rows=counter_rows, plan=funding.plan, workspace_id=workspace.pk):
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
            block = funding_quota_block(funding=funding, workspace=workspace, meter=quota_meter)
        else:  # not on this call's counters (e.g. BYOK tokens): read it
            block = await db_call(
                funding_quota_block, funding=funding, workspace=workspace, meter=quota_meter
            )
    return event, block
