"""Writes for billing: quotas (reserve → settle/release, periods, alerts), checkout, and Stripe
webhook fulfilment.

Rules kept here:
- quota reserve is ONE conditional UPDATE (``used + reserved + n <= limit``); a new period is
  a new counter row, created with INSERT … ON CONFLICT DO NOTHING;
- webhook events are stored (unique event id) before processing, processed under a row lock
  on the stored event, and fulfilment is keyed by the Checkout Session id;
- no network call inside a transaction: Stripe is called before/after, emails go through
  Celery tasks queued with ``transaction.on_commit``.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from urllib.parse import urlsplit

from dateutil.relativedelta import relativedelta
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.mail import send_mail
from django.db import IntegrityError, connection, transaction
from django.db.models import BigIntegerField, F, Value
from django.db.models.functions import Greatest, Least
from django.urls import reverse
from django.utils import timezone

from core.exceptions import ApiError
from core.locks import lock_objects
from core.rawsql import table_quoted

from .. import registry, stripe_client
from ..catalog import (
    DEFAULT_CATALOG,
    DEFAULT_CURRENCY,
    DEFAULT_MAX_TOKENS,
    DEFAULT_MAX_TOKENS_CAP,
    METER_PERIODS,
)
from ..fulfilment import (
    CheckoutEventRejected,
    checkout_for_session_get,
    checkout_session_disagreement,
    checkout_session_trusted,
)
from ..models import (
    CheckoutFulfilment,
    CheckoutSession,
    Gateway,
    PaymentTransaction,
    PeriodAudit,
    Plan,
    PlanQuota,
    QuotaAlertSent,
    QuotaReservation,
    StripeEvent,
    Subscription,
    UsageCounter,
)
from ..selectors import (
    CATALOG_VERSION_KEY,
    QuotaStatus,
    period_bounds,
    plan_for_user_get,
    plan_quota_get,
    quota_status_build,
    subscription_billing_customer_get,
    subscription_get,
    user_plan_cache_key,
)
from ..subscriptions import LIVE_STATUSES, subscription_live_claim, subscription_user_lock

logger = logging.getLogger("tollgate.billing")

PLAN_CHECKOUT_KIND = "plan"
QUOTA_ALERT_THRESHOLDS = (80, 100)  # percent of a monthly limit


# =============================================================================================
# Catalogue
# =============================================================================================


def plan_catalog_invalidate() -> None:
    """Tell every process to reload plans (after commit, so nobody reloads the old rows)."""
    transaction.on_commit(lambda: cache.set(CATALOG_VERSION_KEY, uuid.uuid4().hex, None))


def plan_catalog_seed() -> list[Plan]:
    """Install the default catalogue. Idempotent: existing plans and quotas are left as the
    operator edited them; only missing ones are created."""
    created = []
    with transaction.atomic():
        for spec in DEFAULT_CATALOG:
            plan, was_created = Plan.objects.get_or_create(
                code=spec["code"],
                defaults={
                    "name": spec["name"],
                    "price_minor": spec["price_minor"],
                    "currency": DEFAULT_CURRENCY,
                    "rate_limit_per_minute": spec["rate_limit_per_minute"],
                    "routing_weights": spec["routing_weights"],
                    "default_max_tokens": DEFAULT_MAX_TOKENS,
                    "max_tokens_cap": DEFAULT_MAX_TOKENS_CAP,
                    "sort_order": spec["sort_order"],
                    "price_dzd_minor": spec.get("price_dzd_minor"),
                },
            )
            if was_created:
                created.append(plan)
            for meter, limit in spec["quotas"].items():
                PlanQuota.objects.get_or_create(
                    plan=plan, meter=meter, defaults={"period": METER_PERIODS[meter], "limit": limit}
                )
        plan_catalog_invalidate()
    return created


# =============================================================================================
# Quotas
# =============================================================================================


class QuotaExceeded(Exception):
    """``used + reserved + amount`` would pass the limit (or the meter is not in the plan)."""

    def __init__(self, *, meter: str, status: QuotaStatus):
        super().__init__(f"quota exceeded for {meter}")
        self.meter = meter
        self.status = status


def _counter_id_get(*, user_id: int, meter: str, period: str, start: datetime, end: datetime) -> int:
    """The counter row of this period, created on first use (lazy rollover, race-free)."""
    lookup = UsageCounter.objects.filter(user_id=user_id, meter=meter, period_start=start)
    counter_id = lookup.values_list("pk", flat=True).first()
    if counter_id is None:
        UsageCounter.objects.bulk_create(
            [UsageCounter(user_id=user_id, meter=meter, period=period, period_start=start, period_end=end)],
            ignore_conflicts=True,
        )
        counter_id = lookup.values_list("pk", flat=True).get()
    return counter_id


def _quota_exceeded(*, counter_id: int, rule, reset_at: datetime) -> QuotaExceeded:
    used, reserved = UsageCounter.objects.filter(pk=counter_id).values_list("used", "reserved").get()
    status = quota_status_build(rule=rule, used=used, reserved=reserved, reset_at=reset_at)
    return QuotaExceeded(meter=rule.meter, status=status)


def quota_reserve(*, user, meter: str, amount: int, now: datetime | None = None) -> QuotaReservation:
    """Hold ``amount`` units of ``meter`` for one call, or raise QuotaExceeded.

    One conditional UPDATE decides, so under any concurrency ``used + reserved`` never passes
    the limit (PostgreSQL re-checks the WHERE clause after waiting on the row lock).
    """
    amount = int(amount)
    if amount < 0:
        raise ValueError("amount must be >= 0")
    now = now or timezone.now()
    plan = plan_for_user_get(user=user, now=now)
    rule = plan_quota_get(plan=plan, meter=meter)
    start, end = period_bounds(period=rule.period, now=now)
    counter_id = _counter_id_get(user_id=user.pk, meter=meter, period=rule.period, start=start, end=end)
    with transaction.atomic():
        counter = UsageCounter.objects.filter(pk=counter_id)
        if rule.limit is not None:
            counter = counter.filter(used__lte=Value(rule.limit - amount) - F("reserved"))
        if not counter.update(reserved=F("reserved") + amount):
            raise _quota_exceeded(counter_id=counter_id, rule=rule, reset_at=end)
        return QuotaReservation.objects.create(
            user_id=user.pk, meter=meter, counter_id=counter_id, amount=amount, created_at=now
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
                plan=plan_for_user_get(user=_user_ref(reservation.user_id), now=now), meter=reservation.meter
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
# concurrent calls of one user — and grouped settles of many — never deadlock on each other.


def _sync_commit_off_sql(synchronous_commit: bool) -> str:
    """A CTE term that makes this transaction's commit asynchronous (PostgreSQL).

    ``set_config(..., true)`` is ``SET LOCAL`` from inside the statement, so it costs no round
    trip. An asynchronous commit keeps every guarantee except durability of the last few hundred
    milliseconds before a server crash (the WAL is replayed as a consistent prefix): see
    docs/speed.md for what that means for money.
    """
    return "" if synchronous_commit else ", _cfg AS (SELECT set_config('synchronous_commit', 'off', true))"


def _rules_for(*, user, meters, now: datetime, plan: Plan | None = None) -> dict:
    plan = plan or plan_for_user_get(user=user, now=now)
    rules = {}
    for meter in meters:
        rule = plan_quota_get(plan=plan, meter=meter)
        start, end = period_bounds(period=rule.period, now=now)
        rules[meter] = (rule, start, end)
    return rules


def quota_reserve_many(
    *,
    user,
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
    caller's ``plan_for_user_get`` result, to save its cache round trip.
    """
    now = now or timezone.now()
    meters = {meter: int(amount) for meter, amount in meters.items()}
    if any(amount < 0 for amount in meters.values()):
        raise ValueError("amounts must be >= 0")
    if not meters:
        return []
    rules = _rules_for(user=user, meters=meters, now=now, plan=plan)
    for attempt in range(2):
        rows = _reserve_statement(
            user_id=user.pk, meters=meters, rules=rules, now=now, synchronous_commit=synchronous_commit
        )
        if rows is not None:
            return _reservations_from_rows(user_id=user.pk, rows=rows, now=now)
        # Refused: a missing counter (first call of a period) or a limit. Find out which.
        states = {
            meter: (used, reserved)
            for meter, used, reserved in UsageCounter.objects.filter(
                user_id=user.pk, meter__in=list(meters), period_start__in={s for _, s, _ in rules.values()}
            ).values_list("meter", "used", "reserved")
        }
        missing = [meter for meter in meters if meter not in states]
        if missing and attempt == 0:
            for meter in missing:
                rule, start, end = rules[meter]
                _counter_id_get(user_id=user.pk, meter=meter, period=rule.period, start=start, end=end)
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
    user_id: int,
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
    cfg = _sync_commit_off_sql(synchronous_commit)
    sql = f"""
        WITH want(meter, period_start, amount, lim) AS (VALUES {", ".join(values)}){cfg},
        lk AS (
            SELECT c.id FROM {counters} c JOIN want w ON c.meter = w.meter AND c.period_start = w.period_start
            WHERE c.user_id = %s ORDER BY c.id FOR UPDATE OF c
        ),
        upd AS (
            UPDATE {counters} c SET reserved = c.reserved + w.amount * %s::bigint
            FROM want w, lk{", _cfg" if cfg else ""}
            WHERE c.id = lk.id AND c.user_id = %s AND c.meter = w.meter AND c.period_start = w.period_start
              AND (w.lim IS NULL OR c.used + c.reserved + w.amount * %s::bigint <= w.lim)
            RETURNING c.id, c.meter, w.amount
        )
        INSERT INTO {holds} (user_id, meter, counter_id, amount, status, created_at)
        SELECT %s, upd.meter, upd.id, upd.amount, %s, %s FROM upd, generate_series(1, %s::int)
        RETURNING id, meter, counter_id, amount
    """  # noqa: S608 (table names from model meta, values parametrised)
    if copies < 1 or headroom < copies:
        raise ValueError("need 1 <= copies <= headroom")
    params += [user_id, copies, user_id, headroom, user_id, QuotaReservation.Status.HELD, now, copies]
    return sql, params


def _reserve_statement(*, user_id: int, meters: dict, rules: dict, now: datetime, synchronous_commit: bool):
    sql, params = _reserve_sql(
        user_id=user_id, meters=meters, rules=rules, now=now, synchronous_commit=synchronous_commit
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


def _reservations_from_rows(*, user_id: int, rows, now: datetime) -> list[QuotaReservation]:
    return [
        QuotaReservation(
            pk=pk,
            user_id=user_id,
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
    user_id: int,
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
    from core.fastio import db_fetch

    meters = {meter: int(amount) for meter, amount in meters.items()}
    if not meters or any(amount < 0 for amount in meters.values()):
        return None
    rules = _rules_for(user=None, meters=meters, now=now, plan=plan)
    sql, params = _reserve_sql(
        user_id=user_id,
        meters=meters,
        rules=rules,
        now=now,
        synchronous_commit=synchronous_commit,
        copies=copies,
        headroom=headroom,
    )
    rows = await db_fetch(sql, params)  # a fixed text per number of meters: prepared once
    if len(rows) != len(meters) * copies:
        if rows:
            held = _reservations_from_rows(user_id=user_id, rows=rows, now=now)
            await quota_release_many_fast(reservations=held, now=now, synchronous_commit=synchronous_commit)
        return None
    return _reservations_from_rows(user_id=user_id, rows=rows, now=now)


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
    cfg = _sync_commit_off_sql(synchronous_commit)
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
                user_id=reservations[0].user_id,
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
    cfg = _sync_commit_off_sql(synchronous_commit)
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
    from core.fastio import db_fetch

    if not reservations:
        return
    sql, params = _release_sql(reservations=reservations, now=now, synchronous_commit=synchronous_commit)
    await db_fetch(sql, params)
    for reservation in reservations:
        reservation.status = QuotaReservation.Status.RELEASED
        reservation.finished_at = now


def quota_alert_may_be_due(*, rows, plan: Plan) -> bool:
    """Whether a settle's counter rows cross an alert threshold (then ``quota_settle_finish``
    must run where it may touch the cache and queue a task; otherwise it is pure)."""
    for _counter_id, meter, used, _reserved, _period_start, charged in rows:
        if not charged:
            continue
        rule = plan_quota_get(plan=plan, meter=meter)
        if rule.period == "month" and rule.limit and used * 100 >= min(QUOTA_ALERT_THRESHOLDS) * rule.limit:
            return True
    return False


def _quota_alert_check(
    *,
    user_id: int,
    meter: str,
    counter_id: int,
    used: int,
    period_start: datetime,
    now: datetime,
    plan: Plan | None = None,
) -> None:
    """``_quota_alert_schedule`` for a settle that already knows the counter (no extra query)."""
    rule = plan_quota_get(plan=plan or plan_for_user_get(user=_user_ref(user_id), now=now), meter=meter)
    if rule.period != "month" or not rule.limit:
        return
    crossed = [t for t in QUOTA_ALERT_THRESHOLDS if used * 100 >= t * rule.limit]
    if not crossed:
        return
    gate = _alert_gate_key(user_id=user_id, meter=meter, period_start=period_start, threshold=crossed[-1])
    if cache.get(gate):
        return
    from ..tasks import quota_alert_send_task

    transaction.on_commit(
        lambda: quota_alert_send_task.delay(user_id=user_id, meter=meter, counter_id=counter_id)
    )


def _user_ref(user_id: int) -> SimpleNamespace:
    """What plan_for_user_get needs (the pk), without loading the user row on the hot path."""
    return SimpleNamespace(pk=user_id)


def _alert_gate_key(*, user_id: int, meter: str, period_start: datetime, threshold: int) -> str:
    return f"billing:quota-alert:{user_id}:{meter}:{period_start:%Y%m%d}:{threshold}"


def _quota_alert_schedule(*, reservation: QuotaReservation, now: datetime, rule=None) -> None:
    """After a settle on a monthly meter, queue the alert task when a threshold is crossed.

    The shared-cache gate only saves queueing the task again; the unique QuotaAlertSent row
    is what guarantees one email per threshold per period.
    """
    if rule is None:
        rule = plan_quota_get(
            plan=plan_for_user_get(user=_user_ref(reservation.user_id), now=now), meter=reservation.meter
        )
    if rule.period != "month" or not rule.limit:
        return
    used, period_start = (
        UsageCounter.objects.filter(pk=reservation.counter_id).values_list("used", "period_start").get()
    )
    crossed = [t for t in QUOTA_ALERT_THRESHOLDS if used * 100 >= t * rule.limit]
    if not crossed:
        return
    gate = _alert_gate_key(
        user_id=reservation.user_id, meter=reservation.meter, period_start=period_start, threshold=crossed[-1]
    )
    if cache.get(gate):
        return
    from ..tasks import quota_alert_send_task

    user_id, meter, counter_id = reservation.user_id, reservation.meter, reservation.counter_id
    transaction.on_commit(
        lambda: quota_alert_send_task.delay(user_id=user_id, meter=meter, counter_id=counter_id)
    )


def quota_alert_send(*, user_id: int, meter: str, counter_id: int, now: datetime | None = None) -> list[int]:
    """Email the user for each threshold crossed in the counter's period, once each.

    The marker row and the email commit together: if sending fails, the marker is rolled back
    and the next settle (or a task retry) tries again.
    """
    now = now or timezone.now()
    counter = (
        UsageCounter.objects.select_related("user")
        .filter(pk=counter_id, user_id=user_id, meter=meter)
        .first()
    )
    if counter is None:
        return []
    rule = plan_quota_get(plan=plan_for_user_get(user=counter.user, now=now), meter=meter)
    if not rule.limit:
        return []
    sent = []
    for threshold in QUOTA_ALERT_THRESHOLDS:
        if counter.used * 100 < threshold * rule.limit:
            continue
        with transaction.atomic():
            _, created = QuotaAlertSent.objects.get_or_create(
                user_id=user_id,
                meter=meter,
                period_start=counter.period_start,
                threshold=threshold,
                defaults={"sent_at": now},
            )
            if created:
                _quota_alert_email(counter=counter, limit=rule.limit, threshold=threshold)
                sent.append(threshold)
        gate = _alert_gate_key(
            user_id=user_id, meter=meter, period_start=counter.period_start, threshold=threshold
        )
        cache.set(gate, 1, 40 * 24 * 3600)
    return sent


def _quota_alert_email(*, counter: UsageCounter, limit: int, threshold: int) -> None:
    label = counter.get_meter_display()
    if threshold >= 100:
        subject = f"Tollgate: your {label} quota is used up"
        lead = f"You have used all {limit:,} {label.lower()} included in your plan this month."
    else:
        subject = f"Tollgate: {threshold}% of your {label} quota used"
        lead = f"You have used {counter.used:,} of {limit:,} {label.lower()} this month ({threshold}%)."
    body = (
        f"{lead}\n\nYour quota resets on {counter.period_end:%Y-%m-%d} (00:00 UTC).\n"
        f"Upgrade your plan: {settings.SITE_URL}{reverse('billing:pricing')}\n"
    )
    send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [counter.user.email])


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
    closed = UsageCounter.objects.filter(period_end__lte=now, reserved=0, audit__isnull=True).select_related(
        "user"
    )
    for counter in closed.iterator(chunk_size=500):
        plan = plan_for_user_get(user=counter.user, now=counter.period_end - timedelta(seconds=1))
        rule = plan_quota_get(plan=plan, meter=counter.meter)
        audits.append(
            PeriodAudit(
                counter=counter,
                user_id=counter.user_id,
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


# =============================================================================================
# Checkout
# =============================================================================================


def simulated_checkout_enabled() -> bool:
    """The offline checkout exists only in DEBUG and without Stripe (re-checked at runtime)."""
    return bool(settings.SIMULATED_CHECKOUT_ENABLED and settings.DEBUG and not settings.STRIPE_SECRET_KEY)


def checkout_redirect_url_validate(*, url: str, param: str) -> str:
    """Reject anything but http(s) on a host of CHECKOUT_REDIRECT_HOSTS (no open redirect)."""
    message = f"{param} must be an http(s) URL on an allowed host."
    if not isinstance(url, str) or not url or len(url) > 2000 or "\\" in url or any(c.isspace() for c in url):
        raise ApiError("invalid_request", message, param=param)
    try:
        parts = urlsplit(url)
        hostname = (parts.hostname or "").lower()
        parts.port  # noqa: B018  (raises ValueError on a malformed port)
    except ValueError:
        raise ApiError("invalid_request", message, param=param)
    if parts.scheme not in ("http", "https") or not hostname or parts.username or parts.password:
        raise ApiError("invalid_request", message, param=param)
    for allowed in settings.CHECKOUT_REDIRECT_HOSTS:
        allowed = allowed.lower()
        if hostname == allowed or (allowed.startswith(".") and hostname.endswith(allowed)):
            return url
    raise ApiError("invalid_request", message, param=param)


def _add_interval(at: datetime, interval: str) -> datetime:
    return at + (relativedelta(years=1) if interval == Plan.Interval.YEAR else relativedelta(months=1))


def checkout_session_start(
    *,
    user,
    kind: str,
    line_item: dict,
    metadata: dict,
    success_url: str,
    cancel_url: str,
    mode: str,
    description: str = "",
    gateway: str = Gateway.STRIPE,
) -> dict:
    """Open a checkout for ``user`` (Stripe, or the simulated one offline) and return
    ``{"checkout_url", "session_id"}``. ``kind`` selects the registered handler on payment.

    Our CheckoutSession row is written first so the Stripe idempotency key is built from our
    id; the Stripe call happens outside any transaction.

    ``gateway="chargily"`` opens a Chargily Pay checkout instead: ``line_item`` must then carry
    ``price_data`` in ``dzd`` (centimes); the result also has ``amount`` (whole DZD),
    ``amount_minor`` and ``currency``, and ``session_id`` is our reference ("chg_…").
    Either way a pending PaymentTransaction records the attempt.
    """
    if gateway not in Gateway.values:
        raise ApiError("invalid_request", f"Unknown payment gateway: {gateway}", param="gateway")
    checkout_redirect_url_validate(url=success_url, param="successUrl")
    checkout_redirect_url_validate(url=cancel_url, param="cancelUrl")
    if mode not in ("subscription", "payment"):
        raise ValueError(f"unsupported checkout mode {mode!r}")
    full_metadata = {str(k): str(v) for k, v in (metadata or {}).items()}
    full_metadata.update({"kind": kind, "user_id": str(user.pk)})
    price_data = line_item.get("price_data") or {}
    checkout = CheckoutSession(
        user=user,
        kind=kind,
        mode=mode,
        line_item=line_item,
        metadata=full_metadata,
        amount_minor=int(price_data.get("unit_amount") or 0) * int(line_item.get("quantity") or 1),
        currency=(price_data.get("currency") or DEFAULT_CURRENCY).lower(),
        description=description or (price_data.get("product_data") or {}).get("name", "")[:200],
        success_url=success_url,
        cancel_url=cancel_url,
        gateway=gateway,
    )
    if gateway == Gateway.CHARGILY:
        from ..chargily import chargily_checkout_open

        return chargily_checkout_open(checkout=checkout)
    if stripe_client.stripe_is_configured():
        checkout.save()
        params = {
            "mode": mode,
            "line_items": [line_item],
            "success_url": success_url,
            "cancel_url": cancel_url,
            "client_reference_id": str(user.pk),
            "metadata": full_metadata,
        }
        customer_id = subscription_billing_customer_get(user=user)
        if customer_id:
            params["customer"] = customer_id
        else:
            params["customer_email"] = user.email
        if mode == "subscription":
            params["subscription_data"] = {"metadata": full_metadata}
        else:
            params["payment_intent_data"] = {"metadata": full_metadata}
        try:
            session = stripe_client.checkout_session_create(
                params=params, idempotency_key=f"checkout-session:{checkout.pk}"
            )
        except stripe_client.StripeServiceError as exc:
            CheckoutSession.objects.filter(pk=checkout.pk).update(status=CheckoutSession.Status.CANCELED)
            raise ApiError("upstream_error", exc.message)
        checkout.checkout_reference = session["id"]
        checkout.checkout_url = session.get("url") or ""
        checkout.save(update_fields=["checkout_reference", "checkout_url", "updated_at"])
        payment_transaction_record(checkout=checkout)
    elif simulated_checkout_enabled():
        checkout.is_simulated = True
        checkout.checkout_reference = "cs_test_sim_" + secrets.token_hex(24)
        checkout.checkout_url = settings.SITE_URL + reverse(
            "billing:simulated-checkout", kwargs={"session_id": checkout.checkout_reference}
        )
        with transaction.atomic():
            checkout.save()
            payment_transaction_record(checkout=checkout)
    else:
        raise ApiError("service_unavailable", "Payments are not configured on this server.")
    return {"checkout_url": checkout.checkout_url, "session_id": checkout.checkout_reference}


def plan_checkout_start(*, user, plan_code: str, success_url: str, cancel_url: str) -> dict:
    """Checkout (mode subscription) for a paid, active plan."""
    plan = Plan.objects.filter(code=str(plan_code or ""), is_active=True).first()
    if plan is None or not plan.is_paid:
        raise ApiError("invalid_request", f"Unknown or unavailable plan: {plan_code}", param="planId")
    current = subscription_get(user=user)
    if current is not None:
        raise ApiError(
            "conflict",
            f"You already have the {current.plan.name} plan; change plans from the billing portal.",
            param="planId",
        )
    if plan.stripe_price_id:
        line_item = {"price": plan.stripe_price_id, "quantity": 1}
    else:
        line_item = {
            "price_data": {
                "currency": plan.currency,
                "unit_amount": plan.price_minor,
                "recurring": {"interval": plan.interval},
                "product_data": {"name": f"Tollgate {plan.name}"},
            },
            "quantity": 1,
        }
    result = checkout_session_start(
        user=user,
        kind=PLAN_CHECKOUT_KIND,
        line_item=line_item,
        metadata={"plan_code": plan.code},
        success_url=success_url,
        cancel_url=cancel_url,
        mode="subscription",
        description=f"Tollgate {plan.name} ({plan.get_interval_display().lower()})",
    )
    if plan.stripe_price_id:
        CheckoutSession.objects.filter(checkout_reference=result["session_id"]).update(
            amount_minor=plan.price_minor, currency=plan.currency
        )
        PaymentTransaction.objects.filter(
            reference=result["session_id"], status=PaymentTransaction.Status.PENDING
        ).update(amount_minor=plan.price_minor, currency=plan.currency)
    return result


def billing_portal_session_start(*, user, return_url: str) -> str:
    """The URL of the Stripe customer portal for the user's billing account."""
    checkout_redirect_url_validate(url=return_url, param="returnUrl")
    customer_id = subscription_billing_customer_get(user=user)
    if not customer_id:
        raise ApiError("invalid_request", "You have no billing account yet: subscribe to a plan first.")
    if not stripe_client.stripe_is_configured():
        raise ApiError("service_unavailable", "The billing portal needs Stripe, which is not configured.")
    try:
        session = stripe_client.billing_portal_session_create(customer_id=customer_id, return_url=return_url)
    except stripe_client.StripeServiceError as exc:
        raise ApiError("upstream_error", exc.message)
    return session["url"]


def simulated_checkout_cancel(*, checkout: CheckoutSession) -> None:
    now = timezone.now()
    with transaction.atomic():
        if CheckoutSession.objects.filter(pk=checkout.pk, status=CheckoutSession.Status.OPEN).update(
            status=CheckoutSession.Status.CANCELED, updated_at=now
        ):
            payment_transaction_settle(
                reference=checkout.checkout_reference,
                status=PaymentTransaction.Status.CANCELED,
                now=now,
            )


# =============================================================================================
# Payment transactions (both gateways)
# =============================================================================================


def _payment_kind(kind: str) -> str:
    return kind if kind in PaymentTransaction.Kind.values else PaymentTransaction.Kind.OTHER


def payment_transaction_record(*, checkout: CheckoutSession) -> PaymentTransaction:
    """The pending attempt for a checkout that has its reference (idempotent on it)."""
    row, _ = PaymentTransaction.objects.get_or_create(
        reference=checkout.checkout_reference,
        defaults={
            "user_id": checkout.user_id,
            "gateway": checkout.gateway,
            "kind": _payment_kind(checkout.kind),
            "checkout": checkout,
            "gateway_payment_id": checkout.gateway_checkout_id,
            "amount_minor": checkout.amount_minor,
            "currency": checkout.currency,
        },
    )
    return row


def payment_transaction_settle(
    *,
    reference: str,
    status: str,
    now: datetime | None = None,
    amount_minor: int | None = None,
    currency: str = "",
    gateway_payment_id: str = "",
) -> bool:
    """Move an attempt to its outcome with one conditional UPDATE.

    Only a pending attempt can fail, expire or be canceled; ``paid`` wins over any outcome but
    itself (money that arrived is revenue), and a paid row never changes again. A payment for
    a checkout that has no row yet (started before rows were kept) gets one.
    """
    now = now or timezone.now()
    allowed = [PaymentTransaction.Status.PENDING]
    if status == PaymentTransaction.Status.PAID:
        allowed += [
            PaymentTransaction.Status.FAILED,
            PaymentTransaction.Status.EXPIRED,
            PaymentTransaction.Status.CANCELED,
        ]
    changes: dict = {"status": status, "completed_at": now, "updated_at": now}
    if amount_minor is not None and currency:
        changes.update(amount_minor=int(amount_minor), currency=currency.lower())
    if gateway_payment_id:
        changes["gateway_payment_id"] = gateway_payment_id[:255]
    rows = PaymentTransaction.objects.filter(reference=reference)
    if rows.filter(status__in=allowed).update(**changes):
        return True
    if rows.exists():
        return False
    checkout = CheckoutSession.objects.filter(checkout_reference=reference).first()
    if checkout is None:
        return False
    row = payment_transaction_record(checkout=checkout)
    return bool(PaymentTransaction.objects.filter(pk=row.pk, status__in=allowed).update(**changes))


def simulated_checkout_event_build(
    *, checkout: CheckoutSession, now: datetime | None = None
) -> tuple[bytes, str]:
    """A ``checkout.session.completed`` event shaped like Stripe's, and its signature header."""
    import json

    now = now or timezone.now()
    ts = int(now.timestamp())
    session = {
        "id": checkout.checkout_reference,
        "object": "checkout.session",
        "mode": checkout.mode,
        "status": "complete",
        "payment_status": "paid",
        "amount_subtotal": checkout.amount_minor,
        "amount_total": checkout.amount_minor,
        "currency": checkout.currency,
        "client_reference_id": str(checkout.user_id),
        "customer": f"cus_sim_{checkout.user_id}",
        "customer_details": {"email": checkout.user.email},
        "metadata": checkout.metadata,
        "subscription": f"sub_sim_{secrets.token_hex(12)}" if checkout.mode == "subscription" else None,
        "payment_intent": f"pi_sim_{secrets.token_hex(12)}" if checkout.mode == "payment" else None,
        "success_url": checkout.success_url,
        "cancel_url": checkout.cancel_url,
        "created": int(checkout.created_at.timestamp()),
        "livemode": False,
    }
    event = {
        "id": f"evt_sim_{secrets.token_hex(12)}",
        "object": "event",
        "api_version": settings.STRIPE_API_VERSION,
        "created": ts,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": "checkout.session.completed",
        "data": {"object": session},
    }
    payload = json.dumps(event).encode()
    header = stripe_client.webhook_signature_header(
        payload=payload, secret=settings.STRIPE_WEBHOOK_SECRET, timestamp=ts
    )
    return payload, header


# =============================================================================================
# Webhook events
# =============================================================================================


LOCAL_WEBHOOK_SECRET = "whsec_local_simulated_checkout"  # the embedded default (DEBUG only)


def stripe_webhook_secret_get() -> str:
    """The secret webhooks are verified with; outside DEBUG the public local default is
    refused, so a deployment that forgot STRIPE_WEBHOOK_SECRET cannot accept forged events."""
    secret = settings.STRIPE_WEBHOOK_SECRET
    if not secret or (secret == LOCAL_WEBHOOK_SECRET and not settings.DEBUG):
        raise ApiError("service_unavailable", "Stripe webhooks are not configured on this server.")
    return secret


class StripeEventProcessingError(Exception):
    """Processing a stored event failed; the error is recorded on the event row."""


def _ts(value) -> datetime | None:
    """A Stripe unix timestamp as an aware datetime (None when absent or malformed)."""
    try:
        return datetime.fromtimestamp(int(value), tz=UTC) if value not in (None, "") else None
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _id(value) -> str:
    """Stripe fields that may be an id or an expanded object."""
    if isinstance(value, dict):
        return str(value.get("id") or "")
    return str(value or "")


def stripe_event_store(*, event: dict, now: datetime | None = None) -> tuple[StripeEvent, bool]:
    """Store a verified event; ``(row, False)`` when this event id was already stored."""
    now = now or timezone.now()
    try:
        with transaction.atomic():
            row = StripeEvent.objects.create(
                stripe_event_id=event["id"],
                type=event["type"],
                livemode=bool(event.get("livemode")),
                payload=event,
                stripe_created_at=_ts(event.get("created")),
                received_at=now,
            )
        return row, True
    except IntegrityError:
        return StripeEvent.objects.get(stripe_event_id=event["id"]), False


def stripe_event_process(*, event: StripeEvent, now: datetime | None = None) -> StripeEvent:
    """Process a stored event once. Concurrent deliveries of the same event queue on the row
    lock; whoever comes second sees it processed and does nothing. A failure rolls back the
    handlers' writes, is recorded on the row (status ``failed``), and is raised again."""
    now = now or timezone.now()
    try:
        with transaction.atomic():
            row = lock_objects(StripeEvent.objects.filter(pk=event.pk))[0]
            if row.status in (StripeEvent.Status.PROCESSED, StripeEvent.Status.IGNORED):
                return row
            handled = _event_dispatch(event=row.payload, now=now)
            row.status = StripeEvent.Status.PROCESSED if handled else StripeEvent.Status.IGNORED
            row.error = ""
            row.attempts += 1
            row.processed_at = now
            row.save(update_fields=["status", "error", "attempts", "processed_at"])
            return row
    except CheckoutEventRejected as exc:
        # Not a transient failure: a redelivery would be rejected the same way, so Stripe is
        # told it was received and the row keeps the reason for the operator.
        StripeEvent.objects.filter(pk=event.pk).update(
            status=StripeEvent.Status.FAILED,
            error=f"rejected: {exc}"[:2000],
            attempts=F("attempts") + 1,
            processed_at=now,
        )
        logger.warning(
            "stripe event rejected", extra={"stripe_event_id": event.stripe_event_id, "reason": str(exc)}
        )
        return StripeEvent.objects.get(pk=event.pk)
    except Exception as exc:  # recorded on the row and raised again, never swallowed
        StripeEvent.objects.filter(pk=event.pk).update(
            status=StripeEvent.Status.FAILED,
            error=f"{type(exc).__name__}: {exc}"[:2000],
            attempts=F("attempts") + 1,
        )
        logger.exception("stripe event processing failed", extra={"stripe_event_id": event.stripe_event_id})
        raise StripeEventProcessingError(str(exc)) from exc


def stripe_event_reprocess(*, event: StripeEvent, now: datetime | None = None) -> StripeEvent:
    """Admin action: try a failed (or stuck) event again."""
    return stripe_event_process(event=event, now=now)


def _event_dispatch(*, event: dict, now: datetime) -> bool:
    """Billing's own handling, then every handler other apps registered for the type."""
    event_type = event.get("type", "")
    obj = (event.get("data") or {}).get("object") or {}
    created = _ts(event.get("created")) or now
    handled = False
    if event_type in ("checkout.session.completed", "checkout.session.async_payment_succeeded"):
        handled = checkout_session_fulfil(session=obj, event_id=event["id"], now=now)
    elif event_type == "checkout.session.async_payment_failed":
        handled = checkout_session_payment_fail(session=obj)
    elif event_type == "checkout.session.expired":
        handled = checkout_session_expire(session=obj, now=now)
    elif event_type.startswith("customer.subscription."):
        handled = subscription_sync(stripe_subscription=obj, event_type=event_type, event_created_at=created)
    elif event_type == "invoice.paid":
        handled = subscription_invoice_paid(invoice=obj, event_created_at=created)
    elif event_type == "invoice.payment_failed":
        handled = subscription_invoice_payment_failed(invoice=obj, event_created_at=created)
    for handler in registry.event_handlers_get(event_type):
        handler(event=event)
        handled = True
    return handled


def checkout_session_fulfil(*, session: dict, event_id: str, now: datetime | None = None) -> bool:
    """Run the kind's handler once per Checkout Session, whichever event gets here first.

    What is fulfilled (user, plan or pack, credits) is read from our own CheckoutSession row;
    an event that names a checkout we did not start, or disagrees with ours, is rejected
    (``billing.fulfilment``).
    """
    now = now or timezone.now()
    if session.get("payment_status") not in ("paid", "no_payment_required"):
        return False  # delayed payment method: checkout.session.async_payment_succeeded follows
    checkout = checkout_for_session_get(session=session)
    if checkout is None:
        if (session.get("metadata") or {}).get("kind"):
            raise CheckoutEventRejected(f"checkout session {_id(session.get('id'))!r} is not one we started")
        return False  # not ours (e.g. a payment link made in the Stripe dashboard)
    reason = checkout_session_disagreement(checkout=checkout, session=session)
    if reason:
        raise CheckoutEventRejected(f"checkout session {checkout.checkout_reference}: {reason}")
    trusted = checkout_session_trusted(checkout=checkout, session=session)
    return checkout_fulfil(
        reference=checkout.checkout_reference,
        kind=checkout.kind,
        session=trusted,
        event_id=event_id,
        now=now,
        amount_minor=trusted["amount_total"],
        currency=checkout.currency,
        gateway_payment_id=_id(session.get("payment_intent")),
    )


def checkout_fulfil(
    *,
    reference: str,
    kind: str,
    session: dict,
    event_id: str,
    now: datetime | None = None,
    amount_minor: int | None = None,
    currency: str = "",
    gateway_payment_id: str = "",
) -> bool:
    """Run the kind's registered handler once per checkout reference, whichever gateway,
    event or delivery gets here first (must run inside the event's transaction).

    ``reference`` is the Stripe Checkout Session id or our Chargily reference; handlers key
    their own idempotency on ``session["id"]``, which is that same reference.
    """
    now = now or timezone.now()
    handler = registry.checkout_handler_get(kind)
    if not reference or handler is None:
        logger.warning("checkout session with no handler", extra={"kind": kind, "event_id": event_id})
        return False
    fulfilment, _ = CheckoutFulfilment.objects.get_or_create(
        checkout_reference=reference, defaults={"kind": kind}
    )
    fulfilment = lock_objects(CheckoutFulfilment.objects.filter(pk=fulfilment.pk))[0]
    if fulfilment.status == CheckoutFulfilment.Status.FULFILLED:
        return True
    handler(session=session, event_id=event_id)
    fulfilment.status = CheckoutFulfilment.Status.FULFILLED
    fulfilment.stripe_event_id = event_id
    fulfilment.fulfilled_at = now
    fulfilment.save(update_fields=["status", "stripe_event_id", "fulfilled_at"])
    CheckoutSession.objects.filter(checkout_reference=reference).update(
        status=CheckoutSession.Status.COMPLETE, updated_at=now
    )
    payment_transaction_settle(
        reference=reference,
        status=PaymentTransaction.Status.PAID,
        now=now,
        amount_minor=amount_minor,
        currency=currency,
        gateway_payment_id=gateway_payment_id,
    )
    return True


def checkout_session_payment_fail(*, session: dict) -> bool:
    """A delayed payment failed: nothing to fulfil; remember it so nothing fulfils later."""
    session_id = _id(session.get("id"))
    if not session_id:
        return False
    checkout = checkout_for_session_get(session=session)
    kind = checkout.kind if checkout is not None else (session.get("metadata") or {}).get("kind", "")
    CheckoutFulfilment.objects.get_or_create(
        checkout_reference=session_id,
        defaults={"kind": kind, "status": CheckoutFulfilment.Status.FAILED},
    )
    now = timezone.now()
    CheckoutSession.objects.filter(checkout_reference=session_id).update(
        status=CheckoutSession.Status.PAYMENT_FAILED, updated_at=now
    )
    payment_transaction_settle(reference=session_id, status=PaymentTransaction.Status.FAILED, now=now)
    return True


def checkout_session_expire(*, session: dict, now: datetime | None = None) -> bool:
    """An abandoned checkout expired (Stripe after 24 h, Chargily on its own clock)."""
    reference = _id(session.get("id"))
    if not reference:
        return False
    now = now or timezone.now()
    CheckoutSession.objects.filter(checkout_reference=reference, status=CheckoutSession.Status.OPEN).update(
        status=CheckoutSession.Status.CANCELED, updated_at=now
    )
    return payment_transaction_settle(reference=reference, status=PaymentTransaction.Status.EXPIRED, now=now)


def _subscription_cache_forget(user_id: int) -> None:
    transaction.on_commit(lambda: cache.delete(user_plan_cache_key(user_id)))


# A subscription never comes back from canceled; within one second, the further state wins.
_STATUS_RANK = {
    Subscription.Status.INCOMPLETE: 0,
    Subscription.Status.TRIALING: 1,
    Subscription.Status.ACTIVE: 1,
    Subscription.Status.PAST_DUE: 1,
    Subscription.Status.UNPAID: 1,
    Subscription.Status.PAUSED: 1,
    Subscription.Status.INCOMPLETE_EXPIRED: 2,
    Subscription.Status.CANCELED: 2,
}


def _event_is_current(*, row: Subscription, event_created_at: datetime, status: str) -> bool:
    """Whether an event may overwrite the row: discards stale, out-of-order deliveries."""
    if _STATUS_RANK.get(row.status, 0) == 2 and _STATUS_RANK.get(status, 0) < 2:
        return False
    if row.stripe_event_at is None or event_created_at > row.stripe_event_at:
        return True
    return event_created_at == row.stripe_event_at and _STATUS_RANK.get(status, 0) >= _STATUS_RANK.get(
        row.status, 0
    )


def _subscription_period_end(obj: dict) -> datetime | None:
    # Recent API versions moved the period to the subscription items.
    if obj.get("current_period_end"):
        return _ts(obj["current_period_end"])
    ends = [item.get("current_period_end") for item in (obj.get("items") or {}).get("data") or []]
    ends = [end for end in ends if end]
    return _ts(max(ends)) if ends else None


def _subscription_plan(obj: dict) -> Plan | None:
    prices = [_id(item.get("price") or {}) for item in (obj.get("items") or {}).get("data") or []]
    prices = [price for price in prices if price]
    if prices:
        plan = Plan.objects.filter(stripe_price_id__in=prices).exclude(stripe_price_id="").first()
        if plan is not None:
            return plan
    code = (obj.get("metadata") or {}).get("plan_code")
    return Plan.objects.filter(code=code).first() if code else None


def subscription_sync(*, stripe_subscription: dict, event_type: str, event_created_at: datetime) -> bool:
    """Apply a ``customer.subscription.*`` event to our mirror, unless a newer one already was.

    Subscriptions we did not start (no ``kind=plan`` metadata and no row) are not ours:
    another app's handler (organizations) takes them.
    """
    sub_id = _id(stripe_subscription.get("id"))
    metadata = stripe_subscription.get("metadata") or {}
    status = stripe_subscription.get("status") or Subscription.Status.INCOMPLETE
    if event_type == "customer.subscription.deleted":
        status = Subscription.Status.CANCELED
    row = Subscription.objects.filter(stripe_subscription_id=sub_id).first() if sub_id else None
    if row is None:
        if metadata.get("kind") != PLAN_CHECKOUT_KIND or not str(metadata.get("user_id", "")).isdigit():
            return False
        user = get_user_model().objects.filter(pk=int(metadata["user_id"])).first()
        plan = _subscription_plan(stripe_subscription)
        if user is None or plan is None:
            raise ValueError(f"subscription {sub_id}: unknown user or plan in metadata")
        # The metadata names a user: only believe it if that user opened a plan checkout.
        if not CheckoutSession.objects.filter(
            user=user, kind=PLAN_CHECKOUT_KIND, gateway=Gateway.STRIPE, metadata__plan_code=plan.code
        ).exists():
            raise CheckoutEventRejected(f"subscription {sub_id}: no plan checkout of ours for its user")
        subscription_user_lock(user_id=user.pk)
        row, _ = Subscription.objects.get_or_create(
            stripe_subscription_id=sub_id,
            defaults={
                "user": user,
                "plan": plan,
                "stripe_customer_id": _id(stripe_subscription.get("customer")),
            },
        )
    else:
        subscription_user_lock(user_id=row.user_id)
    row = lock_objects(Subscription.objects.filter(pk=row.pk))[0]
    if not _event_is_current(row=row, event_created_at=event_created_at, status=status):
        logger.info(
            "stale subscription event discarded", extra={"subscription_id": row.pk, "type": event_type}
        )
        return True
    if status in LIVE_STATUSES and row.status not in LIVE_STATUSES and not subscription_live_claim(row=row):
        return True  # a newer subscription is live: this one was ended (and is canceled at Stripe)
    row.status = status
    row.cancel_at_period_end = bool(stripe_subscription.get("cancel_at_period_end"))
    row.current_period_end = _subscription_period_end(stripe_subscription) or row.current_period_end
    row.ended_at = _ts(stripe_subscription.get("ended_at")) or (
        event_created_at if status == Subscription.Status.CANCELED else None
    )
    row.stripe_customer_id = _id(stripe_subscription.get("customer")) or row.stripe_customer_id
    row.plan = _subscription_plan(stripe_subscription) or row.plan
    row.stripe_event_at = event_created_at
    row.save()
    _subscription_cache_forget(row.user_id)
    return True


def _invoice_subscription_id(invoice: dict) -> str:
    if invoice.get("subscription"):
        return _id(invoice["subscription"])
    details = ((invoice.get("parent") or {}).get("subscription_details")) or {}
    return _id(details.get("subscription"))


def subscription_invoice_paid(*, invoice: dict, event_created_at: datetime) -> bool:
    """A renewal was paid: extend the period; a past-due subscription is active again."""
    row = Subscription.objects.filter(
        stripe_subscription_id=_invoice_subscription_id(invoice) or None
    ).first()
    if row is None:
        return False
    subscription_user_lock(user_id=row.user_id)
    row = lock_objects(Subscription.objects.filter(pk=row.pk))[0]
    ends = [(line.get("period") or {}).get("end") for line in (invoice.get("lines") or {}).get("data") or []]
    ends = [_ts(end) for end in ends if end]
    if ends and (row.current_period_end is None or max(ends) > row.current_period_end):
        row.current_period_end = max(ends)
    if (
        row.status in (Subscription.Status.PAST_DUE, Subscription.Status.UNPAID)
        and _event_is_current(row=row, event_created_at=event_created_at, status=Subscription.Status.ACTIVE)
        and (row.status in LIVE_STATUSES or subscription_live_claim(row=row))
    ):
        row.status = Subscription.Status.ACTIVE
        row.stripe_event_at = event_created_at
    row.save()
    _subscription_cache_forget(row.user_id)
    return True


def subscription_invoice_payment_failed(*, invoice: dict, event_created_at: datetime) -> bool:
    """A renewal payment failed: past due (the plan stays while Stripe retries); tell the user."""
    row = Subscription.objects.filter(
        stripe_subscription_id=_invoice_subscription_id(invoice) or None
    ).first()
    if row is None:
        return False
    row = lock_objects(Subscription.objects.filter(pk=row.pk))[0]
    if row.status == Subscription.Status.ACTIVE and _event_is_current(
        row=row, event_created_at=event_created_at, status=Subscription.Status.PAST_DUE
    ):
        row.status = Subscription.Status.PAST_DUE
        row.stripe_event_at = event_created_at
        row.save()
        _subscription_cache_forget(row.user_id)
    from ..tasks import subscription_payment_failed_email_task

    subscription_id = row.pk
    transaction.on_commit(
        lambda: subscription_payment_failed_email_task.delay(subscription_id=subscription_id)
    )
    return True


def subscription_activate(*, session: dict, event_id: str, now: datetime | None = None) -> Subscription:
    """The ``plan`` checkout handler: the paid session activates the plan.

    Called once per session (CheckoutFulfilment), inside the event's transaction; the user and
    plan are our checkout row's (``billing.fulfilment``). A live subscription of the user from
    an earlier checkout is replaced (``billing.subscriptions``). On the user's first
    activation, a key is created if they have none and the "plan active" email carries a
    one-time reveal link, never the key. A Chargily payment (``session["gateway"]``) activates
    one period instead: Chargily has no recurring subscriptions.
    """
    now = now or timezone.now()
    metadata = session.get("metadata") or {}
    user_id = str(metadata.get("user_id") or session.get("client_reference_id") or "")
    user = get_user_model().objects.filter(pk=int(user_id)).first() if user_id.isdigit() else None
    plan = Plan.objects.filter(code=metadata.get("plan_code", "")).first()
    if session.get("gateway") == Gateway.CHARGILY:
        if user is None or plan is None:
            raise ValueError(f"chargily checkout {session.get('id')}: missing user or plan")
        return subscription_period_activate(user=user, plan=plan, reference=_id(session.get("id")), now=now)
    sub_id = _id(session.get("subscription"))
    if user is None or plan is None or not sub_id:
        raise ValueError(f"checkout session {session.get('id')}: missing user, plan or subscription")
    event_created_at = (
        StripeEvent.objects.filter(stripe_event_id=event_id)
        .values_list("stripe_created_at", flat=True)
        .first()
        or now
    )
    subscription_user_lock(user_id=user.pk)
    row, created = Subscription.objects.get_or_create(
        stripe_subscription_id=sub_id,
        defaults={
            "user": user,
            "plan": plan,
            "status": Subscription.Status.INCOMPLETE,  # live below, once no other one is
            "stripe_customer_id": _id(session.get("customer")),
            "current_period_end": _add_interval(now, plan.interval),
            "stripe_event_at": event_created_at,
        },
    )
    row = lock_objects(Subscription.objects.filter(pk=row.pk))[0]
    if row.user_id != user.pk:
        raise ValueError(f"subscription {sub_id} belongs to another user")
    if (
        row.status == Subscription.Status.INCOMPLETE
        and (
            created
            or _event_is_current(
                row=row, event_created_at=event_created_at, status=Subscription.Status.ACTIVE
            )
        )
        and subscription_live_claim(row=row, now=now)
    ):
        row.status = Subscription.Status.ACTIVE
        row.stripe_event_at = event_created_at
    row.checkout_reference = _id(session.get("id"))
    row.stripe_customer_id = row.stripe_customer_id or _id(session.get("customer"))
    # A session whose subscription already ended (out-of-order delivery) activates nothing.
    first_activation = row.activated_at is None and row.status in Subscription.ENTITLED_STATUSES
    if first_activation:
        row.activated_at = now
    row.save()
    _subscription_cache_forget(user.pk)
    if first_activation:
        _subscription_welcome(row=row, user=user, now=now)
    logger.info("subscription activated", extra={"subscription_id": row.pk, "plan": plan.code})
    return row


def _subscription_welcome(*, row: Subscription, user, now: datetime) -> None:
    """First activation: a key when the user has none (shown once through a link) and the
    'plan active' email, queued after commit."""
    from accounts.selectors import api_key_active_count
    from accounts.services import api_key_create, api_key_reveal_link_create

    reveal_url = ""
    if api_key_active_count(user=user, now=now) == 0:
        api_key, plaintext = api_key_create(user=user, name="Default key", now=now)
        reveal_url = api_key_reveal_link_create(api_key=api_key, plaintext=plaintext, now=now)
    from ..tasks import plan_active_email_task

    subscription_id = row.pk
    transaction.on_commit(
        lambda: plan_active_email_task.delay(subscription_id=subscription_id, reveal_url=reveal_url)
    )


CHARGILY_SUBSCRIPTION_PREFIX = "chargily:"


def subscription_period_activate(
    *, user, plan: Plan, reference: str, now: datetime | None = None
) -> Subscription:
    """A one-period plan paid through Chargily (no recurring billing there).

    A first payment is a new row, keyed by the checkout reference (a replay returns it); it
    replaces any other live subscription of the user. It ends at ``current_period_end`` by
    itself (``cancel_at_period_end``); paying the same plan again before then (renewal) extends
    that row by one period, so the new period starts where the current one ends.
    """
    now = now or timezone.now()
    sub_id = f"{CHARGILY_SUBSCRIPTION_PREFIX}{reference}"
    subscription_user_lock(user_id=user.pk)
    existing = Subscription.objects.filter(stripe_subscription_id=sub_id).first()
    if existing is not None:
        return existing
    current = lock_objects(
        Subscription.objects.filter(
            user_id=user.pk,
            plan=plan,
            gateway=Gateway.CHARGILY,
            status__in=Subscription.ENTITLED_STATUSES,
            current_period_end__gt=now,
        )
    )
    if current:
        # A renewal extends the live row by one period: one live subscription, one row.
        row = current[0]
        if row.checkout_reference == reference:
            return row
        row.current_period_end = _add_interval(row.current_period_end, plan.interval)
        row.checkout_reference = reference
        row.renewal_reminder_sent_at = None  # one reminder before the new end
        row.save(
            update_fields=[
                "current_period_end",
                "checkout_reference",
                "renewal_reminder_sent_at",
                "updated_at",
            ]
        )
        _subscription_cache_forget(user.pk)
        logger.info("chargily period renewed", extra={"subscription_id": row.pk, "plan": plan.code})
        return row
    row = Subscription.objects.create(
        user=user,
        plan=plan,
        gateway=Gateway.CHARGILY,
        status=Subscription.Status.INCOMPLETE,  # live below, once no other one is
        stripe_subscription_id=sub_id,
        checkout_reference=reference,
        current_period_end=_add_interval(now, plan.interval),
        cancel_at_period_end=True,
        activated_at=now,
        stripe_event_at=now,
    )
    subscription_live_claim(row=row, now=now)  # the newest row: it always wins
    row.status = Subscription.Status.ACTIVE
    row.save(update_fields=["status", "updated_at"])
    _subscription_cache_forget(user.pk)
    _subscription_welcome(row=row, user=user, now=now)
    logger.info("chargily period activated", extra={"subscription_id": row.pk, "plan": plan.code})
    return row


def plan_active_email_send(*, subscription_id: int, reveal_url: str = "") -> bool:
    """'Your plan is active', with the one-time key link when a key was created for the user."""
    row = Subscription.objects.select_related("user", "plan").filter(pk=subscription_id).first()
    if row is None:
        return False
    lines = [f"Your Tollgate {row.plan.name} plan is active.", ""]
    if reveal_url:
        lines += [
            "We created an API key for you. Open this link within 24 hours to see it, once:",
            reveal_url,
            "",
        ]
    lines.append(f"Dashboard: {settings.SITE_URL}/dashboard/")
    send_mail(
        f"Tollgate: your {row.plan.name} plan is active",
        "\n".join(lines),
        settings.DEFAULT_FROM_EMAIL,
        [row.user.email],
    )
    return True


def subscription_payment_failed_email_send(*, subscription_id: int) -> bool:
    row = Subscription.objects.select_related("user", "plan").filter(pk=subscription_id).first()
    if row is None:
        return False
    send_mail(
        "Tollgate: your payment failed",
        f"We could not charge your {row.plan.name} plan renewal. Stripe will retry; please update "
        f"your payment method from {settings.SITE_URL}{reverse('billing:pricing')}.",
        settings.DEFAULT_FROM_EMAIL,
        [row.user.email],
    )
    return True
