"""Run synchronous database work from the async proxy views without pinning a connection.

Each block runs in a worker thread (``thread_sensitive=False``: blocks of different requests
run in parallel instead of queueing on the one "main" sync thread) and gives its connection
back when it ends — to the psycopg pool when pooling is on — so no connection is held while a
call waits on its upstream.
"""

from __future__ import annotations

import functools
import threading
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import sync_to_async
from django.db import close_old_connections, connections

# False in production. Query-count tests set it to True so the blocks run on the test's own
# thread and connection, where Django's query capture sees them.
THREAD_SENSITIVE = False
# Threads per process for the short database blocks: few, more only contend for the GIL.
DB_THREADS = 4


def _release_connections() -> None:
    """Return this thread's connections (pool) unless a transaction is still open."""
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block and conn.settings_dict.get("OPTIONS", {}).get("pool"):
            conn.close()  # back to the pool: cheap
    close_old_connections()  # honours CONN_MAX_AGE for unpooled connections


def _closing(fn):
    @functools.wraps(fn)
    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        finally:
            _release_connections()

    return run


_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def db_executor() -> ThreadPoolExecutor:
    """The proxy's own pool of ``DB_THREADS`` threads (created lazily, after the fork).

    Not the event loop's default executor: that one has ``min(32, cpus + 4)`` threads (6 here)
    and is shared with anything else calling ``run_in_executor(None, …)``.
    """
    global _executor
    if _executor is None:
        with _executor_lock:
            if _executor is None:
                _executor = ThreadPoolExecutor(max_workers=DB_THREADS, thread_name_prefix="proxy-db")
    return _executor


async def db_call(fn, /, *args, **kwargs):
    """``await db_call(service, **kwargs)``: run a sync service in a thread, release its connection."""
    if THREAD_SENSITIVE:
        return await sync_to_async(_closing(fn), thread_sensitive=True)(*args, **kwargs)
    return await sync_to_async(_closing(fn), thread_sensitive=False, executor=db_executor())(*args, **kwargs)
