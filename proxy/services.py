"""Writes of the usage log: the ``UsageEvent`` insert, the daily and hourly-spend rollups and
the operator's ``DailySpend`` upserts, as SQL the call's settle (``proxy.call.settle``) runs in
one statement, and the rate-limited-minute counter. The upserts only add, so any number of
writers can share a row.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from django.db import connection

from core.rawsql import sql_connection, table_quoted
from core.services import counter_row_bump

from .models import DailySpend, RateLimitedDay, UsageDailyRollup, UsageEvent, UsageSpendHourly


def rollup_upsert_sql(rows: str) -> str:
    """Add ``rows`` (a VALUES list or a SELECT of workspace_id, provider, day, requests, tokens,
    emails, cost_usd, errors, fallbacks, charge_credits) to the day's rollup rows: one upsert,
    increments only."""
    t = table_quoted(UsageDailyRollup)
    return f"""
        INSERT INTO {t} (workspace_id, provider, day, requests, tokens, emails, cost_usd, errors, fallbacks,
                         charge_credits)
        {rows}
        ON CONFLICT (workspace_id, provider, day) DO UPDATE SET
            requests = {t}.requests + EXCLUDED.requests,
            tokens = {t}.tokens + EXCLUDED.tokens,
            emails = {t}.emails + EXCLUDED.emails,
            cost_usd = {t}.cost_usd + EXCLUDED.cost_usd,
            errors = {t}.errors + EXCLUDED.errors,
            fallbacks = {t}.fallbacks + EXCLUDED.fallbacks,
            charge_credits = {t}.charge_credits + EXCLUDED.charge_credits
    """


def spend_hourly_upsert_sql(rows: str) -> str:
    """Add ``rows`` (a VALUES list or a SELECT of workspace_id, hour, api_key_id, model,
    charge_currency, requests, errors, prompt_tokens, completion_tokens, charge_credits,
    charge_micros) to the hourly spend rows: one upsert, increments only."""
    t = table_quoted(UsageSpendHourly)
    return f"""
        INSERT INTO {t} (workspace_id, hour, api_key_id, model, charge_currency, requests, errors,
                         prompt_tokens, completion_tokens, charge_credits, charge_micros)
        {rows}
        ON CONFLICT (workspace_id, hour, api_key_id, model, charge_currency) DO UPDATE SET
            requests = {t}.requests + EXCLUDED.requests,
            errors = {t}.errors + EXCLUDED.errors,
            prompt_tokens = {t}.prompt_tokens + EXCLUDED.prompt_tokens,
            completion_tokens = {t}.completion_tokens + EXCLUDED.completion_tokens,
            charge_credits = {t}.charge_credits + EXCLUDED.charge_credits,
            charge_micros = {t}.charge_micros + EXCLUDED.charge_micros
    """


# The hourly spend row of an event, in SQL over ``usage_event`` columns (the migration's
# backfill and the usage generator): the same key as ``spend_hourly_key`` below.
SPEND_HOURLY_KEY_SQL = (
    "workspace_id, date_trunc('hour', created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', "
    "COALESCE(api_key_id, 0), COALESCE(NULLIF(model, ''), endpoint), charge_currency"
)
SPEND_HOURLY_TOTALS_SQL = (
    "count(*), count(*) FILTER (WHERE status_code >= 400), sum(prompt_tokens), "
    "sum(completion_tokens), sum(charge_credits), sum(charge_micros)"
)


def spend_hourly_key(event: UsageEvent) -> tuple[int, datetime, int, str, str]:
    """(workspace id, UTC hour, key id or 0, model or endpoint, currency): the event's row."""
    hour = event.created_at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    model = (event.model or event.endpoint)[:128]
    return event.workspace_id, hour, event.api_key_id or 0, model, event.charge_currency


_SPEND_ROW = (
    "(%s, %s::timestamptz, %s::bigint, %s, %s, %s, %s, %s::bigint, %s::bigint, %s::bigint, %s::bigint)"
)


def daily_spend_upsert_sql(rows: str) -> str:
    """Add ``rows`` (VALUES or SELECT of day, spent_usd, updated_at) to the operator's daily spend."""
    t = table_quoted(DailySpend)
    return f"""
        INSERT INTO {t} (day, spent_usd, updated_at) {rows}
        ON CONFLICT (day) DO UPDATE SET
            spent_usd = {t}.spent_usd + EXCLUDED.spent_usd, updated_at = EXCLUDED.updated_at
    """


def usage_events_insert_sql(events: list[UsageEvent]) -> tuple[str, list]:
    """``INSERT`` of ``events`` (every concrete column but the id) and its parameters."""
    builder = sql_connection()
    qn = builder.ops.quote_name
    fields = [f for f in UsageEvent._meta.concrete_fields if not f.primary_key]
    row = f"({', '.join(['%s'] * len(fields))})"
    params = [f.get_db_prep_save(f.pre_save(event, True), builder) for event in events for f in fields]
    table, columns = table_quoted(UsageEvent), ", ".join(qn(f.column) for f in fields)
    sql = f"INSERT INTO {table} ({columns}) VALUES {', '.join([row] * len(events))}"  # noqa: S608
    return sql, params


def event_write_sql(
    *, event: UsageEvent, rollup_provider: str, is_error: bool, spend_day, now, quota_part=None
) -> tuple[str, list]:
    """The event, rollup, spend (and quota settle) statement of ``event_write``.

    Rows: ``(event id,)``, or with ``quota_part`` ``(event id, counter_id, meter, used,
    reserved, period_start, charged)`` per settled counter.
    """
    event_sql, values = usage_events_insert_sql([event])
    sql = f"""
        WITH {quota_part.ctes + "," if quota_part is not None else ""} ev AS ({event_sql} RETURNING id),
        ro AS ({rollup_upsert_sql("VALUES (%s, %s, %s, 1, %s, %s, %s, %s, %s, %s::bigint)")}),
        sh AS ({spend_hourly_upsert_sql("VALUES " + _SPEND_ROW)})
    """
    params = [
        *(quota_part.params if quota_part is not None else []),
        *values,
        event.workspace_id,
        rollup_provider,
        event.created_at.date(),
        event.total_tokens,
        event.emails,
        event.cost_usd,
        int(is_error),
        int(event.is_fallback),
        event.charge_credits,
        *spend_hourly_key(event),
        1,
        int(is_error),
        event.prompt_tokens,
        event.completion_tokens,
        event.charge_credits,
        event.charge_micros,
    ]
    if spend_day is not None:
        sql += f",\n        sp AS ({daily_spend_upsert_sql('VALUES (%s, %s, %s)')})\n"
        params += [spend_day, event.cost_usd, now]
    if quota_part is None:
        sql += "SELECT id FROM ev"
    else:
        sql += (
            "SELECT ev.id, q.counter_id, q.meter, q.used, q.reserved, q.period_start, q.charged "
            "FROM ev LEFT JOIN qs_c q ON true"
        )
    return sql, params


def settle_batch_sql(*, items: list[tuple[UsageEvent, date | None]], quota_part, now) -> tuple[str, list]:
    """PostgreSQL: the grouped settle of quota-funded successes (the fast lane's writer).

    One statement for many calls: billing's quota settle (``quota_settle_pairs_sql``), the
    events, their daily and hourly-spend rollups and operator spend added up per row (an upsert
    may touch a row once per statement). Rows: ``("e", call_id, event id, …)`` per event and
    ``("c", …, counter_id, meter, used, reserved, period_start, charged)`` per settled counter.
    ``items``: each call's event and the day its cost goes to (None: it cost the operator
    nothing).
    """
    event_sql, event_params = usage_events_insert_sql([event for event, _day in items])
    params = [*quota_part.params, *event_params]
    rollups: dict[tuple, list] = {}
    hourly: dict[tuple, list] = {}
    spends: dict = {}
    for event, spend_day in items:
        spent = hourly.setdefault(spend_hourly_key(event), [0, 0, 0, 0, 0, 0])
        spent[0] += 1
        spent[1] += int(event.status_code >= 400)
        spent[2] += event.prompt_tokens
        spent[3] += event.completion_tokens
        spent[4] += event.charge_credits
        spent[5] += event.charge_micros
        totals = rollups.setdefault(
            (event.workspace_id, event.provider or "none", event.created_at.date()), [0, 0, 0, 0, 0, 0, 0]
        )
        totals[0] += 1
        totals[1] += event.total_tokens
        totals[2] += event.emails
        totals[3] += event.cost_usd
        totals[5] += int(event.is_fallback)
        totals[6] += event.charge_credits
        if spend_day is not None and event.cost_usd > 0:
            spends[spend_day] = spends.get(spend_day, 0) + event.cost_usd
    rollup_rows = []
    # Rows in key order: concurrent grouped settles then lock shared rows in the same order.
    for (workspace_id, provider, day), totals in sorted(rollups.items()):
        rollup_rows.append("(%s, %s, %s::date, %s, %s, %s, %s::numeric, %s, %s, %s::bigint)")
        params += [workspace_id, provider, day, *totals]
    for key, totals in sorted(hourly.items()):
        params += [*key, *totals]
    hourly_rows = ", ".join([_SPEND_ROW] * len(hourly))
    sql = f"""
        WITH {quota_part.ctes},
        ev AS ({event_sql} RETURNING id, call_id),
        ro AS ({rollup_upsert_sql("VALUES " + ", ".join(rollup_rows))}),
        sh AS ({spend_hourly_upsert_sql("VALUES " + hourly_rows)})
    """
    if spends:
        spend_rows = ", ".join(["(%s::date, %s::numeric, %s::timestamptz)"] * len(spends))
        sql += f",\n        sp AS ({daily_spend_upsert_sql('VALUES ' + spend_rows)})\n"
        for day, cost in sorted(spends.items()):
            params += [day, cost, now]
    sql += """
        SELECT 'e', ev.call_id, ev.id, NULL::bigint, NULL::text, NULL::bigint, NULL::bigint,
               NULL::timestamptz, NULL::bigint
        FROM ev
        UNION ALL
        SELECT 'c', NULL::uuid, NULL::bigint, q.counter_id, q.meter::text, q.used, q.reserved,
               q.period_start, q.charged
        FROM qs_c q
    """
    return sql, params


def event_write(
    *, event: UsageEvent, rollup_provider: str, is_error: bool, spend_day, now, quota_part=None
) -> list[tuple]:
    """The usage event, its daily and hourly-spend rollups and the day's operator spend, in one
    statement (the rollup and spend upserts ride on the event ``INSERT`` as data-modifying
    CTEs); with ``quota_part`` (billing's ``QuotaSettleSql``) the quota settle rides on it too
    and its counter rows are returned."""
    sql, params = event_write_sql(
        event=event,
        rollup_provider=rollup_provider,
        is_error=is_error,
        spend_day=spend_day,
        now=now,
        quota_part=quota_part,
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    event.pk = rows[0][0]
    event._state.adding = False
    if quota_part is None:
        return []
    return [row[1:] for row in rows if row[1] is not None]


def rate_limited_minute_record(*, workspace_id: int, day: date) -> None:
    """Count one more rate-limited minute for the workspace today (a key's window's first refusal)."""
    counter_row_bump(RateLimitedDay, field="minutes", workspace_id=workspace_id, day=day)
