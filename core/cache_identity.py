"""Every Redis key carries the identity of the database its value was derived from.

Cached values are keyed by row ids (``plan:ws:7``, a key hash → workspace 7). A fresh or restored
database on a Redis that served another one would read that one's entries: workspace 7 there is
not workspace 7 here. So every key starts with ``key_prefix()`` = ``<CACHE_KEY_PREFIX>:<instance id>``,
the instance id being ``core.DeploymentIdentity``'s UUID, created with the database.

Every key is built here: Django's cache (and django-ratelimit, which uses it) through
``make_key`` (the cache's ``KEY_FUNCTION``), raw Redis clients and Lua scripts through
``cache_key`` (``core.fastio.cache_key`` is this function). A new way to reach Redis must build
its keys with one of them.

The id is read once per process, on first use (settings load before the database is
reachable), and memoised; ``manage.py cache_identity_rotate`` replaces it after a restore, and
processes started afterwards use the new one.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.db import IntegrityError, connections, transaction
from django.utils import timezone

_lock = threading.Lock()
_instance_id: str | None = None
_cache_prefix: str | None = None  # key_prefix() + ":<version>:", the prefix cache_key() adds


def _identity_load() -> str:
    """The row's id; a database without the row (``flush``) gets a new one."""
    from core.models import DeploymentIdentity  # noqa: PLC0415 (imported while apps load (core.apps, the cache key function): models come later)

    row = DeploymentIdentity.objects.filter(pk=1).values_list("instance_id", flat=True).first()
    if row is not None:
        return str(row)
    try:
        with transaction.atomic():
            created = DeploymentIdentity.objects.create(
                pk=1, instance_id=uuid.uuid4(), created_at=timezone.now()
            )
        return str(created.instance_id)
    except IntegrityError:  # another process created it first
        return str(DeploymentIdentity.objects.values_list("instance_id", flat=True).get(pk=1))


def _identity_load_in_thread() -> str:
    """``_identity_load`` from a thread of its own: the caller runs an event loop, where Django
    refuses synchronous queries. Once per process; the thread's connection is closed after."""

    def load() -> str:
        try:
            return _identity_load()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=1) as executor:
        return executor.submit(load).result()


def instance_id() -> str:
    """This database's identity (a UUID string), read from the database once per process."""
    global _instance_id
    if _instance_id is None:
        with _lock:
            if _instance_id is None:
                try:
                    asyncio.get_running_loop()
                except RuntimeError:
                    _instance_id = _identity_load()
                else:
                    _instance_id = _identity_load_in_thread()
    return _instance_id


def key_prefix() -> str:
    """``<CACHE_KEY_PREFIX>:<instance id>``: the start of every Redis key Tollgate writes."""
    return f"{settings.CACHES['default'].get('KEY_PREFIX', '')}:{instance_id()}"


def make_key(key: str, key_prefix: str, version: int) -> str:
    """Django's cache ``KEY_FUNCTION``: the default ``prefix:version:key``, with the instance id."""
    return f"{key_prefix}:{instance_id()}:{version}:{key}"


def cache_key(key: str) -> str:
    """The Redis key Django's cache uses for ``key`` (default version): for raw clients and
    Lua scripts that must read and write the same entries. The prefix is computed once."""
    global _cache_prefix
    prefix = _cache_prefix
    if prefix is None:
        prefix = _cache_prefix = f"{key_prefix()}:{settings.CACHES['default'].get('VERSION', 1)}:"
    return prefix + key


def identity_forget() -> None:
    """Drop this process's memoised id: the next key reads it again (after a rotation or a
    ``flush`` in this process)."""
    global _instance_id, _cache_prefix
    with _lock:
        _instance_id = None
        _cache_prefix = None


def cache_identity_rotate() -> str:
    """Give this database a new identity (after a restore or a copy to another deployment): every
    entry written under the old one is unreachable from then on. Returns the new id."""
    from core.models import DeploymentIdentity  # noqa: PLC0415 (imported while apps load (core.apps, the cache key function): models come later)

    new_id = uuid.uuid4()
    DeploymentIdentity.objects.update_or_create(
        pk=1, defaults={"instance_id": new_id, "created_at": timezone.now()}
    )
    identity_forget()
    return str(new_id)


async def identity_warm() -> None:
    """Startup hook: read the id before the first request needs it on the event loop."""
    await asyncio.to_thread(_identity_load_closing)


def _identity_load_closing() -> None:
    try:
        instance_id()
    finally:
        connections.close_all()


def identity_ensure_after_migrate(**kwargs) -> None:
    """``post_migrate`` receiver: a database just created or flushed gets its row now, and this
    process forgets the id it may have memoised for the database's previous contents."""
    if kwargs.get("app_config") is None or kwargs["app_config"].label != "core":
        return
    identity_forget()
    using = kwargs.get("using", "default")
    if using != "default":
        return
    instance_id()
