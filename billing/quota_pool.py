"""A worker's spare quota reservations, reserved in batches (the proxy's fast lane).

A call needs one ``QuotaReservation`` per meter holding its maximum before it may call a
provider. One reserve statement per call put a PostgreSQL round trip, and the database's share
of the two cores, in front of every upstream call. Here a worker reserves a batch of identical
reservations in one statement (the same conditional ``UPDATE`` on the counters, so the database
holds every unit before any call uses it and no concurrency can pass a limit) and hands them to
its next calls for that workspace and those meters. Each call still settles or releases its own row,
so the settle, the reservation ledger and the stale-reservation sweeper are unchanged.

The bounds on what spares hold back:

- spares are taken only for a workspace whose previous call of that size came to this worker within
  ``PROXY_QUOTA_BATCH_IDLE``: a lone call reserves alone, as without spares;
- a batch is taken only while ``used + reserved + 4 × batch`` fits the limit; nearer the limit
  every call reserves alone, as before, and a refused batch is not tried again for that
  workspace for ``REFUSAL_MEMORY_SECONDS``;
- a spare is never handed out after ``PROXY_QUOTA_BATCH_MAX_AGE`` seconds, and spares are
  released after ``PROXY_QUOTA_BATCH_IDLE`` seconds without a taker, by the worker's shutdown
  drain, or (a crashed worker) by the stale-reservation sweeper, like a crashed call's hold;
- a spare holds the call's maximum rounded up to a size class (at most 25 % more) so that
  calls of similar size share a batch; a call is still charged at most its own maximum;
- other workers' spares count as reserved in the ``remaining`` of a quota block (this worker's
  own are left out: ``spare_units``);
- a plan change reaches spares already reserved within ``PROXY_QUOTA_BATCH_MAX_AGE``, as it
  reaches calls already in flight when they finish.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from core.fastio import per_loop

from .models import QuotaReservation
from .services import _rules_for, quota_release_many_fast, quota_reserve_many_fast

logger = logging.getLogger("tollgate.billing")

BATCH_MAX = 64  # reservations per meter in one statement
HEADROOM_FACTOR = 4  # a batch may take at most a quarter of what a meter has left
REFUSAL_MEMORY_SECONDS = 1.0
REFUSALS_KEPT_MAX = 10_000  # per dict (refusals, last calls); then the expired ones are dropped


def size_class(units: int) -> int:
    """``units`` rounded up to one of four sizes per power of two (at most 25 % more)."""
    if units <= 8:
        return units
    step = 1 << (units.bit_length() - 3)
    return -(-units // step) * step


@dataclass
class _Batch:
    bundles: list[list[QuotaReservation]] = field(default_factory=list)  # one row per meter each
    reserved_at: float = 0.0  # time.monotonic()
    last_taken: float = 0.0


class _Pools:
    """This event loop's spares (the async pool they are reserved on is per loop too)."""

    def __init__(self):
        self.batches: dict[tuple, _Batch] = {}
        self.retired: list[QuotaReservation] = []  # spares too old to hand out, to release
        self.waiters: dict[tuple, list[asyncio.Future]] = {}
        self.refilling: set[tuple] = set()
        self.refused_until: dict[tuple, float] = {}
        self.last_call: dict[tuple, float] = {}
        self.spares_by_counter: dict[int, int] = defaultdict(int)
        self.reaper: asyncio.Task | None = None

    # -- spares ---------------------------------------------------------------------------------

    def pop(self, key: tuple, now: float) -> list[QuotaReservation] | None:
        batch = self.batches.get(key)
        if batch is None or not batch.bundles:
            return None
        if now - batch.reserved_at >= settings.PROXY_QUOTA_BATCH_MAX_AGE:
            self._retire(key)
            return None
        bundle = batch.bundles.pop()
        batch.last_taken = now
        self._count(bundle, -1)
        return bundle

    def add(self, key: tuple, bundles: list[list[QuotaReservation]], now: float) -> None:
        if key in self.batches:
            self._retire(key)
        self.batches[key] = _Batch(bundles=bundles, reserved_at=now, last_taken=now)
        for bundle in bundles:
            self._count(bundle, +1)
        self._reaper_ensure()

    def give_back(self, key: tuple, bundle: list[QuotaReservation]) -> None:
        """A bundle whose caller was cancelled before it could use it."""
        batch = self.batches.get(key)
        if batch is None:
            self.retired.extend(bundle)
            self._reaper_ensure()
            return
        batch.bundles.append(bundle)
        self._count(bundle, +1)

    def called(self, key: tuple, now: float) -> bool:
        """Note a call of this key; whether the one before came within ``PROXY_QUOTA_BATCH_IDLE``
        (a workspace calling less often gets no spares: they would be released unused each time)."""
        last = self.last_call.get(key)
        if last is None and len(self.last_call) >= REFUSALS_KEPT_MAX:
            idle = settings.PROXY_QUOTA_BATCH_IDLE
            self.last_call = {k: t for k, t in self.last_call.items() if now - t < idle}
        self.last_call[key] = now
        return last is not None and now - last < settings.PROXY_QUOTA_BATCH_IDLE

    def refused(self, key: tuple, now: float) -> None:
        """Remember a refused batch (near the limit, calls of this key reserve alone a while)."""
        if len(self.refused_until) >= REFUSALS_KEPT_MAX:
            self.refused_until = {k: until for k, until in self.refused_until.items() if until > now}
        self.refused_until[key] = now + REFUSAL_MEMORY_SECONDS

    def _reaper_ensure(self) -> None:
        if self.reaper is None:
            self.reaper = asyncio.get_running_loop().create_task(self._reap())

    def _retire(self, key: tuple) -> None:
        batch = self.batches.pop(key)
        for bundle in batch.bundles:
            self._count(bundle, -1)
            self.retired.extend(bundle)

    def _count(self, bundle: list[QuotaReservation], sign: int) -> None:
        for reservation in bundle:
            self.spares_by_counter[reservation.counter_id] += sign * reservation.amount
            if not self.spares_by_counter[reservation.counter_id]:
                del self.spares_by_counter[reservation.counter_id]

    # -- release --------------------------------------------------------------------------------

    async def _reap(self) -> None:
        """Release idle and aged spares; ends when none are left."""
        try:
            while self.batches or self.retired:
                await asyncio.sleep(settings.PROXY_QUOTA_BATCH_IDLE / 2)
                now = time.monotonic()
                for key, batch in list(self.batches.items()):
                    idle = now - batch.last_taken >= settings.PROXY_QUOTA_BATCH_IDLE
                    if idle or now - batch.reserved_at >= settings.PROXY_QUOTA_BATCH_MAX_AGE:
                        self._retire(key)
                await self.release_retired()
        finally:
            self.reaper = None

    async def release_retired(self) -> None:
        rows, self.retired = self.retired, []
        if not rows:
            return
        try:
            await quota_release_many_fast(
                reservations=rows, now=timezone.now(), synchronous_commit=settings.PROXY_SYNCHRONOUS_COMMIT
            )
        except Exception as exc:  # the stale-reservation sweeper frees them later
            logger.warning(
                "spare quota reservations not released",
                extra={"count": len(rows), "error": type(exc).__name__},
            )

    async def drain(self) -> None:
        for key in list(self.batches):
            self._retire(key)
        await self.release_retired()


_pools: dict = {}


def _pools_get() -> _Pools:
    return per_loop(_pools, _Pools)


def spare_units(counter_id: int) -> int:
    """Units this worker holds in spares on a counter (left out of its quota blocks)."""
    pools = _pools.get(_running_loop())
    return pools.spares_by_counter.get(counter_id, 0) if pools is not None else 0


def _running_loop():
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


async def quota_reserve_pooled(
    *, workspace_id: int, meters: dict[str, int], plan, now: datetime, synchronous_commit: bool
) -> list[QuotaReservation] | None:
    """One call's reservations (one per meter, each holding at least ``meters[m]``) from this
    worker's spares, reserving a batch when there are none; None: reserve alone instead."""
    if settings.PROXY_QUOTA_BATCH <= 0 or not meters:
        return None
    rules = _rules_for(workspace=None, meters=meters, now=now, plan=plan)
    key = (
        workspace_id,
        tuple(sorted((meter, rules[meter][1], size_class(units)) for meter, units in meters.items())),
    )
    pools = _pools_get()
    mono = time.monotonic()
    recent = pools.called(key, mono)
    bundle = pools.pop(key, mono)
    if bundle is not None:
        return bundle
    if key not in pools.refilling and (not recent or pools.refused_until.get(key, 0.0) > mono):
        return None  # a lone call (spares would only be released again), or near the limit
    waiter = asyncio.get_running_loop().create_future()
    pools.waiters.setdefault(key, []).append(waiter)
    if key not in pools.refilling:
        pools.refilling.add(key)
        asyncio.get_running_loop().create_task(
            _refill(pools, key=key, plan=plan, now=now, synchronous_commit=synchronous_commit)
        )
    try:
        return await waiter
    except asyncio.CancelledError:
        if waiter.done() and not waiter.cancelled() and waiter.result() is not None:
            pools.give_back(key, waiter.result())
        raise


async def _refill(pools: _Pools, *, key: tuple, plan, now: datetime, synchronous_commit: bool) -> None:
    """Reserve batches for ``key`` while calls wait for it (one statement at a time per key).
    ``now`` is the first waiter's: the batches are in the period the key names."""
    workspace_id, shape = key
    amounts = {meter: units for meter, _start, units in shape}
    waiters: list[asyncio.Future] = []
    try:
        while pools.waiters.get(key):
            waiters = pools.waiters.pop(key)
            copies = min(BATCH_MAX, len(waiters) + settings.PROXY_QUOTA_BATCH)
            bundles = await _batch_reserve(
                workspace_id=workspace_id,
                amounts=amounts,
                plan=plan,
                now=now,
                copies=copies,
                synchronous_commit=synchronous_commit,
            )
            if bundles is None:
                pools.refused(key, time.monotonic())
                for waiter in waiters + pools.waiters.pop(key, []):
                    if not waiter.done():
                        waiter.set_result(None)
                return
            served, unserved = waiters[:copies], waiters[copies:]
            for waiter in served:
                if not waiter.done():
                    waiter.set_result(bundles.pop())
            pools.add(key, bundles, time.monotonic())
            # Calls beyond one batch, and those that came while the statement ran, take spares
            # first, then wait for the next batch.
            late = unserved + pools.waiters.pop(key, [])
            while late:
                bundle = pools.pop(key, time.monotonic())
                if bundle is None:
                    pools.waiters[key] = late
                    break
                waiter = late.pop(0)
                if waiter.done():
                    pools.give_back(key, bundle)
                else:
                    waiter.set_result(bundle)
    except BaseException as exc:
        for waiter in waiters + pools.waiters.pop(key, []):  # they reserve alone (and meet the error)
            if not waiter.done():
                waiter.set_result(None)
        if not isinstance(exc, Exception):
            raise
        logger.warning("spare quota reservations not reserved", extra={"error": type(exc).__name__})
    finally:
        pools.refilling.discard(key)


async def _batch_reserve(
    *, workspace_id: int, amounts: dict[str, int], plan, now: datetime, copies: int, synchronous_commit: bool
) -> list[list[QuotaReservation]] | None:
    """``copies`` bundles in one statement, or None (a limit, or a counter not created yet)."""
    held = await quota_reserve_many_fast(
        workspace_id=workspace_id,
        meters=amounts,
        plan=plan,
        now=now,
        synchronous_commit=synchronous_commit,
        copies=copies,
        headroom=copies * HEADROOM_FACTOR,
    )
    if held is None:
        return None
    by_meter: dict[str, list[QuotaReservation]] = defaultdict(list)
    for reservation in held:
        by_meter[reservation.meter].append(reservation)
    return [list(bundle) for bundle in zip(*(by_meter[meter] for meter in amounts), strict=True)]


async def quota_pool_drain(deadline: float | None = None) -> None:
    """Release this worker's spares (worker shutdown, tests)."""
    pools = _pools.get(_running_loop())
    if pools is not None:
        await pools.drain()
