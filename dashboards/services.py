"""Writes of the dashboards app: operator alert emails and the
synthetic usage history used by benchmarks and demos. No domain model belongs to this app; the
generator writes the proxy's usage tables exactly the way the proxy would (events + rollups +
daily spend that agree with each other)."""

from __future__ import annotations

import hashlib
import logging
import random
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.cache import cache
from django.core.mail import send_mail
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import ApiKey
from core.money import usd
from proxy.models import UsageDailyRollup, UsageEvent
from proxy.services import daily_spend_upsert_sql, rollup_upsert_sql

from .selectors import (
    budget_status_get,
    providers_in_cooldown_list,
    staff_recipients_list,
)

logger = logging.getLogger("tollgate.dashboards")

ALERT_GATE_SECONDS = 2 * 24 * 3600


def _budget_gate_key(day) -> str:
    return f"dashboards:alert:budget:{day.isoformat()}"


def _cooldown_gate_key(provider: str) -> str:
    return f"dashboards:alert:cooldown:{provider}"


def _staff_email_send(*, subject: str, body: str) -> int:
    recipients = staff_recipients_list()
    if not recipients:
        logger.warning("operator alert not emailed: no active staff user has an email address")
        return 0
    return send_mail(
        subject=subject,
        message=body,
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=recipients,
    )


def budget_alert_send(*, now: datetime | None = None) -> bool:
    """Email staff once per UTC day when today's spend reaches 90 % of the daily budget.

    The gate is an atomic ``cache.add`` keyed by the day, taken before sending (two workers
    cannot both send) and given back if the email fails, so the next run retries.
    """
    now = now or timezone.now()
    today = now.date()
    budget = budget_status_get(today=today)
    if budget.alert_level != "critical":
        return False
    gate = _budget_gate_key(today)
    if not cache.add(gate, now.isoformat(), ALERT_GATE_SECONDS):
        return False
    try:
        _staff_email_send(
            subject=f"[Tollgate] Daily budget at {budget.percent_used}%",
            body=(
                f"Operator spend today ({today.isoformat()} UTC) is {budget.spent_usd} USD of "
                f"{budget.limit_usd} USD ({budget.percent_used}%).\n\n"
                "When the budget is exhausted, paid providers are skipped for the plans' free "
                "fallbacks.\nAction: raise DAILY_BUDGET_USD, or wait for the reset at 00:00 UTC.\n"
                f"Dashboard: {settings.SITE_URL}/admin/dashboard/\n"
            ),
        )
    except Exception:
        cache.delete(gate)
        raise
    logger.warning("budget alert emailed", extra={"percent": str(budget.percent_used)})
    return True


def cooldown_alert_send(*, now: datetime | None = None) -> list[str]:
    """Email staff about each provider that entered cooldown since the last check.

    One email per cooldown episode: the gate lives as long as the cooldown itself.
    """
    alerted = []
    for provider in providers_in_cooldown_list():
        gate = _cooldown_gate_key(provider)
        if not cache.add(gate, 1, max(settings.PROXY_COOLDOWN_SECONDS, 1)):
            continue
        try:
            _staff_email_send(
                subject=f"[Tollgate] {provider} is in cooldown",
                body=(
                    f"{provider} failed {settings.PROXY_COOLDOWN_FAILURES} times in a row and is skipped "
                    f"for {settings.PROXY_COOLDOWN_SECONDS} s; calls go to the fallback providers.\n"
                    f"Dashboard: {settings.SITE_URL}/admin/dashboard/\n"
                ),
            )
        except Exception:
            cache.delete(gate)
            raise
        alerted.append(provider)
    if alerted:
        logger.warning("cooldown alert emailed", extra={"providers": alerted})
    return alerted


# =============================================================================================
# Synthetic usage history
# =============================================================================================

GENERATED_MARKER = "bench-generated"  # request_id of generated events (the bench counts them)

# provider, requested model, upstream model, USD per million input / output tokens, weight %
USAGE_MIX = (
    ("deepseek", "deepseek-chat", "deepseek-chat", Decimal("0.28"), Decimal("0.42"), 45),
    ("groq", "gpt-4o-mini", "llama-3.1-8b-instant", Decimal(0), Decimal(0), 25),
    ("openrouter", "gpt-4o", "openai/gpt-4o", Decimal("2.5"), Decimal(10), 15),
    ("openai", "gpt-4o-mini", "gpt-4o-mini", Decimal("0.15"), Decimal("0.6"), 10),
    ("anthropic", "claude-3-5-haiku", "claude-3-5-haiku-latest", Decimal("0.8"), Decimal(4), 5),
)
EVENT_COLUMNS = (
    "call_id",
    "user_id",
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


@dataclass(frozen=True)
class GeneratedUsage:
    events: int
    users: int
    heavy_user_id: int
    rollups: int
    seconds: float


def _users_create(*, count: int, stamp: str) -> list:
    User = get_user_model()
    password = make_password(None)
    users = User.objects.bulk_create(
        [
            User(email=f"usage-{stamp}-{i}@generated.invalid", name=f"Generated {i}", password=password)
            for i in range(count)
        ]
    )
    return users


def _keys_create(*, user_ids: list[int]) -> dict[int, int]:
    """One (unusable: random hash, no plaintext exists) key per user so key filters have data."""
    keys = ApiKey.objects.bulk_create(
        [
            ApiKey(
                user_id=user_id,
                name="generated",
                prefix=f"{settings.PROXY_KEY_PREFIX}gen{i % 10}",
                key_hash=hashlib.sha256(secrets.token_bytes(32)).hexdigest(),
            )
            for i, user_id in enumerate(user_ids)
        ]
    )
    if keys and keys[0].pk is None:  # backends without RETURNING on bulk insert
        return dict(
            ApiKey.objects.filter(user_id__in=user_ids, name="generated").values_list("user_id", "id")
        )
    return {key.user_id: key.pk for key in keys}


def _events_iter(*, count, user_ids, heavy_user_id, heavy_share, key_ids, days, now, rng):
    """Yield (row tuple, rollup key, tokens, cost, is_error, is_fallback) for each event."""
    weights = [mix[5] for mix in USAGE_MIX]
    heavy_cut = heavy_share
    quant = Decimal("0.000001")
    million = Decimal(1_000_000)
    span = days * 86400
    for _ in range(count):
        user_id = heavy_user_id if rng.random() < heavy_cut else user_ids[rng.randrange(len(user_ids))]
        provider, model, upstream, inp, out, _weight = rng.choices(USAGE_MIX, weights=weights)[0]
        roll = rng.random()
        status, error = (
            (502, "upstream_error") if roll < 0.02 else (429, "quota_exceeded") if roll < 0.03 else (200, "")
        )
        ok = status < 400
        prompt = 20 + rng.randrange(400) if ok else 0
        completion = 10 + rng.randrange(300) if ok else 0
        total = prompt + completion
        cost = ((prompt * inp + completion * out) / million).quantize(quant) if ok else Decimal("0.000000")
        is_fallback = rng.random() < 0.02
        created = now - timedelta(seconds=rng.random() * span)
        row = (
            uuid.UUID(int=rng.getrandbits(128), version=4),
            user_id,
            key_ids.get(user_id),
            "router",
            "/v1/chat/completions",
            provider,
            model,
            upstream,
            prompt,
            completion,
            total,
            0,
            cost,
            0,
            status,
            error,
            80 + rng.randrange(900),
            UsageEvent.KeySource.GLOBAL,
            is_fallback,
            False,
            False,
            GENERATED_MARKER,
            created,
        )
        yield row, (user_id, provider, created.date()), total, cost, not ok, is_fallback


def _rollups_upsert(rollups: dict, spend: dict, now: datetime) -> None:
    with connection.cursor() as cursor:
        cursor.executemany(
            rollup_upsert_sql("VALUES (%s, %s, %s, %s, %s, 0, %s, %s, %s)"),
            [(u, p, d, *v) for (u, p, d), v in rollups.items()],
        )
        cursor.executemany(
            daily_spend_upsert_sql("VALUES (%s, %s, %s)"),
            [(day, usd(cost), now) for day, cost in spend.items() if cost > 0],
        )


def usage_events_generate(
    *,
    count: int,
    users: int = 200,
    days: int = 30,
    heavy_user=None,
    heavy_share: float = 0.05,
    seed: int | None = None,
    now: datetime | None = None,
    batch_size: int = 20_000,
) -> GeneratedUsage:
    """Insert ``count`` usage events spread over ``days`` days and ``users`` new users (plus
    ``heavy_user``, who gets ``heavy_share`` of them), and the rollups and daily spend they
    imply. PostgreSQL: ``COPY`` through psycopg; other backends: ``bulk_create`` in batches.

    Events are appended; rollups and spend are incremented, so existing data stays consistent.
    """
    if count < 0 or users < 1 or days < 1:
        raise ValueError("count must be >= 0, users and days >= 1")
    began = time.monotonic()
    now = now or timezone.now()
    rng = random.Random(seed)
    stamp = f"{int(time.time() * 1000)}-{rng.randrange(10**6)}"
    created = _users_create(count=users, stamp=stamp)
    user_ids = [u.pk for u in created]
    heavy_user_id = heavy_user.pk if heavy_user is not None else user_ids[0]
    key_ids = _keys_create(user_ids=sorted({*user_ids, heavy_user_id}))

    rollups: dict[tuple, list] = {}
    spend: dict = {}
    rows_iter = _events_iter(
        count=count,
        user_ids=user_ids,
        heavy_user_id=heavy_user_id,
        heavy_share=heavy_share,
        key_ids=key_ids,
        days=days,
        now=now,
        rng=rng,
    )

    def account(key, tokens, cost, is_error, is_fallback):
        entry = rollups.get(key)
        if entry is None:
            entry = rollups[key] = [0, 0, Decimal(0), 0, 0]
        entry[0] += 1
        entry[1] += tokens
        entry[2] += cost
        entry[3] += is_error
        entry[4] += is_fallback
        spend[key[2]] = spend.get(key[2], Decimal(0)) + cost

    with transaction.atomic():
        table = connection.ops.quote_name(UsageEvent._meta.db_table)
        columns = ", ".join(EVENT_COLUMNS)
        with connection.cursor() as cursor:
            raw = cursor.cursor  # the psycopg cursor behind Django's wrapper
            with raw.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row, key, tokens, cost, is_error, is_fallback in rows_iter:
                    copy.write_row(row)
                    account(key, tokens, cost, is_error, is_fallback)
        _rollups_upsert({k: [v[0], v[1], usd(v[2]), v[3], v[4]] for k, v in rollups.items()}, spend, now)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {connection.ops.quote_name(UsageEvent._meta.db_table)}")
        cursor.execute(f"ANALYZE {connection.ops.quote_name(UsageDailyRollup._meta.db_table)}")
    return GeneratedUsage(
        events=count,
        users=len(set(user_ids) | {heavy_user_id}),
        heavy_user_id=heavy_user_id,
        rollups=len(rollups),
        seconds=time.monotonic() - began,
    )
