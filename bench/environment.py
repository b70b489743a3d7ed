"""Where the bench runs: its own database and Redis db, and the settings of the servers it
starts (production's, every provider pointed at the fake upstream); its progress lines."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from datetime import UTC, datetime

import django
import psycopg
import redis

from .processes import ROOT


def bench_env(*, database_url: str, redis_url: str, upstream_port: int) -> dict:
    """Production settings for the bench: DEBUG off, real services, every provider → fake upstream."""
    upstream = f"http://127.0.0.1:{upstream_port}/v1"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVIDER_")}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DJANGO_ENV="production",
        DEBUG="False",
        # Fixed, bench-only secrets: stored provider keys must decrypt across bench runs.
        SECRET_KEY="bench-only-secret-key-never-used-in-production-0123456789abcdef",
        SALT_KEY="bench-only-salt",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        SECURE_SSL_REDIRECT="False",
        EMAIL_ALLOW_CONSOLE="1",  # the bench sends no mail; production refuses the console backend
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        CACHE_KEY_PREFIX="tollgate-bench",
        DAILY_BUDGET_USD=os.environ.get("BENCH_DAILY_BUDGET_USD", "1000"),
        INSTANTLY_API_URL=upstream,
        TOLLGATE_BENCH="1",
        PYTHONUNBUFFERED="1",
    )
    for provider in ("openai", "anthropic", "google", "mistral", "groq", "openrouter", "deepseek"):
        env[f"PROVIDER_{provider.upper()}_BASE_URL"] = upstream
    return env


def database_ensure(database_url: str) -> None:
    """Create the bench database if it does not exist (never drops anything)."""
    base, name = database_url.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def database_vacuum(database_url: str) -> None:
    """VACUUM ANALYZE the bench database before a run.

    The bench database is kept between runs, and a PostgreSQL with autovacuum off (as on this
    machine) never prunes the dead versions every call leaves on the counter rows or analyzes
    the tables: later runs would measure that bloat. In production autovacuum does this.
    """
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")


def redis_flush(redis_url: str) -> None:
    redis.Redis.from_url(redis_url).flushdb()


def manage(env: dict, *args: str, timeout: float = 600) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"manage.py {' '.join(args)} failed:\n{result.stdout[-2000:]}{result.stderr[-3000:]}"
        )
    return result.stdout


def django_setup(env: dict) -> None:
    os.environ.update(env)
    django.setup()
    # The bench's own HTTP clients must not log every request (it would cost the measurement).
    logging.getLogger("httpx").setLevel(logging.WARNING)


def step(message: str) -> None:
    print(f"[bench {datetime.now(UTC):%H:%M:%S}] {message}", flush=True)
