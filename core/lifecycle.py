"""What a worker process finishes before it stops (ASGI lifespan shutdown).

A proxied call runs detached from its request: once the provider is working on it, it runs to
its settle even if the client leaves. A worker told to stop (a deploy, a restart) waits for its
open connections, but a call whose client already left has none, so without this it was cut at
exit and its hold left for the stale-reservation sweeper (an under-charge). Apps register a
drain (``shutdown_hook_add``, in ``AppConfig.ready``); ``core.asgi`` runs them all, within
``WORKER_SHUTDOWN_DRAIN_SECONDS``, before the worker's event loop closes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from django.conf import settings

logger = logging.getLogger("tollgate.core")

# Each hook: ``async def hook(deadline: float)`` (a ``time.monotonic()`` instant); in order.
_hooks: list[Callable[[float], Awaitable[None]]] = []


def shutdown_hook_add(hook: Callable[[float], Awaitable[None]]) -> None:
    if hook not in _hooks:
        _hooks.append(hook)


async def shutdown_run() -> None:
    """Run every hook, then close the fast lane's pool and Redis client of this loop."""
    from .fastio import fast_lane_close

    deadline = time.monotonic() + settings.WORKER_SHUTDOWN_DRAIN_SECONDS
    for hook in _hooks:
        try:
            await asyncio.wait_for(hook(deadline), timeout=max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            logger.warning("shutdown drain timed out", extra={"hook": getattr(hook, "__qualname__", "")})
        except Exception as exc:  # one failing drain must not stop the others
            logger.error("shutdown drain failed", extra={"error": type(exc).__name__})
    await fast_lane_close()
