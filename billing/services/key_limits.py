"""An API key's own limits (requests, tokens, credits or money per day, month or in total):
reserve → settle or release, like the plan quota, so concurrent calls of one key can never pass
its limit.

``credits`` and ``money`` count the call's customer-facing charge (``UsageEvent.charge_credits``
and ``charge_micros``): the caller reserves the most the call can be charged and settles to what
it was. A money limit is set in minor units of the workspace plan's currency and counted in
micros (millionths of the major unit), so calls worth a fraction of a cent add up exactly.

Only a key that has limits pays for them: the proxy reads them from the key's cached identity
and calls ``key_limits_reserve`` only when there are some. One statement decides, all or
nothing: every counter of the key is locked in id order, and its holds are inserted only when
``used + reserved + amount <= limit`` holds for every one of them (re-checked under the row
locks). Counter rows are created on first use of a period (lazy rollover, race-free).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.formats import number_format
from django.utils.translation import ngettext

from core import time as periods
from core.money import ZERO_DECIMAL_CURRENCIES, money_format
from core.rawsql import synchronous_commit_off_cte, table_quoted

from ..models import KeyUsageCounter, KeyUsageHold
from ..selectors import plan_for_workspace_get

logger = logging.getLogger("tollgate.billing")

TOTAL_PERIOD_START = datetime(1970, 1, 1, tzinfo=UTC)  # the ``total`` window's one period
# What one call counts per limit unit: its quota meters, and its charge (which the proxy adds
# to the meters it passes: ``charge_credits`` in credits, ``charge_micros`` in micros).
UNIT_METERS = {
    "requests": "requests",
    "tokens": "llm_tokens",
    "credits": "charge_credits",
    "money": "charge_micros",
}
MONEY = KeyUsageCounter.Unit.MONEY


def money_micros_per_minor(currency: str) -> int:
    """Millionths of the major unit in one minor unit (1 cent = 10 000; 1 yen = 1 000 000)."""
    return 1_000_000 if (currency or "").lower() in ZERO_DECIMAL_CURRENCIES else 10_000


def _to_counter_units(unit: str, amount: int, currency: str) -> int:
    """A limit as the key sets it (money: minor units) in the counter's units (money: micros)."""
    return amount * money_micros_per_minor(currency) if unit == MONEY else amount


def _to_limit_units(unit: str, amount: int, currency: str) -> int:
    """A counter's figure in the units the key's limit is set in; money rounds up to the minor
    unit, so what is shown used never reads below what was counted."""
    if unit != MONEY:
        return amount
    per_minor = money_micros_per_minor(currency)
    return -(-amount // per_minor)


def key_limit_period(*, window: str, now: datetime) -> tuple[datetime, datetime | None]:
    """(period start, reset time) of a window; ``total`` never resets (None)."""
    if window == KeyUsageCounter.Window.DAY:
        return periods.day_start(now), periods.next_day_start(now)
    if window == KeyUsageCounter.Window.MONTH:
        return periods.month_start(now), periods.next_month_start(now)
    return TOTAL_PERIOD_START, None


@dataclass(frozen=True)
class KeyLimitStatus:
    unit: str
    window: str
    limit: int  # as the key sets it (money: minor units of ``currency``)
    used: int  # settled, plus what calls in flight hold (money: minor units, rounded up)
    resets_at: datetime | None
    currency: str = ""  # money limits only
    scope: str = "key"  # "key": the key's own limit; "member": its creator's monthly cap


@dataclass(frozen=True)
class KeyLimitReading:
    """Where one limit of a key stands after a settle (``key_holds_settle``), for threshold
    alerts: ``used`` (settled) and ``limit`` in the units the limit is set in (money: minor
    units of ``currency``); ``limit`` None for a counter that predates it being recorded."""

    unit: str
    window: str
    period_start: datetime
    used: int
    limit: int | None
    currency: str = ""
    membership_id: int | None = None  # a member's cap (None: the key's own limit)


class KeyLimitExceeded(Exception):
    def __init__(self, status: KeyLimitStatus):
        super().__init__(f"key limit exceeded: {status.unit} per {status.window}")
        self.status = status


KEY, MEMBER = "key", "member"  # who a counter belongs to


def _reserve_sql(
    *, api_key_id: int, membership_id: int | None, wants: list, now: datetime, synchronous_commit: bool
):
    counters, holds = table_quoted(KeyUsageCounter), table_quoted(KeyUsageHold)
    values, params = [], []
    for scope, unit, window, start, amount, limit in wants:
        values.append("(%s, %s, %s, %s::timestamptz, %s::bigint, %s::bigint)")
        params += [scope, unit, window, start, amount, limit]
    cfg = synchronous_commit_off_cte(synchronous_commit)
    sql = f"""
        WITH want(scope, unit, win, period_start, amount, lim) AS (VALUES {", ".join(values)}){cfg},
        lk AS (
            SELECT c.id, w.amount, w.lim, (c.used + c.reserved + w.amount <= w.lim) AS fits
            FROM {counters} c JOIN want w
              ON c.unit = w.unit AND c."window" = w.win AND c.period_start = w.period_start
            WHERE (w.scope = '{KEY}' AND c.api_key_id = %s)
               OR (w.scope = '{MEMBER}' AND c.membership_id = %s)
            ORDER BY c.id FOR UPDATE OF c
        ),
        ok AS (SELECT COUNT(*) FILTER (WHERE fits) = %s AS ok FROM lk),
        upd AS (
            UPDATE {counters} c SET reserved = c.reserved + lk.amount, limit_amount = lk.lim
            FROM lk, ok{", _cfg" if cfg else ""}
            WHERE c.id = lk.id AND ok.ok
            RETURNING c.id, lk.amount
        )
        INSERT INTO {holds} (counter_id, amount, status, created_at)
        SELECT upd.id, upd.amount, %s, %s FROM upd
        RETURNING id, counter_id, amount
    """  # noqa: S608 (table names from model meta, values parametrised)
    params += [api_key_id, membership_id, len(wants), KeyUsageHold.Status.HELD, now]
    return sql, params


def key_limits_reserve(
    *,
    api_key_id: int,
    limits,
    meters: dict[str, int],
    currency: str = "",
    now: datetime | None = None,
    synchronous_commit: bool = True,
    membership_id: int | None = None,
    member_limits=(),
) -> list[KeyUsageHold]:
    """Hold one call's units on every limit of the key and of its creator's membership, all or
    nothing, or raise KeyLimitExceeded (``status.scope`` says whose limit refused).

    ``limits`` / ``member_limits``: ((unit, window, amount), …) as the key's identity carries
    them; ``meters``: the call's quota meters (``requests``, ``llm_tokens``) and its maximum
    charge (``charge_credits``, ``charge_micros``), which say what it counts per unit;
    ``currency``: the workspace plan's, in whose minor units a money limit is set.
    """
    now = now or timezone.now()
    owned = [(KEY, limit) for limit in limits or ()]
    if membership_id is not None:
        owned += [(MEMBER, limit) for limit in member_limits or ()]
    wants = []
    for scope, (unit, window, limit) in owned:
        start, _end = key_limit_period(window=window, now=now)
        amount = max(0, int(meters.get(UNIT_METERS.get(unit, unit), 0)))
        if not amount:  # the call counts nothing there (an email's requests and tokens)
            continue
        wants.append((scope, unit, window, start, amount, _to_counter_units(unit, int(limit), currency)))
    if not wants:
        return []
    sql, params = _reserve_sql(
        api_key_id=api_key_id,
        membership_id=membership_id,
        wants=wants,
        now=now,
        synchronous_commit=synchronous_commit,
    )
    owners = {KEY: {"api_key_id": api_key_id}, MEMBER: {"membership_id": membership_id}}
    for attempt in range(2):
        with connection.cursor() as cursor:  # one statement: its own transaction unless inside one
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        if rows:
            return [
                KeyUsageHold(
                    pk=pk,
                    counter_id=counter_id,
                    amount=amount,
                    status=KeyUsageHold.Status.HELD,
                    created_at=now,
                )
                for pk, counter_id, amount in rows
            ]
        states = _counter_states(
            api_key_id=api_key_id, membership_id=membership_id, starts={want[3] for want in wants}
        )
        missing = [want for want in wants if want[:3] not in states]
        if missing and attempt == 0:
            KeyUsageCounter.objects.bulk_create(
                [
                    KeyUsageCounter(**owners[scope], unit=unit, window=window, period_start=start)
                    for scope, unit, window, start, _amount, _limit in missing
                ],
                ignore_conflicts=True,
            )
            continue
        break
    refused = wants[0]
    for want in wants:
        used, reserved = states.get(want[:3], (0, 0))
        if used + reserved + want[4] > want[5]:
            refused = want
            break
    scope, unit, window, _start, _amount, limit = refused
    used, reserved = states.get(refused[:3], (0, 0))
    _start, resets_at = key_limit_period(window=window, now=now)
    raise KeyLimitExceeded(
        KeyLimitStatus(
            unit=unit,
            window=window,
            limit=_to_limit_units(unit, limit, currency),
            used=_to_limit_units(unit, used + reserved, currency),
            resets_at=resets_at,
            currency=currency if unit == MONEY else "",
            scope=scope,
        )
    )


def _counter_states(*, api_key_id: int, membership_id: int | None, starts: set) -> dict:
    """(scope, unit, window) -> (used, reserved) of the key's and the member's counters."""
    owner = Q(api_key_id=api_key_id)
    if membership_id is not None:
        owner |= Q(membership_id=membership_id)
    return {
        (KEY if key_id is not None else MEMBER, unit, window): (used, reserved)
        for key_id, unit, window, used, reserved in KeyUsageCounter.objects.filter(
            owner, period_start__in=starts
        ).values_list("api_key_id", "unit", "window", "used", "reserved")
    }


def _finish_sql(*, holds: list[KeyUsageHold], actual: dict[str, int] | None, now, synchronous_commit: bool):
    """Settle (``actual``: unit -> units) or release (None) holds, once: the hold's status moves
    from held, then its counter moves by it (counters locked in id order). Returns each moved
    counter's (unit, window, period_start, used, limit_amount, membership_id)."""
    counters, hold_table = table_quoted(KeyUsageCounter), table_quoted(KeyUsageHold)
    values, params = [], []
    for hold in holds:
        values.append("(%s::bigint, %s::bigint)")
        params.append(hold.pk)
        params.append(None if actual is None else 0)
    cfg = synchronous_commit_off_cte(synchronous_commit)
    settling = actual is not None
    sql = f"""
        WITH act(id, actual) AS (VALUES {", ".join(values)}){cfg},
        units(unit, n) AS (
            VALUES ('requests', %s::bigint), ('tokens', %s::bigint),
                   ('credits', %s::bigint), ('money', %s::bigint)
        ),
        r AS (
            UPDATE {hold_table} h SET status = %s, finished_at = %s,
                actual = CASE WHEN %s THEN LEAST(u.n, h.amount) ELSE NULL END
            FROM act, {counters} c0, units u{", _cfg" if cfg else ""}
            WHERE h.id = act.id AND h.status = %s AND c0.id = h.counter_id AND u.unit = c0.unit
            RETURNING h.counter_id, h.amount, COALESCE(h.actual, 0) AS charged
        ),
        agg AS (
            SELECT counter_id, SUM(amount)::bigint AS amount, SUM(charged)::bigint AS charged
            FROM r GROUP BY counter_id
        ),
        lk AS (
            SELECT c.id FROM {counters} c WHERE c.id IN (SELECT counter_id FROM agg) ORDER BY c.id FOR UPDATE
        )
        UPDATE {counters} c SET used = c.used + agg.charged, reserved = c.reserved - agg.amount
        FROM agg, lk WHERE c.id = agg.counter_id AND lk.id = c.id
        RETURNING c.unit, c."window", c.period_start, c.used, c.limit_amount, c.membership_id
    """  # noqa: S608 (table names from model meta, values parametrised)
    units = actual or {}
    params += [
        max(0, int(units.get("requests", 0))),
        max(0, int(units.get("tokens", 0))),
        max(0, int(units.get("credits", 0))),
        max(0, int(units.get("money", 0))),
        KeyUsageHold.Status.SETTLED if settling else KeyUsageHold.Status.RELEASED,
        now,
        settling,
        KeyUsageHold.Status.HELD,
    ]
    return sql, params


def key_holds_settle(
    *,
    holds: list[KeyUsageHold],
    meters: dict[str, int],
    currency: str = "",
    now: datetime | None = None,
    synchronous_commit: bool = True,
) -> list[KeyLimitReading]:
    """Charge what the call used (``meters``: its quota meters' actual units and its actual
    charge, as ``key_limits_reserve`` takes them; each hold is charged at most its amount) and
    free the holds. Runs once: a second settle moves nothing and returns [].

    Returns where each settled limit stands now (from the statement itself, no query): what
    "this key has used 80 % / 100 % of its limit" alerts are decided from."""
    if not holds:
        return []
    now = now or timezone.now()
    actual = {unit: int(meters.get(meter, 0)) for unit, meter in UNIT_METERS.items()}
    sql, params = _finish_sql(holds=holds, actual=actual, now=now, synchronous_commit=synchronous_commit)
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return [
        KeyLimitReading(
            unit=unit,
            window=window,
            period_start=period_start,
            used=_to_limit_units(unit, used, currency),
            limit=None if limit is None else _to_limit_units(unit, limit, currency),
            currency=currency if unit == MONEY else "",
            membership_id=membership_id,
        )
        for unit, window, period_start, used, limit, membership_id in rows
    ]


def key_holds_release(
    *, holds: list[KeyUsageHold], now: datetime | None = None, synchronous_commit: bool = True
) -> None:
    """Give the held units back (failed or refused call). Runs once."""
    if not holds:
        return
    now = now or timezone.now()
    sql, params = _finish_sql(holds=holds, actual=None, now=now, synchronous_commit=synchronous_commit)
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        cursor.execute(sql, params)


def key_holds_release_stale(*, now: datetime | None = None) -> int:
    """Release key holds older than ``STALE_RESERVATION_SECONDS`` (their caller died)."""
    now = now or timezone.now()
    older_than = now - timedelta(seconds=settings.STALE_RESERVATION_SECONDS)
    stale = list(
        KeyUsageHold.objects.filter(status=KeyUsageHold.Status.HELD, created_at__lt=older_than).only("pk")[
            :5000
        ]
    )
    for start in range(0, len(stale), 500):
        key_holds_release(holds=stale[start : start + 500], now=now)
    if stale:
        logger.warning("released stale key-limit holds", extra={"count": len(stale)})
    return len(stale)


def key_limits_usage_get(*, api_keys, now: datetime | None = None) -> dict[int, list[dict]]:
    """Key id -> its limits, each with ``used`` (settled + in flight) in the current period,
    ``resets_at`` (None for ``total``) and ``currency`` (money limits: the workspace plan's, in
    whose minor units ``amount`` and ``used`` are; else None): one query for all the keys, and
    the workspace's plan (cached) when a key has a money limit."""
    return _limits_usage_get(owners=api_keys, field="api_key_id", now=now)


def member_limits_usage_get(*, memberships, now: datetime | None = None) -> dict[int, list[dict]]:
    """Membership id -> its monthly caps with ``used`` by all the member's keys, as
    ``key_limits_usage_get`` reads a key's limits."""
    return _limits_usage_get(owners=memberships, field="membership_id", now=now)


def _limits_usage_get(*, owners, field: str, now: datetime | None) -> dict[int, list[dict]]:
    now = now or timezone.now()
    currencies = {}
    for owner in owners:
        has_money = any(item["unit"] == MONEY for item in owner.limits or ())
        if has_money and owner.workspace_id not in currencies:
            plan = plan_for_workspace_get(workspace=owner.workspace, now=now)
            currencies[owner.workspace_id] = (plan.currency or "").lower()
    wanted, starts, workspaces = {}, set(), {}
    for owner in owners:
        workspaces[owner.pk] = owner.workspace_id
        for item in owner.limits or ():
            start, resets_at = key_limit_period(window=item["window"], now=now)
            wanted.setdefault(owner.pk, []).append((item, start, resets_at))
            starts.add(start)
    used = {}
    if wanted:
        for owner_id, unit, window, start, n_used, n_reserved in KeyUsageCounter.objects.filter(
            **{f"{field}__in": list(wanted)}, period_start__in=starts
        ).values_list(field, "unit", "window", "period_start", "used", "reserved"):
            used[(owner_id, unit, window, start)] = n_used + n_reserved
    result = {}
    for owner_id, items in wanted.items():
        currency = currencies.get(workspaces[owner_id], "")
        result[owner_id] = [
            _usage_item(
                item,
                used=_to_limit_units(
                    item["unit"], used.get((owner_id, item["unit"], item["window"], start), 0), currency
                ),
                resets_at=resets_at,
                currency=currency,
            )
            for item, start, resets_at in items
        ]
    return result


def _limit_amount_text(n: int, unit: str, currency: str) -> str:
    """``1,000 requests`` / ``12.50 EUR`` in the reader's language (``1 000 requêtes``,
    ``12,50 €``): read by the key and member pages only (the APIs drop ``*_display``)."""
    if unit == MONEY:
        return money_format(n, currency or "eur")
    count = number_format(n, force_grouping=True)
    if unit == "requests":
        return ngettext("%(count)s request", "%(count)s requests", n) % {"count": count}
    if unit == "tokens":
        return ngettext("%(count)s token", "%(count)s tokens", n) % {"count": count}
    if unit == "credits":
        return ngettext("%(count)s credit", "%(count)s credits", n) % {"count": count}
    return f"{count} {unit}"


def _usage_item(item: dict, *, used: int, resets_at, currency: str) -> dict:
    """One limit as the key list shows it; ``*_display``: the page's text (``1,000 requests``,
    money as money: ``12.50 EUR``), in the reader's language."""
    unit, amount = item["unit"], item["amount"]

    def shown(n: int) -> str:
        return _limit_amount_text(n, unit, currency)

    return {
        "unit": unit,
        "window": item["window"],
        "amount": amount,
        "used": used,
        "resets_at": resets_at,
        "currency": currency if unit == MONEY else None,
        "amount_display": shown(amount),
        "used_display": shown(used),
    }
