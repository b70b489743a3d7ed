"""Async PostgreSQL and Redis for the proxy's call path: no thread between a call and its data.

Each event loop (one per uvicorn worker process) gets its own ``psycopg_pool.AsyncConnectionPool``
and ``redis.asyncio`` client, opened lazily after the fork. Statements run with client-side
binding and Django's own adapters (UTC datetimes, Decimals), so the SQL the ORM builds runs
unchanged here.

A request served by a sync handler (Django's test client, a WSGI server) runs on an event loop
that ends with the request: ``transient_loop`` marks it, its pool opens one connection, and
the view closes the loop's stores when it answers (``core.lifecycle.shutdown_run``).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass

import psycopg
import redis.asyncio as aioredis
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from core import cache_identity
from core.exceptions import service_unavailable_error

logger = logging.getLogger("tollgate.core")


# Seconds a statement waits for a pooled connection before the call answers 503.
DB_TIMEOUT_SECONDS = 10.0
# Redis connections per worker process, at most: a command holds one for a round trip only.
REDIS_CONNECTIONS = 1000

# True while a request is served on an event loop that ends with it (a sync handler).
transient_loop: contextvars.ContextVar[bool] = contextvars.ContextVar("transient_loop", default=False)


@dataclass
class _Stores:
    pool: AsyncConnectionPool
    redis: aioredis.Redis


_stores: dict[asyncio.AbstractEventLoop, _Stores] = {}


def _conninfo_kwargs() -> dict:
    """Django's own connection parameters (adapters included), made async and autocommit."""
    params = dict(connection.get_connection_params())
    params.pop("cursor_factory", None)
    params.pop("pool", None)
    # Server-side binding, prepared on first use: the hot statements are a handful of fixed
    # texts, so each connection parses and plans them once (less CPU here and in PostgreSQL).
    params["cursor_factory"] = psycopg.AsyncCursor
    params["prepare_threshold"] = 0
    params["autocommit"] = True
    # Connections are reused for hours: pin the session time zone like Django does.
    options = params.pop("options", "")
    params["options"] = f"{options} -c timezone=UTC".strip()
    return params


def per_loop(registry: dict, factory):
    """This event loop's entry of ``registry`` (made by ``factory`` on first use). Pools and
    clients cannot cross event loops; entries of loops that have closed are dropped."""
    loop = asyncio.get_running_loop()
    value = registry.get(loop)
    if value is None:
        for old in [known for known in registry if known.is_closed()]:
            del registry[old]
        value = registry[loop] = factory()
    return value


def _stores_new() -> _Stores:
    # All opened up front: a pool that grows one connection at a time made the first burst of
    # calls (200 streams at once) queue behind the growth. A loop that ends with its request
    # needs one.
    size = 1 if transient_loop.get() else settings.PROXY_FAST_LANE_DB_CONNECTIONS
    pool = AsyncConnectionPool(
        kwargs=_conninfo_kwargs(),
        min_size=size,
        max_size=size,
        timeout=DB_TIMEOUT_SECONDS,
        open=False,
        name="proxy-fast-lane",
    )
    # A plain pool (the blocking one waits on a Condition on every command): a command holds its
    # connection for one round trip, so the pool stays near the commands in flight.
    client = aioredis.Redis(
        connection_pool=aioredis.ConnectionPool.from_url(
            settings.CACHES["default"]["LOCATION"],  # the cache's own server: one Redis for both
            max_connections=REDIS_CONNECTIONS,
            socket_connect_timeout=2,
            socket_timeout=2,
        )
    )
    return _Stores(pool=pool, redis=client)


def _stores_get() -> _Stores:
    return per_loop(_stores, _stores_new)


async def fast_lane_warm() -> None:
    """Open this loop's pool (every connection) and a Redis connection now (worker startup)."""
    stores = _stores_get()
    if stores.pool.closed:
        await stores.pool.open(wait=True, timeout=DB_TIMEOUT_SECONDS)
    await stores.redis.ping()


async def fast_lane_close() -> None:
    """Close this loop's pool and Redis client (a server shutting down, a test's live server)."""
    stores = _stores.pop(asyncio.get_running_loop(), None)
    if stores is not None:
        await stores.pool.close()
        await stores.redis.aclose()


@asynccontextmanager
async def _db_errors():
    """Database down or refusing: the same retryable 503 as the ORM path (driver text not shown)."""
    try:
        yield
    except (psycopg.OperationalError, psycopg.InterfaceError, TimeoutError, PoolTimeout) as exc:
        raise service_unavailable_error(what="database", exc=exc) from None


RETRIES = 3

# Statement texts with ``$n`` placeholders, by their ``%s`` text. psycopg converts ``%s`` with a
# tokenizer and caches the result only for short texts with few parameters: a settle (an event
# row alone has two dozen) would be converted again on every call.
_raw_texts: dict[str, bytes] = {}
_RAW_TEXTS_MAX = 256


def _raw_text(sql: str) -> bytes | None:
    """``sql`` with ``$1 … $n`` for its ``%s``; None when it holds any other ``%`` (a literal
    percent or a named placeholder), which psycopg's own conversion must handle."""
    raw = _raw_texts.get(sql)
    if raw is not None:
        return raw
    parts = sql.split("%s")
    if any("%" in part for part in parts):
        return None
    raw = (parts[0] + "".join(f"${number}{part}" for number, part in enumerate(parts[1:], 1))).encode()
    if len(_raw_texts) >= _RAW_TEXTS_MAX:
        _raw_texts.clear()
    _raw_texts[sql] = raw
    return raw


async def db_fetch(sql: str, params: list | tuple = (), *, prepare: bool | None = None) -> list[tuple]:
    """Run one statement (its own transaction) and return its rows.

    ``prepare=False`` for a text that is rarely the same twice (a grouped statement): preparing
    it would cost a round trip and evict the hot statements from the connection's cache.

    A deadlock or serialization failure rolled the whole statement back, so it is run again
    (up to ``RETRIES`` times) rather than failing a call the provider already served.
    """
    stores = _stores_get()
    async with _db_errors():
        if stores.pool.closed:
            await stores.pool.open(wait=False)
        for attempt in range(RETRIES):
            try:
                async with stores.pool.connection() as conn:
                    raw = _raw_text(sql)
                    cursor = conn.cursor() if raw is None else psycopg.AsyncRawCursor(conn)
                    async with cursor:
                        await cursor.execute(sql if raw is None else raw, params, prepare=prepare)
                        return await cursor.fetchall() if cursor.description is not None else []
            except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
                if attempt == RETRIES - 1:
                    raise
                logger.warning("statement retried", extra={"attempt": attempt + 1})
    raise AssertionError("unreachable")


def redis_client() -> aioredis.Redis:
    return _stores_get().redis


async def redis_call(coro):
    """Await a Redis command; Redis down answers the same 503 as the cache path (fail closed)."""
    try:
        return await coro
    except (aioredis.ConnectionError, aioredis.TimeoutError) as exc:
        raise service_unavailable_error(what="cache", exc=exc) from None


# The Redis key Django's cache uses for a key: prefix, this database's identity and version
# included. Built in ``core.cache_identity``, the one place keys are built; re-exported for the
# raw clients and Lua scripts of the fast lane.
cache_key = cache_identity.cache_key


_decode = None


def cache_decode(raw: bytes | None):
    """A value written by Django's Redis cache (plain integers, else its serializer).

    The decoder is looked up once: ``cache.client`` goes through thread-local lookups that
    cost more than the decoding itself.
    """
    global _decode
    if raw is None:
        return None
    if _decode is None:
        _decode = cache.client.decode
    return _decode(raw)
