"""Calls that outlive their client: a call runs in a task of its own, shielded from the view.

Django cancels an ASGI view when its client disconnects; between reserve and settle that would
leave holds behind. Detached, the call runs to its end (upstream answer, settle, usage event)
and only the answer to the departed client is lost. A stopping worker drains these tasks.
"""

from __future__ import annotations

import asyncio
import logging
import time

from core.exceptions import ApiError

from .settle import settle_counters_drain

logger = logging.getLogger("tollgate.proxy")

_background: set[asyncio.Task] = set()


def _background_done(task: asyncio.Task) -> None:
    _background.discard(task)
    if not task.cancelled() and task.exception() is not None:
        exc = task.exception()
        if not isinstance(exc, ApiError):
            logger.error("proxy background task failed", exc_info=exc)


def background_task_start(coro) -> asyncio.Task:
    """Run ``coro`` as a task the event loop keeps a reference to until it ends."""
    task = asyncio.get_running_loop().create_task(coro)
    _background.add(task)
    task.add_done_callback(_background_done)
    return task


async def background_drain(deadline: float) -> None:
    """Worker shutdown: wait for the calls still running detached, and their settles, to end.

    New tasks may start while waiting (a stream's relay starts its pump), so wait until none
    is left or ``deadline`` (``time.monotonic()``) passes; then the last budget counter moves.
    """
    loop = asyncio.get_running_loop()
    while mine := {task for task in _background if task.get_loop() is loop}:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            logger.warning("worker stopped with calls running", extra={"calls": len(mine)})
            return
        await asyncio.wait(mine, timeout=remaining)
    await settle_counters_drain()


async def call_detached(coro):
    """Await ``coro`` in its own task, shielded from the request's cancellation: a client that
    leaves costs only the answer, never a hold left behind. The provider did the work, so
    charging it is right."""
    return await asyncio.shield(background_task_start(coro))
