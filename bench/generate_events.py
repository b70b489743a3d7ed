"""Generate realistic usage history for the dashboards bench: N usage events plus the daily
rollups and operator spend they imply, written by PostgreSQL itself (``INSERT … SELECT`` over
``generate_series``) so a million rows take seconds, not minutes of Python.

The rows are what the proxy would have written: events spread over ``days`` days across
``users`` users (one "heavy" user gets ``heavy_share`` of them, so the end-user dashboard has
real work), providers and models in plausible proportions, ~3 % errors, ~2 % fallbacks. Rollups
and daily spend are derived from exactly these events (upserted), so dashboards that read
rollups and pages that read raw events agree.

PostgreSQL only (the bench database). Run as ``python -m bench --dashboards``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

# provider, requested model, upstream model, input / output USD per million tokens
MIX = (
    ("deepseek", "deepseek-chat", "deepseek-chat", "0.28", "0.42"),
    ("groq", "gpt-4o-mini", "llama-3.1-8b-instant", "0", "0"),
    ("openrouter", "gpt-4o", "openai/gpt-4o", "2.5", "10"),
    ("openai", "gpt-4o-mini", "gpt-4o-mini", "0.15", "0.6"),
    ("anthropic", "claude-3-5-haiku", "claude-3-5-haiku-latest", "0.8", "4"),
)


@dataclass(frozen=True)
class GeneratedEvents:
    events: int
    users: int
    heavy_user_id: int
    seconds: float


def events_generate(*, events: int, users: int = 500, days: int = 90, heavy_user=None, heavy_share=0.05):
    """Insert ``events`` usage events (+ rollups, daily spend). Returns :class:`GeneratedEvents`.

    ``heavy_user`` must have no events yet: rollups are derived from every event of the users
    involved, which are all generated here.
    """
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.db import connection, transaction
    from django.utils import timezone

    from proxy.models import UsageDailyRollup, UsageEvent
    from proxy.services import daily_spend_upsert_sql, rollup_upsert_sql

    began = time.monotonic()
    User = get_user_model()
    stamp = int(time.time() * 1000)
    unusable = make_password(None)
    created = User.objects.bulk_create(
        [
            User(email=f"bench-dash-{stamp}-{i}@bench.invalid", name=f"Bench {i}", password=unusable)
            for i in range(users)
        ]
    )
    user_ids = [u.pk for u in created]
    if heavy_user is None:
        heavy_user = created[0]
    else:
        user_ids.append(heavy_user.pk)
    heavy_count = int(events * heavy_share)
    now = timezone.now()

    event = UsageEvent._meta.db_table
    rollup = UsageDailyRollup._meta.db_table
    mix_values = ", ".join(
        f"({i}, '{p}', '{m}', '{u}', {inp}::numeric, {out}::numeric)"
        for i, (p, m, u, inp, out) in enumerate(MIX)
    )
    # Weighted provider pick: deepseek 45 %, groq 25 %, openrouter 15 %, openai 10 %, anthropic 5 %.
    pick = (
        "CASE WHEN src.a < 0.45 THEN 0 WHEN src.a < 0.70 THEN 1 WHEN src.a < 0.85 THEN 2 "
        "WHEN src.a < 0.95 THEN 3 ELSE 4 END"
    )
    insert = f"""
        WITH mix(idx, provider, model, upstream_model, inp, outp) AS (VALUES {mix_values}),
        src AS (
            SELECT g,
                   CASE WHEN g <= %(heavy_count)s THEN %(heavy_id)s
                        ELSE (%(user_ids)s::bigint[])[1 + floor(random() * %(n_users)s)::int] END AS user_id,
                   random() AS a, random() AS b, random() AS c, random() AS d
            FROM generate_series(1, %(events)s) AS g
        ),
        r AS (
            SELECT src.*, (20 + floor(src.b * 400))::int AS prompt,
                   (10 + floor(src.c * 300))::int AS completion,
                   {pick} AS idx
            FROM src
        )
        INSERT INTO {event} (
            call_id, user_id, api_key_id, service, endpoint, provider, model, upstream_model,
            prompt_tokens, completion_tokens, total_tokens, emails, cost_usd, credits_charged,
            status_code, error_code, latency_ms, key_source, is_fallback, is_budget_fallback,
            is_estimated, request_id, created_at)
        SELECT gen_random_uuid(), r.user_id, NULL, 'router', '/v1/chat/completions', mix.provider,
               mix.model, mix.upstream_model,
               CASE WHEN r.d < 0.03 THEN 0 ELSE r.prompt END,
               CASE WHEN r.d < 0.03 THEN 0 ELSE r.completion END,
               CASE WHEN r.d < 0.03 THEN 0 ELSE r.prompt + r.completion END,
               0,
               CASE WHEN r.d < 0.03 THEN 0
                    ELSE round((r.prompt * mix.inp + r.completion * mix.outp) / 1000000, 6) END,
               0,
               CASE WHEN r.d < 0.02 THEN 502 WHEN r.d < 0.03 THEN 429 ELSE 200 END,
               CASE WHEN r.d < 0.02 THEN 'upstream_error' WHEN r.d < 0.03 THEN 'quota_exceeded' ELSE '' END,
               (80 + floor(r.b * 900))::int,
               'global', r.c < 0.02, false, false, 'bench-generated',
               %(now)s - (r.a * %(days)s) * interval '1 day'
        FROM r JOIN mix ON mix.idx = r.idx
    """
    rollup_upsert = rollup_upsert_sql(
        f"""
        SELECT user_id, provider, (created_at AT TIME ZONE 'UTC')::date, count(*), sum(total_tokens),
               sum(emails), sum(cost_usd), count(*) FILTER (WHERE status_code >= 400),
               count(*) FILTER (WHERE is_fallback)
        FROM {event} WHERE user_id = ANY(%(user_ids)s)
        GROUP BY 1, 2, 3
        """
    )
    spend_upsert = daily_spend_upsert_sql(
        f"""
        SELECT (created_at AT TIME ZONE 'UTC')::date, sum(cost_usd), %(now)s
        FROM {event} WHERE user_id = ANY(%(user_ids)s)
        GROUP BY 1
        """
    )
    params = {
        "events": events,
        "heavy_count": heavy_count,
        "heavy_id": heavy_user.pk,
        "user_ids": [u.pk for u in created],
        "n_users": len(created),
        "days": days,
        "now": now,
    }
    scope = {"user_ids": user_ids, "now": now}
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(insert, params)
        cursor.execute(rollup_upsert, scope)
        cursor.execute(spend_upsert, scope)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {event}")
        cursor.execute(f"ANALYZE {rollup}")
    return GeneratedEvents(
        events=events, users=len(user_ids), heavy_user_id=heavy_user.pk, seconds=time.monotonic() - began
    )
