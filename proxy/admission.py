"""First come, first admitted: at most ``PROXY_ADMISSION_CONCURRENCY`` calls per worker between
their arrival and their reserve.

Many calls arriving together (hundreds of clients that started at once, or came back at once
from a slow provider) were all admitted in lockstep: the event loop took each one step at a
time — gate, then body, then reserve — so every call of the wave reached its provider only when
the whole wave had been admitted, the answers came back together, and the next wave arrived
together again. Admitting a few at a time, in arrival order, lets the first calls reach their
provider at once; the answers spread out, and so do the next arrivals, so waves dissolve
instead of repeating. A call holds its ticket from the view's dispatch until its reserve is
done (``gateway._prepare``), never during the provider call.
"""

from __future__ import annotations

import asyncio
import contextvars

from django.conf import settings

from core.fastio import per_loop

_ticket: contextvars.ContextVar[Ticket | None] = contextvars.ContextVar("proxy_admission", default=None)
_semaphores: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}


class Ticket:
    __slots__ = ("semaphore",)

    def __init__(self, semaphore: asyncio.Semaphore | None):
        self.semaphore = semaphore

    def release(self) -> None:
        """Idempotent: the first call frees the slot."""
        if self.semaphore is not None:
            semaphore, self.semaphore = self.semaphore, None
            semaphore.release()


async def admission_enter() -> Ticket:
    """Wait for this call's turn; the ticket is also this context's, for ``admission_leave``."""
    limit = settings.PROXY_ADMISSION_CONCURRENCY
    if limit <= 0:
        ticket = Ticket(None)
    else:
        semaphore = per_loop(_semaphores, lambda: asyncio.Semaphore(limit))
        await semaphore.acquire()
        ticket = Ticket(semaphore)
    _ticket.set(ticket)
    return ticket


def admission_leave() -> None:
    """The call is admitted (reserved, or refused): let the next one in."""
    ticket = _ticket.get()
    if ticket is not None:
        ticket.release()
