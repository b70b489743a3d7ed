"""Synthetic usage history for benchmarks and demos: N usage events over D days and the personal
workspaces of U new users, plus the daily and hourly-spend rollups and operator spend they
imply, as the proxy would have written them.

PostgreSQL draws the rows itself (``generate_series`` and ``random()`` into a temporary table),
so a million events take seconds, not minutes of Python; rollups and spend are then added from
exactly those rows, so pages that read rollups and pages that read raw events agree, and
existing rows stay consistent (rollups are incremented, never recomputed).

The mix: providers and models in fixed proportions, priced from ``proxy.catalog.DEFAULT_PRICES``;
about 2 % upstream errors and 1 % quota refusals (which cost nothing), 2 % fallbacks; one
"heavy" workspace gets exactly ``heavy_share`` of the events, so the end-user dashboard has real
work. Users (with their personal workspaces) and one unusable key per workspace are created
through ``accounts.services``.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import connection, transaction
from django.utils import timezone

from accounts.services import api_keys_unusable_create, users_bulk_create
from core.rawsql import table_quoted

from .catalog import DEFAULT_PRICES
from .models import UsageDailyRollup, UsageEvent, UsageSpendHourly
from .services import (
    SPEND_HOURLY_KEY_SQL,
    SPEND_HOURLY_TOTALS_SQL,
    daily_spend_upsert_sql,
    rollup_upsert_sql,
    spend_hourly_upsert_sql,
)

GENERATED_MARKER = "bench-generated"  # request_id of generated events (the bench counts them)

# provider, requested model, upstream model (priced in DEFAULT_PRICES), share of calls in %
USAGE_MIX = (
    ("deepseek", "deepseek-chat", "deepseek-chat", 45),
    ("groq", "gpt-4o-mini", "llama-3.1-8b-instant", 25),
    ("openrouter", "gpt-4o", "openai/gpt-4o", 15),
    ("openai", "gpt-4o-mini", "gpt-4o-mini", 10),
    ("anthropic", "claude-3-5-haiku", "claude-3-5-haiku-latest", 5),
)
UPSTREAM_ERROR_SHARE = 0.02  # 502 upstream_error
QUOTA_REFUSAL_SHARE = 0.01  # 429 quota_exceeded
FALLBACK_SHARE = 0.02

EVENT_COLUMNS = (
    "call_id",
    "workspace_id",
    "api_key_id",
    "service",
    "endpoint",
    "provider",
    "model",
    "upstream_model",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "emails",
    "cost_usd",
    "credits_charged",
    "status_code",
    "error_code",
    "latency_ms",
    "key_source",
    "is_fallback",
    "is_budget_fallback",
    "is_estimated",
    "request_id",
    "created_at",
)

# Each random() is drawn once per row: who (workspace), pick (provider), outcome, sizes, timing.
_DRAW_SQL = """
    CREATE TEMPORARY TABLE usage_generated AS
    WITH mix AS (
        SELECT * FROM unnest(
            %(providers)s::text[], %(models)s::text[], %(upstreams)s::text[],
            %(inp)s::numeric[], %(outp)s::numeric[]
        ) WITH ORDINALITY AS m(provider, model, upstream_model, inp, outp, idx)
    ),
    draw AS (
        SELECT g, 1 + floor(random() * %(pool_size)s)::int AS who,
               1 + width_bucket(random(), %(bounds)s::float8[]) AS idx,
               random() AS outcome, random() AS a, random() AS b, random() AS c, random() AS d,
               random() AS e
        FROM generate_series(1, %(count)s) AS g
    ),
    r AS (
        SELECT draw.*, mix.provider, mix.model, mix.upstream_model, mix.inp, mix.outp,
               draw.outcome >= %(failure_share)s AS ok,
               (20 + floor(draw.a * 400))::int AS prompt,
               (10 + floor(draw.b * 300))::int AS completion,
               CASE WHEN draw.g <= %(heavy_count)s THEN %(heavy_id)s
                    ELSE (%(pool)s::bigint[])[draw.who] END AS workspace_id,
               CASE WHEN draw.g <= %(heavy_count)s THEN %(heavy_key)s
                    ELSE (%(pool_keys)s::bigint[])[draw.who] END AS api_key_id
        FROM draw JOIN mix ON mix.idx = draw.idx
    )
    SELECT gen_random_uuid() AS call_id, workspace_id, api_key_id, 'router'::text AS service,
           '/v1/chat/completions'::text AS endpoint, provider, model, upstream_model,
           CASE WHEN ok THEN prompt ELSE 0 END AS prompt_tokens,
           CASE WHEN ok THEN completion ELSE 0 END AS completion_tokens,
           CASE WHEN ok THEN prompt + completion ELSE 0 END AS total_tokens,
           0 AS emails,
           CASE WHEN ok THEN round((prompt * inp + completion * outp) / 1000000, 6) ELSE 0 END
               AS cost_usd,
           0 AS credits_charged,
           CASE WHEN ok THEN 200 WHEN outcome < %(upstream_error_share)s THEN 502 ELSE 429 END
               AS status_code,
           CASE WHEN ok THEN '' WHEN outcome < %(upstream_error_share)s THEN 'upstream_error'
                ELSE 'quota_exceeded' END AS error_code,
           (80 + floor(c * 900))::int AS latency_ms,
           %(key_source)s::text AS key_source, d < %(fallback_share)s AS is_fallback,
           false AS is_budget_fallback, false AS is_estimated, %(marker)s::text AS request_id,
           %(now)s - (e * %(days)s) * interval '1 day' AS created_at
    FROM r
"""

# The last column, charge_credits, is 0: generated events charge nothing (see below).
_ROLLUPS_SQL = """
    SELECT workspace_id, provider, (created_at AT TIME ZONE 'UTC')::date, count(*), sum(total_tokens),
           sum(emails), sum(cost_usd), count(*) FILTER (WHERE status_code >= 400),
           count(*) FILTER (WHERE is_fallback), 0
    FROM usage_generated GROUP BY 1, 2, 3
"""

# Generated events charge nothing (no charge columns: the database default, 0 and ""), so their
# hourly spend rows count calls and tokens only.
_SPEND_HOURLY_SQL = f"""
    SELECT {SPEND_HOURLY_KEY_SQL}, {SPEND_HOURLY_TOTALS_SQL}
    FROM usage_generated CROSS JOIN (SELECT 0 AS charge_credits, 0::bigint AS charge_micros,
                                            ''::text AS charge_currency) AS uncharged
    GROUP BY 1, 2, 3, 4, 5
"""  # noqa: S608 (constants only)

_SPEND_SQL = """
    SELECT (created_at AT TIME ZONE 'UTC')::date, sum(cost_usd), %(now)s
    FROM usage_generated GROUP BY 1 HAVING sum(cost_usd) > 0
"""


@dataclass(frozen=True)
class GeneratedUsage:
    events: int
    workspaces: int
    heavy_workspace_id: int
    rollups: int
    seconds: float


def _mix_params() -> dict:
    """The mix as SQL arrays, priced from the catalogue's one price table."""
    prices = {(provider, model): (inp, out) for provider, model, inp, out in DEFAULT_PRICES}
    total = sum(share for *_, share in USAGE_MIX)
    bounds, running = [], 0
    for *_, share in USAGE_MIX[:-1]:
        running += share
        bounds.append(running / total)
    return {
        "providers": [provider for provider, *_ in USAGE_MIX],
        "models": [model for _, model, *_ in USAGE_MIX],
        "upstreams": [upstream for _, _, upstream, _ in USAGE_MIX],
        "inp": [Decimal(prices[(p, u)][0]) for p, _, u, _ in USAGE_MIX],
        "outp": [Decimal(prices[(p, u)][1]) for p, _, u, _ in USAGE_MIX],
        "bounds": bounds,
    }


def usage_events_generate(
    *,
    count: int,
    users: int = 200,
    days: int = 30,
    heavy_workspace=None,
    heavy_share: float = 0.05,
    seed: int | None = None,
    now: datetime | None = None,
) -> GeneratedUsage:
    """Append ``count`` usage events spread over ``days`` days and the personal workspaces of
    ``users`` new users (plus ``heavy_workspace``, which gets ``heavy_share`` of them; without
    one, the first new user's does), and add the rollups and daily spend they imply. ``seed``
    makes the draw reproducible."""
    if count < 0 or users < 1 or days < 1:
        raise ValueError("count must be >= 0, users and days >= 1")
    if not 0 <= heavy_share <= 1:
        raise ValueError("heavy_share must be between 0 and 1")
    began = time.monotonic()
    now = now or timezone.now()
    rng = random.Random(seed)
    stamp = f"{int(time.time() * 1000)}-{rng.randrange(10**6)}"
    created = users_bulk_create(
        accounts=[(f"usage-{stamp}-{i}@generated.invalid", f"Generated {i}") for i in range(users)]
    )
    pool = [user.personal_workspace.pk for user in created]  # made with the users, cached on them
    heavy_id = heavy_workspace.pk if heavy_workspace is not None else pool[0]
    key_ids = api_keys_unusable_create(workspace_ids=sorted({*pool, heavy_id}), name="generated")
    params = {
        **_mix_params(),
        "count": count,
        "days": days,
        "now": now,
        "pool": pool,
        "pool_keys": [key_ids[workspace_id] for workspace_id in pool],
        "pool_size": len(pool),
        "heavy_id": heavy_id,
        "heavy_key": key_ids[heavy_id],
        "heavy_count": int(count * heavy_share),
        "failure_share": UPSTREAM_ERROR_SHARE + QUOTA_REFUSAL_SHARE,
        "upstream_error_share": UPSTREAM_ERROR_SHARE,
        "fallback_share": FALLBACK_SHARE,
        "key_source": UsageEvent.KeySource.GLOBAL,
        "marker": GENERATED_MARKER,
    }
    columns = ", ".join(EVENT_COLUMNS)
    with transaction.atomic(), connection.cursor() as cursor:
        if seed is not None:
            cursor.execute("SELECT setseed(%s)", [rng.uniform(-1, 1)])
        cursor.execute("DROP TABLE IF EXISTS usage_generated")
        cursor.execute(_DRAW_SQL, params)
        cursor.execute(
            f"INSERT INTO {table_quoted(UsageEvent)} ({columns}) SELECT {columns} FROM usage_generated"  # noqa: S608 (column names are constants)
        )
        cursor.execute(rollup_upsert_sql(_ROLLUPS_SQL))
        rollups = cursor.rowcount
        cursor.execute(spend_hourly_upsert_sql(_SPEND_HOURLY_SQL))
        cursor.execute(daily_spend_upsert_sql(_SPEND_SQL), {"now": now})
        cursor.execute("DROP TABLE usage_generated")
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {table_quoted(UsageEvent)}")
        cursor.execute(f"ANALYZE {table_quoted(UsageDailyRollup)}")
        cursor.execute(f"ANALYZE {table_quoted(UsageSpendHourly)}")
    return GeneratedUsage(
        events=count,
        workspaces=len({*pool, heavy_id}),
        heavy_workspace_id=heavy_id,
        rollups=rollups,
        seconds=time.monotonic() - began,
    )
