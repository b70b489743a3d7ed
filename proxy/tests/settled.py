"""Waiting for a call served by a live server to reach the books (it settles after the answer
when the client is gone, and spare quota reservations come back a moment later)."""

from __future__ import annotations

import time

from billing.models import UsageCounter
from proxy.models import UsageEvent


def usage_events_wait(workspace, count: int = 1, timeout: float = 5.0) -> list[UsageEvent]:
    """This workspace's usage events, oldest first, once there are at least ``count``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = list(UsageEvent.objects.filter(workspace=workspace).order_by("id"))
        if len(events) >= count:
            return events
        time.sleep(0.05)
    raise AssertionError("no usage event recorded")


def token_counter_settled(workspace, used: int, timeout: float = 5.0) -> UsageCounter:
    """The plan's token counter once it shows ``used`` and no reservation (or at the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        counter = UsageCounter.objects.get(workspace=workspace, meter="llm_tokens")
        if (counter.used == used and counter.reserved == 0) or time.monotonic() > deadline:
            return counter
        time.sleep(0.05)
