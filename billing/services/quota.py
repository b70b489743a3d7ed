"""Quota writes: reserve → settle/release per meter and batched (every meter of one call in one
statement, with its SQL), the stale-reservation sweep and the period rollover.

Rules kept here: a reserve is ONE conditional UPDATE (``used + reserved + n <= limit``); a new
period is a new counter row, created with INSERT … ON CONFLICT DO NOTHING; statements that move
several counters lock them in id order. Crossed alert thresholds are handed to ``alerts``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import BigIntegerField, F, Value
from django.db.models.functions import Greatest, Least
from django.utils import timezone

from core import fastio
from core.rawsql import synchronous_commit_off_cte, table_quoted

from ..models import PeriodAudit, Plan, QuotaReservation, UsageCounter
from ..selectors import QuotaStatus, period_bounds, plan_for_workspace_get, plan_quota_get, quota_status_build
from .alerts import _quota_alert_check, _quota_alert_schedule, _workspace_ref
from .key_limits import key_holds_release_stale

logger = logging.getLogger("tollgate.billing")


# =============================================================================================
# Quotas
# =============================================================================================


class QuotaExceeded(Exception):
    """``used + reserved + amount`` would pass the limit (or the meter is not in the plan)."""

    def __init__(self, *, meter: str, status: QuotaStatus):
        super().__init__(f"quota exceeded for {meter}")
        self.meter = meter
        self.status = status


def _counter_id_get(*, workspace_id: int, meter: str, period: str, start: datetime, end: datetime) -> int:
    """The counter row of this period, created on first use (lazy rollover, race-free)."""
    lookup = UsageCounter.objects.filter(workspace_id=workspace_id, meter=meter, period_start=start)
    counter_id = lookup.values_list("pk", flat=True).first()
    if counter_id is None:
        UsageCounter.objects.bulk_create(
            [
                UsageCounter(
                    workspace_id=workspace_id, meter=meter, period=period, period_start=start, period_end=end
                )
            ],
            ignore_conflicts=True,
        )
        counter_id = lookup.values_list("pk", flat=True).get()
    return counter_id


def _quota_exceeded(*, counter_id: int, rule, reset_at: datetime) -> QuotaExceeded:
    used, reserved = UsageCounter.objects.filter(pk=counter_id).values_list("used", "reserved").get()
    status = quota_status_build(rule=rule, used=used, reserved=reserved, reset_at=reset_at)
    return QuotaExceeded(meter=rule.meter, status=status)


def quota_reserve(*, workspace, meter: str, amount: int, now: datetime | None = None) -> QuotaReservation:
    """Hold ``amount`` units of ``meter`` of the workspace for one call, or raise QuotaExceeded.

    One conditional UPDATE decides, so under any concurrency ``used + reserved`` never passes
    the limit (PostgreSQL re-checks the WHERE clause after waiting on the row lock).
    """
    amount = int(amount)
    if amount < 0:
        raise ValueError("amount must be >= 0")
    now = now or timezone.now()
    plan = plan_for_workspace_get(workspace=workspace, now=now)
    rule = plan_quota_get(plan=plan, meter=meter)
    start, end = period_bounds(period=rule.period, now=now)
    counter_id = _counter_id_get(
        workspace_id=workspace.pk, meter=meter, period=rule.period, start=start, end=end
    )
    with transaction.atomic():
        counter = UsageCounter.objects.filter(pk=counter_id)
        if rule.limit is not None:
            counter = counter.filter(used__lte=Value(rule.limit - amount) - F("reserved"))
        if not counter.update(reserved=F("reserved") + amount):
            raise _quota_exceeded(counter_id=counter_id, rule=rule, reset_at=end)
        return QuotaReservation.objects.create(
            workspace_id=workspace.pk, meter=meter, counter_id=counter_id, amount=amount, created_at=now
        )


def quota_settle(*, reservation: QuotaReservation, actual: int, now: datetime | None = None) -> None:
    """Charge ``actual`` units and free the hold. Runs once: a second call is a no-op.

    ``actual`` above the reserved amount is charged only up to the limit (the caller should
    have reserved enough); below it, the difference is simply released.
    """
    actual = max(0, int(actual))
    now = now or timezone.now()
    amount = reservation.amount
    with transaction.atomic():
        if not QuotaReservation.objects.filter(pk=reservation.pk, status=QuotaReservation.Status.HELD).update(
            status=QuotaReservation.Status.SETTLED, actual=actual, finished_at=now
        ):
            return
        charged: object = Value(actual)
        rule = None
        if actual > amount:
            rule = plan_quota_get(
                plan=plan_for_workspace_get(workspace=_workspace_ref(reservation.workspace_id), now=now),
                meter=reservation.meter,
            )
            if rule.limit is not None:
                headroom = (
                    Value(rule.limit + amount, output_field=BigIntegerField()) - F("used") - F("reserved")
                )
                charged = Least(Value(actual), Greatest(Value(amount), headroom))
        UsageCounter.objects.filter(pk=reservation.counter_id).update(
            used=F("used") + charged, reserved=F("reserved") - amount
        )
        reservation.status = QuotaReservation.Status.SETTLED
        reservation.actual = actual
        reservation.finished_at = now
        if actual:
            _quota_alert_schedule(reservation=reservation, now=now, rule=rule)


def quota_release(*, reservation: QuotaReservation, now: datetime | None = None) -> None:
    """Give the held units back (failed upstream call). Runs once: a second call is a no-op."""
    now = now or timezone.now()
    with transaction.atomic():
        if not QuotaReservation.objects.filter(pk=reservation.pk, status=QuotaReservation.Status.HELD).update(
            status=QuotaReservation.Status.RELEASED, finished_at=now
        ):
            return
        UsageCounter.objects.filter(pk=reservation.counter_id).update(
            reserved=F("reserved") - reservation.amount
        )
        reservation.status = QuotaReservation.Status.RELEASED
        reservation.finished_at = now


# =============================================================================================
# Quotas, batched: every meter of one call in one statement (the proxy's hot path)
# =============================================================================================


# Lock order: every statement that moves several counters of a call (reserve, settle, release)
# first locks them in id order (a ``… ORDER BY id FOR UPDATE`` CTE the update joins), so
# concurrent calls of one workspace — and grouped settles of many — never deadlock on each other.


def _rules_for(*, workspace, meters, now: datetime, plan: Plan | None = None) -> dict:
    plan = plan or plan_for_workspace_get(workspace=workspace, now=now)
    rules = {}
    for meter in meters:
        rule = plan_quota_get(plan=plan, meter=meter)
        start, end = period_bounds(period=rule.period, now=now)
        rules[meter] = (rule, start, end)
    return rules


def quota_reserve_many(
    *,
    workspace,
    meters: dict[str, int],
    now: datetime | None = None,
    synchronous_commit: bool = True,
    plan: Plan | None = None,
) -> list[QuotaReservation]:
    """Hold ``meters`` (meter -> units) for one call, all or nothing, or raise QuotaExceeded.

    PostgreSQL: one statement — a conditional ``UPDATE … FROM (VALUES …)`` on the counters
    (``used + reserved + n <= limit`` re-checked under each row lock, so concurrency can never
    pass a limit) feeding the reservation ``INSERT`` through a CTE. If any meter does not fit,
    the meters that did are released at once, so nothing stays held (the refusal path costs
    two more statements; the hot path none). Counter rows are created on first use.
    Other databases: ``quota_reserve`` per meter inside one transaction. ``plan``: the
    caller's ``plan_for_workspace_get`` result, to save its cache round trip.
    """
    now = now or timezone.now()
    meters = {meter: int(amount) for meter, amount in meters.items()}
    if any(amount < 0 for amount in meters.values()):
        raise ValueError("amounts must be >= 0")
    if not meters:
        return []
    rules = _rules_for(workspace=workspace, meters=meters, now=now, plan=plan)
    for attempt in range(2):
        rows = _reserve_statement(
            workspace_id=workspace.pk,
            meters=meters,
            rules=rules,
            now=now,
            synchronous_commit=synchronous_commit,
        )
        if rows is not None:
            return _reservations_from_rows(workspace_id=workspace.pk, rows=rows, now=now)
        # Refused: a missing counter (first call of a period) or a limit. Find out which.
        states = {
            meter: (used, reserved)
            for meter, used, reserved in UsageCounter.objects.filter(
                workspace_id=workspace.pk,
                meter__in=list(meters),
                period_start__in={s for _, s, _ in rules.values()},
            ).values_list("meter", "used", "reserved")
        }
        missing = [meter for meter in meters if meter not in states]
        if missing and attempt == 0:
            for meter in missing:
                rule, start, end = rules[meter]
                _counter_id_get(
                    workspace_id=workspace.pk, meter=meter, period=rule.period, start=start, end=end
                )
            continue
        for meter, amount in meters.items():
            rule, _start, end = rules[meter]
            used, reserved = states.get(meter, (0, 0))
            if rule.limit is not None and used + reserved + amount > rule.limit:
                status = quota_status_build(rule=rule, used=used, reserved=reserved, reset_at=end)
                raise QuotaExceeded(meter=meter, status=status)
    # Every meter fitted when re-read: the refusal was a race with another call; report the first.
    meter = next(iter(meters))
    rule, _start, end = rules[meter]
    used, reserved = states.get(meter, (0, 0))
    raise QuotaExceeded(
        meter=meter, status=quota_status_build(rule=rule, used=used, reserved=reserved, reset_at=end)
    )


def _reserve_sql(
    *,
    workspace_id: int,
    meters: dict,
    rules: dict,
    now: datetime,
    synchronous_commit: bool,
    copies: int = 1,
    headroom: int = 1,
):
    """The reserve statement: ``copies`` reservations of ``meters[m]`` units per meter, taken
    only if ``used + reserved + headroom × amount`` stays within each limit (``headroom`` ≥
    ``copies``; more keeps a batch of spares from taking what single calls would need)."""
    counters, holds = table_quoted(UsageCounter), table_quoted(QuotaReservation)
    values, params = [], []
    for meter, amount in meters.items():
        rule, start, _end = rules[meter]
        values.append("(%s, %s::timestamptz, %s::bigint, %s::bigint)")
        params += [meter, start, amount, rule.limit]
    cfg = synchronous_commit_off_cte(synchronous_commit)
    sql = f"""
        WITH want(meter, period_start, amount, lim) AS (VALUES {", ".join(values)}){cfg},
        lk AS (
            SELECT c.id FROM {counters} c JOIN want w ON c.meter = w.meter AND c.period_start = w.period_start
            WHERE c.workspace_id = %s ORDER BY c.id FOR UPDATE OF c
        ),
        upd AS (
            UPDATE {counters} c SET reserved = c.reserved + w.amount * %s::bigint
            FROM want w, lk{", _cfg" if cfg else ""}
            WHERE c.id = lk.id AND c.workspace_id = %s
              AND c.meter = w.meter AND c.period_start = w.period_start
              AND (w.lim IS NULL OR c.used + c.reserved + w.amount * %s::bigint <= w.lim)
            RETURNING c.id, c.meter, w.amount
        )
        INSERT INTO {holds} (workspace_id, meter, counter_id, amount, status, created_at)
        SELECT %s, upd.meter, upd.id, upd.amount, %s, %s FROM upd, generate_series(1, %s::int)
        RETURNING id, meter, counter_id, amount
    """  # noqa: S608 (table names from model meta, values parametrised)
    if copies < 1 or headroom < copies:
        raise ValueError("need 1 <= copies <= headroom")
    params += [
        workspace_id,
        copies,
        workspace_id,
        headroom,
        workspace_id,
        QuotaReservation.Status.HELD,
        now,
        copies,
    ]
    return sql, params


def _reserve_statement(
    *, workspace_id: int, meters: dict, rules: dict, now: datetime, synchronous_commit: bool
):
    sql, params = _reserve_sql(
        workspace_id=workspace_id, meters=meters, rules=rules, now=now, synchronous_commit=synchronous_commit
    )
    with connection.cursor() as cursor:  # one statement: its own transaction unless inside one
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    if len(rows) != len(meters):
        # All or nothing: give back the meters that did fit (only on the refusal path).
        quota_release_many(
            reservations=[
                QuotaReservation(pk=pk, meter=meter, counter_id=counter_id, amount=amount)
                for pk, meter, counter_id, amount in rows
            ],
            now=now,
            synchronous_commit=synchronous_commit,
        )
        return None
    return rows


def _reservations_from_rows(*, workspace_id: int, rows, now: datetime) -> list[QuotaReservation]:
    return [
        QuotaReservation(
            pk=pk,
            workspace_id=workspace_id,
            meter=meter,
            counter_id=counter_id,
            amount=amount,
            status=QuotaReservation.Status.HELD,
            created_at=now,
        )
        for pk, meter, counter_id, amount in rows
    ]


async def quota_reserve_many_fast(
    *,
    workspace_id: int,
    meters: dict[str, int],
    plan: Plan,
    now: datetime,
    synchronous_commit: bool,
    copies: int = 1,
    headroom: int = 1,
) -> list[QuotaReservation] | None:
    """``quota_reserve_many``'s hot case on the fast lane (PostgreSQL, async pool, no thread).

    The same statement. None when it was refused (a limit, or a counter row not created yet for
    this period): whatever fitted is released first, so nothing stays held, and the caller runs
    ``quota_reserve_many`` (which creates counters, or raises QuotaExceeded) instead.
    ``copies`` / ``headroom``: as ``_reserve_sql`` (a worker's spares, ``billing.quota_pool``).
    """
    meters = {meter: int(amount) for meter, amount in meters.items()}
    if not meters or any(amount < 0 for amount in meters.values()):
        return None
    rules = _rules_for(workspace=None, meters=meters, now=now, plan=plan)
    sql, params = _reserve_sql(
        workspace_id=workspace_id,
        meters=meters,
        rules=rules,
        now=now,
        synchronous_commit=synchronous_commit,
        copies=copies,
        headroom=headroom,
    )
    rows = await fastio.db_fetch(sql, params)  # a fixed text per number of meters: prepared once
    if len(rows) != len(meters) * copies:
        if rows:
            held = _reservations_from_rows(workspace_id=workspace_id, rows=rows, now=now)
            await quota_release_many_fast(reservations=held, now=now, synchronous_commit=synchronous_commit)
        return None
    return _reservations_from_rows(workspace_id=workspace_id, rows=rows, now=now)


def quota_settle_many(
    *,
    reservations: list[QuotaReservation],
    actual: dict[str, int],
    now: datetime | None = None,
    synchronous_commit: bool = True,
    plan: Plan | None = None,
) -> dict[str, tuple[int, int]]:
    """Settle one call's reservations to ``actual`` (meter -> units) in one statement.

    Each meter is charged ``min(actual, reserved amount)`` — the call reserved its maximum — and
    its hold is freed; a reservation already settled or released is skipped (runs once).
    Returns meter -> (used, reserved) of the counters after the settle, for the quota block.
    Crossing an alert threshold queues the alert as ``quota_settle`` does.
    """
    now = now or timezone.now()
    if not reservations:
        return {}
    part = quota_settle_sql(
        reservations=reservations, actual=actual, now=now, synchronous_commit=synchronous_commit
    )
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        cursor.execute(f"WITH {part.ctes} {part.select}", part.params)
        rows = cursor.fetchall()
        return quota_settle_finish(reservations=reservations, rows=rows, now=now, plan=plan)


@dataclass(frozen=True)
class QuotaSettleSql:
    """The settle as data-modifying CTEs, for a caller that writes its own rows in the same
    statement (the proxy: settle + usage event + rollup + spend in one round trip, so the hot
    counter rows are locked only while that one statement runs). ``select`` reads the settled
    counters: counter_id, meter, used, reserved, period_start, charged."""

    ctes: str
    params: list
    select: str = "SELECT counter_id, meter, used, reserved, period_start, charged FROM qs_c"


def quota_settle_sql(
    *,
    reservations: list[QuotaReservation],
    actual: dict[str, int],
    now: datetime,
    synchronous_commit: bool = True,
) -> QuotaSettleSql:
    """PostgreSQL only. CTE names: ``qs_act``, ``qs_r``, ``qs_agg``, ``qs_c`` (and ``_cfg``)."""
    return quota_settle_pairs_sql(
        pairs=[(reservation, actual.get(reservation.meter, 0)) for reservation in reservations],
        now=now,
        synchronous_commit=synchronous_commit,
    )


def quota_settle_pairs_sql(
    *, pairs: list[tuple[QuotaReservation, int]], now: datetime, synchronous_commit: bool = True
) -> QuotaSettleSql:
    """``quota_settle_sql`` for (reservation, actual units) pairs, possibly of many calls: the
    proxy's grouped settles. A counter several reservations share moves once by their sum
    (an ``UPDATE … FROM`` applies one joined row per target row), and its ``charged`` is the sum."""
    counters, holds = table_quoted(UsageCounter), table_quoted(QuotaReservation)
    values, params = [], []
    for reservation, actual in pairs:
        values.append("(%s::bigint, %s::bigint)")
        params += [reservation.pk, max(0, int(actual))]
    cfg = synchronous_commit_off_cte(synchronous_commit)
    ctes = f"""
        qs_act(id, actual) AS (VALUES {", ".join(values)}){cfg},
        qs_r AS (
            UPDATE {holds} q SET status = %s, actual = qs_act.actual, finished_at = %s
            FROM qs_act{", _cfg" if cfg else ""}
            WHERE q.id = qs_act.id AND q.status = %s
            RETURNING q.counter_id, q.amount, LEAST(qs_act.actual, q.amount) AS charged
        ),
        qs_agg AS (
            SELECT counter_id, SUM(amount)::bigint AS amount, SUM(charged)::bigint AS charged
            FROM qs_r GROUP BY counter_id
        ),
        qs_lk AS (
            SELECT c.id FROM {counters} c WHERE c.id IN (SELECT counter_id FROM qs_agg)
            ORDER BY c.id FOR UPDATE
        ),
        qs_c AS (
            UPDATE {counters} c SET used = c.used + a.charged, reserved = c.reserved - a.amount
            FROM qs_agg a, qs_lk l WHERE c.id = a.counter_id AND l.id = c.id
            RETURNING c.id AS counter_id, c.meter, c.used, c.reserved, c.period_start, a.charged
        )
    """  # noqa: S608 (table names from model meta, values parametrised)
    params += [QuotaReservation.Status.SETTLED, now, QuotaReservation.Status.HELD]
    return QuotaSettleSql(ctes=ctes, params=params)


def quota_settle_finish(
    *, reservations: list[QuotaReservation], rows, now: datetime, plan: Plan | None = None
) -> dict[str, tuple[int, int]]:
    """After ``quota_settle_sql`` ran: queue crossed alerts, mark the reservations, and return
    meter -> (used, reserved) of the settled counters."""
    for counter_id, meter, used, _reserved, period_start, charged in rows:
        if charged:
            _quota_alert_check(
                plan=plan,
                workspace_id=reservations[0].workspace_id,
                meter=meter,
                counter_id=counter_id,
                used=used,
                period_start=period_start,
                now=now,
            )
    for reservation in reservations:
        reservation.status = QuotaReservation.Status.SETTLED
        reservation.finished_at = now
    return {meter: (used, reserved) for _id, meter, used, reserved, _start, _charged in rows}


def quota_release_many(
    *, reservations: list[QuotaReservation], now: datetime | None = None, synchronous_commit: bool = True
) -> None:
    """Give one call's held units back (failed call) in one statement. Runs once."""
    now = now or timezone.now()
    if not reservations:
        return
    sql, params = _release_sql(reservations=reservations, now=now, synchronous_commit=synchronous_commit)
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        cursor.execute(sql, params)
    for reservation in reservations:
        reservation.status = QuotaReservation.Status.RELEASED
        reservation.finished_at = now


def _release_sql(*, reservations: list[QuotaReservation], now: datetime, synchronous_commit: bool):
    counters, holds = table_quoted(UsageCounter), table_quoted(QuotaReservation)
    cfg = synchronous_commit_off_cte(synchronous_commit)
    sql = f"""
        WITH ids(id) AS (SELECT unnest(%s::bigint[])){cfg},
        r AS (
            UPDATE {holds} q SET status = %s, finished_at = %s
            FROM ids{", _cfg" if cfg else ""}
            WHERE q.id = ids.id AND q.status = %s
            RETURNING q.counter_id, q.amount
        ),
        agg AS (SELECT counter_id, SUM(amount)::bigint AS amount FROM r GROUP BY counter_id),
        lk AS (
            SELECT c.id FROM {counters} c WHERE c.id IN (SELECT counter_id FROM agg) ORDER BY c.id FOR UPDATE
        )
        UPDATE {counters} c SET reserved = c.reserved - agg.amount FROM agg, lk
        WHERE c.id = agg.counter_id AND lk.id = c.id
    """  # noqa: S608 (table names from model meta, values parametrised; a counter several
    # reservations share moves once by their sum: an UPDATE … FROM applies one joined row)
    params = [
        [r.pk for r in reservations],
        QuotaReservation.Status.RELEASED,
        now,
        QuotaReservation.Status.HELD,
    ]
    return sql, params


async def quota_release_many_fast(
    *, reservations: list[QuotaReservation], now: datetime, synchronous_commit: bool
) -> None:
    """``quota_release_many`` on the fast lane (PostgreSQL, async pool). Runs once."""
    if not reservations:
        return
    sql, params = _release_sql(reservations=reservations, now=now, synchronous_commit=synchronous_commit)
    await fastio.db_fetch(sql, params)
    for reservation in reservations:
        reservation.status = QuotaReservation.Status.RELEASED
        reservation.finished_at = now


def quota_reservations_release_stale(*, now: datetime | None = None) -> int:
    """Release holds older than ``STALE_RESERVATION_SECONDS`` (the longest upstream call plus a
    margin): their caller died before settling, so the quota is freed within minutes, not held
    back from its owner for an hour. Returns how many."""
    now = now or timezone.now()
    released = 0
    older_than = timedelta(seconds=settings.STALE_RESERVATION_SECONDS)
    stale = QuotaReservation.objects.filter(
        status=QuotaReservation.Status.HELD, created_at__lt=now - older_than
    ).only("pk", "counter_id", "amount", "status")
    for reservation in stale.iterator(chunk_size=500):
        quota_release(reservation=reservation, now=now)
        released += 1
    if released:
        logger.warning("released stale quota reservations", extra={"count": released})
    key_holds_release_stale(now=now)  # an API key's own limits (``key_limits``) likewise
    return released


def quota_period_rollover(*, now: datetime | None = None) -> dict[str, int]:
    """Close finished periods. Safe to run any time, twice, or late.

    - releases reservations older than ``STALE_RESERVATION_SECONDS`` (their caller died);
    - writes one PeriodAudit per counter whose period has ended (the unique counter link makes
      a second run a no-op; a counter that still has units in flight waits for the next run);
    - alerts are keyed by period start, so the new period is re-armed with nothing to reset.
    Counters themselves are never zeroed: the new period already has (or lazily gets) its row.
    """
    now = now or timezone.now()
    released = quota_reservations_release_stale(now=now)
    audits = []
    closed = UsageCounter.objects.filter(period_end__lte=now, reserved=0, audit__isnull=True)
    for counter in closed.iterator(chunk_size=500):
        plan = plan_for_workspace_get(
            workspace=_workspace_ref(counter.workspace_id), now=counter.period_end - timedelta(seconds=1)
        )
        rule = plan_quota_get(plan=plan, meter=counter.meter)
        audits.append(
            PeriodAudit(
                counter=counter,
                workspace_id=counter.workspace_id,
                meter=counter.meter,
                period_start=counter.period_start,
                period_end=counter.period_end,
                used=counter.used,
                limit=rule.limit,
                plan_code=plan.code,
                created_at=now,
            )
        )
    PeriodAudit.objects.bulk_create(audits, ignore_conflicts=True, batch_size=500)
    return {"released": released, "audited": len(audits)}
