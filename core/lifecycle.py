"""What a worker process does when it starts and finishes before it stops (ASGI lifespan).

At startup it opens what the first calls would otherwise wait for (``startup_run``): the fast
lane's connections and what apps register (``startup_hook_add``, e.g. the proxy's catalogue),
so the first burst after a deploy does not queue behind connection setup. A failure there is
logged and the worker starts anyway: calls then answer 503 as usual until the service is back.

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

from .fastio import fast_lane_close, fast_lane_warm

logger = logging.getLogger("tollgate.core")

# Each hook: ``async def hook(deadline: float)`` (a ``time.monotonic()`` instant); in order.
_hooks: list[Callable[[float], Awaitable[None]]] = []
# Each: ``async def hook()``; in order, each within STARTUP_HOOK_SECONDS.
_startup_hooks: list[Callable[[], Awaitable[None]]] = []
STARTUP_HOOK_SECONDS = 10.0


def startup_hook_add(hook: Callable[[], Awaitable[None]]) -> None:
    if hook not in _startup_hooks:
        _startup_hooks.append(hook)


async def startup_run() -> None:
    """Open the call path's connections, then run every startup hook; never raises."""
    hooks = [fast_lane_warm, *_startup_hooks]
    for hook in hooks:
        try:
            await asyncio.wait_for(hook(), timeout=STARTUP_HOOK_SECONDS)
        except Exception as exc:  # TimeoutError included: the worker starts cold, not never
            logger.warning(
                "startup warm-up failed",
                extra={"hook": getattr(hook, "__qualname__", ""), "error": type(exc).__name__},
            )


def shutdown_hook_add(hook: Callable[[float], Awaitable[None]]) -> None:
    if hook not in _hooks:
        _hooks.append(hook)


async def shutdown_run() -> None:
    """Run every hook, then close the fast lane's pool and Redis client of this loop."""
    deadline = time.monotonic() + settings.WORKER_SHUTDOWN_DRAIN_SECONDS
    for hook in _hooks:
        try:
            await asyncio.wait_for(hook(deadline), timeout=max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            logger.warning("shutdown drain timed out", extra={"hook": getattr(hook, "__qualname__", "")})
        except Exception as exc:  # one failing drain must not stop the others
            logger.error("shutdown drain failed", extra={"error": type(exc).__name__})
    await fast_lane_close()
