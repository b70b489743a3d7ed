"""Writes for the proxy, all synchronous and short: the async views call them through
``proxy.dbcall.db_call`` so no database connection is held while the upstream is working.

- ``attempt_prepared``: price an attempt and say what it may hold (``fastlane.proxy_call_aprepare``
  resolves the provider key and takes the holds);
- ``proxy_call_settle``: in one transaction, settle or release the funding, append the
  ``UsageEvent``, upsert the daily rollup and the operator's ``DailySpend``; then move the
  budget counter to the actual cost.
"""

from __future__ import annotations

import logging
import uuid
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from core.exceptions import ApiError
from core.money import usd
from core.rawsql import sql_connection, table_quoted
from core.redact import secret_remember
from core.services import counter_row_bump

from . import budget, sandbox
from .funding import (
    Funding,
    funding_release,
    funding_settle,
    funding_settle_finish,
    funding_settle_sql,
)
from .models import DailySpend, RateLimitedDay, UsageDailyRollup, UsageEvent
from .selectors import Price, model_price_get, upstream_model_get
from .upstreams import Target, target_build

logger = logging.getLogger("tollgate.proxy")

OPERATOR_SOURCES = ("global", "env")


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


def cost_usd_get(*, price: Price | None, prompt_tokens: int, completion_tokens: int) -> Decimal:
    """Operator cost of a call in USD (6 decimals); unknown price costs 0 and is logged."""
    if price is None:
        return Decimal("0.000000")
    raw = (
        Decimal(prompt_tokens) * price.input_usd_per_mtok
        + Decimal(completion_tokens) * price.output_usd_per_mtok
    ) / Decimal(1_000_000)
    return usd(raw)


def attempt_target(*, source: str, secret: str, provider: str, requested_model: str):
    """(Target, upstream model, Price) of one attempt: all from the in-process catalogue."""
    if source == "sandbox":
        target = Target(provider=sandbox.PROVIDER, base_url="", secret="")
        upstream_model = sandbox.MODEL
    else:
        secret_remember(secret)  # so no relayed provider text can ever carry it
        target = target_build(provider=provider, secret=secret)
        upstream_model = (
            upstream_model_get(requested_model=requested_model, provider=provider) if requested_model else ""
        )
    price = model_price_get(provider=target.provider, model=upstream_model) if upstream_model else None
    return target, upstream_model, price


def attempt_meters(*, source: str, meters: dict[str, int]) -> dict[str, int]:
    """A BYOK call's tokens are the user's own: off the quota unless ``BYOK_COUNTS_AGAINST_QUOTA``."""
    meters = dict(meters)
    if source == "personal" and not settings.BYOK_COUNTS_AGAINST_QUOTA:
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
    """An attempt before anything is held (shared by the ORM path and the fast lane): its target
    and price, the meters it costs on the plan, and the most it may take from the operator's
    daily budget (0 when the operator does not pay, or without ``check_budget``). The caller
    reserves, then sets ``funding``."""
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


@dataclass(frozen=True)
class CallRecord:
    """What the log needs to know about a finished call."""

    user_id: int
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


def rollup_upsert_sql(rows: str) -> str:
    """Add ``rows`` (a VALUES list or a SELECT of user_id, provider, day, requests, tokens, emails,
    cost_usd, errors, fallbacks) to the day's rollup rows: one upsert, increments only."""
    t = table_quoted(UsageDailyRollup)
    return f"""
        INSERT INTO {t} (user_id, provider, day, requests, tokens, emails, cost_usd, errors, fallbacks)
        {rows}
        ON CONFLICT (user_id, provider, day) DO UPDATE SET
            requests = {t}.requests + EXCLUDED.requests,
            tokens = {t}.tokens + EXCLUDED.tokens,
            emails = {t}.emails + EXCLUDED.emails,
            cost_usd = {t}.cost_usd + EXCLUDED.cost_usd,
            errors = {t}.errors + EXCLUDED.errors,
            fallbacks = {t}.fallbacks + EXCLUDED.fallbacks
    """


def daily_spend_upsert_sql(rows: str) -> str:
    """Add ``rows`` (VALUES or SELECT of day, spent_usd, updated_at) to the operator's daily spend."""
    t = table_quoted(DailySpend)
    return f"""
        INSERT INTO {t} (day, spent_usd, updated_at) {rows}
        ON CONFLICT (day) DO UPDATE SET
            spent_usd = {t}.spent_usd + EXCLUDED.spent_usd, updated_at = EXCLUDED.updated_at
    """


def _event_insert_sql(events: list[UsageEvent]) -> tuple[str, list]:
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
    """The event, rollup, spend (and quota settle) statement of ``_event_write``.

    Rows: ``(event id,)``, or with ``quota_part`` ``(event id, counter_id, meter, used,
    reserved, period_start, charged)`` per settled counter.
    """
    event_sql, values = _event_insert_sql([event])
    sql = f"""
        WITH {quota_part.ctes + "," if quota_part is not None else ""} ev AS ({event_sql} RETURNING id),
        ro AS ({rollup_upsert_sql("VALUES (%s, %s, %s, 1, %s, %s, %s, %s, %s)")})
    """
    params = [
        *(quota_part.params if quota_part is not None else []),
        *values,
        event.user_id,
        rollup_provider,
        event.created_at.date(),
        event.total_tokens,
        event.emails,
        event.cost_usd,
        int(is_error),
        int(event.is_fallback),
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
    events, their rollups and operator spend added up per row (an upsert may touch a row once
    per statement). Rows: ``("e", call_id, event id, …)`` per event and ``("c", …, counter_id,
    meter, used, reserved, period_start, charged)`` per settled counter. ``items``: each call's
    event and the day its cost goes to (None: it cost the operator nothing).
    """
    event_sql, event_params = _event_insert_sql([event for event, _day in items])
    params = [*quota_part.params, *event_params]
    rollups: dict[tuple, list] = {}
    spends: dict = {}
    for event, spend_day in items:
        totals = rollups.setdefault(
            (event.user_id, event.provider or "none", event.created_at.date()), [0, 0, 0, 0, 0, 0]
        )
        totals[0] += 1
        totals[1] += event.total_tokens
        totals[2] += event.emails
        totals[3] += event.cost_usd
        totals[5] += int(event.is_fallback)
        if spend_day is not None and event.cost_usd > 0:
            spends[spend_day] = spends.get(spend_day, 0) + event.cost_usd
    rollup_rows = []
    # Rows in key order: concurrent grouped settles then lock shared rows in the same order.
    for (user_id, provider, day), totals in sorted(rollups.items()):
        rollup_rows.append("(%s, %s, %s::date, %s, %s, %s, %s::numeric, %s, %s)")
        params += [user_id, provider, day, *totals]
    sql = f"""
        WITH {quota_part.ctes},
        ev AS ({event_sql} RETURNING id, call_id),
        ro AS ({rollup_upsert_sql("VALUES " + ", ".join(rollup_rows))})
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


def _event_write(
    *, event: UsageEvent, rollup_provider: str, is_error: bool, spend_day, now, quota_part=None
) -> list[tuple]:
    """The usage event, its daily rollup and the day's operator spend, in one statement (the
    rollup and spend upserts ride on the event ``INSERT`` as data-modifying CTEs); with
    ``quota_part`` (billing's ``QuotaSettleSql``) the quota settle rides on it too and its
    counter rows are returned."""
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


def call_cost_get(*, prepared: PreparedCall | None, record: CallRecord) -> Decimal:
    """What a finished call cost the operator: nothing when it failed or ran on the user's key."""
    if prepared is None or record.status_code >= 400 or not prepared.is_operator_paid:
        return Decimal("0.000000")
    return cost_usd_get(
        price=prepared.price, prompt_tokens=record.prompt_tokens, completion_tokens=record.completion_tokens
    )


def usage_event_build(*, prepared: PreparedCall | None, record: CallRecord, cost: Decimal, now) -> UsageEvent:
    """The (unsaved) UsageEvent of a finished call; a failed call records no usage."""
    succeeded = record.status_code < 400
    total_tokens = record.prompt_tokens + record.completion_tokens
    return UsageEvent(
        call_id=prepared.call_id if prepared is not None else uuid.uuid4(),
        user_id=record.user_id,
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
    statement on the PostgreSQL hot path, else one transaction).
    The budget counter in the cache follows after commit. A call with no prepared attempt
    (quota refused, every provider failed) is logged with no charge.
    """
    now = now or timezone.now()
    succeeded = record.status_code < 400
    total_tokens = record.prompt_tokens + record.completion_tokens
    cost = call_cost_get(prepared=prepared, record=record)
    actual_micro = budget.usd_to_micro(cost)
    # Quota-funded success (the hot path): ONE statement, so the hot rows (the user's
    # counters, the rollup, the day's spend) are locked only while it runs. Otherwise (credits,
    # failures): one transaction of several statements.
    one_statement = settles_in_one_statement(prepared=prepared, record=record)
    quota_part = None
    actual = {"requests": 1, "llm_tokens": total_tokens, "emails": record.emails}
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
        counter_rows = _event_write(
            event=event,
            rollup_provider=event.provider or "none",
            is_error=not succeeded,
            spend_day=prepared.budget_day if cost > 0 else None,
            now=now,
            quota_part=quota_part,
        )
        if quota_part is not None:
            funding_settle_finish(funding=prepared.funding, rows=counter_rows, now=now)
    if prepared is not None:
        prepared.closed = True
        budget.budget_settle(
            day=prepared.budget_day,
            hold_id=prepared.call_id,
            reserved_micro=prepared.budget_micro,
            actual_micro=actual_micro,
        )
    return event


def error_for_no_provider(provider: str | None = None) -> ApiError:
    return ApiError("no_provider_available", "No provider is available for this request right now.")


def rate_limited_minute_record(*, user_id: int, day: date) -> None:
    """Count one more rate-limited minute for the user today (the window's first refusal)."""
    counter_row_bump(RateLimitedDay, field="minutes", user_id=user_id, day=day)
