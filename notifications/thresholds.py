"""Alerts that fire once per period, on the request that crosses the line, and resolve.

``threshold_reached`` and ``threshold_resolved`` are the writes: a ``ThresholdState`` row per
(workspace, subject, threshold, period start) decides, in the database, which call fires
(INSERT … ON CONFLICT: one winner however many cross together). The winner emits the event to
the workspace's webhooks (the outbox, in its transaction) and queues the email to the billing
contacts after commit.

``threshold_levels_observe`` is the cheap front door for the call path: the thresholds come
from this process's copy of the settings, and one shared-cache read of the gate keys tells
which thresholds already fired in this period; the database is touched only on a change (a
threshold newly reached, or a reached one that stopped holding). ``key_limit_usage_observed``
and ``member_limit_usage_observed`` are that door for an API key's and a member's limits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone

from core.rawsql import table_quoted

from .models import ThresholdState
from .selectors import notification_settings_get
from .services import event_emit
from .tasks import threshold_email_task

logger = logging.getLogger("tollgate.notifications")

NO_PERIOD = datetime(1970, 1, 1, tzinfo=UTC)  # the period of what never resets
GATE_SECONDS = 400 * 24 * 3600  # longer than any period; the state row is the truth anyway

# Reached event -> its resolved event.
RESOLVED_EVENTS = {
    "quota.threshold_reached": "quota.threshold_resolved",
    "key.limit_reached": "key.limit_resolved",
    "member.limit_reached": "member.limit_resolved",
    "credits.low": "credits.low_resolved",
    "credits.depleted": "credits.depleted_resolved",
}


def threshold_gate_key(*, workspace_id: int, subject: str, period_start: datetime, threshold: int) -> str:
    return f"notifications:threshold:{workspace_id}:{subject}:{int(period_start.timestamp())}:{threshold}"


def _reached_sql() -> str:
    table = table_quoted(ThresholdState)
    return f"""
        INSERT INTO {table} AS t (workspace_id, subject, threshold, period_start, reached_at, resolved_at)
        VALUES (%s, %s, %s, %s, %s, NULL)
        ON CONFLICT (workspace_id, subject, threshold, period_start)
        DO UPDATE SET reached_at = EXCLUDED.reached_at, resolved_at = NULL
        WHERE t.resolved_at IS NOT NULL
        RETURNING t.id
    """  # noqa: S608 (table name from model meta, values parametrised)


def threshold_reached(
    *,
    workspace_id: int,
    subject: str,
    threshold: int,
    period_start: datetime,
    event: str,
    data: dict,
    now: datetime | None = None,
) -> bool:
    """Record that ``threshold`` of ``subject`` is reached in the period; True for the one call
    that recorded it (which emits ``event`` and queues the email). A state resolved earlier in
    the same period is re-opened, and fires again: it is a new crossing."""
    now = now or timezone.now()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(_reached_sql(), [workspace_id, subject, threshold, period_start, now])
            won = cursor.fetchone() is not None
        if not won:
            return False
        event_emit(workspace=workspace_id, type=event, data=data, now=now)
        if notification_settings_get(workspace_id=workspace_id).email_enabled:
            transaction.on_commit(
                lambda: threshold_email_task.delay(workspace_id=workspace_id, event=event, data=data),
                robust=True,  # a broker that is down must not fail the call that crossed
            )
    return True


def threshold_resolved(
    *,
    workspace_id: int,
    subject: str,
    period_start: datetime,
    event: str,
    data: dict,
    thresholds: Iterable[int] | None = None,
    now: datetime | None = None,
) -> list[int]:
    """Mark the open states of ``subject`` in the period resolved (only ``thresholds`` when
    given) and emit ``event`` once for each, with its ``threshold`` in the data. Returns the
    thresholds it resolved (none when another call did it first)."""
    now = now or timezone.now()
    table = table_quoted(ThresholdState)
    sql = (
        f"UPDATE {table} SET resolved_at = %s WHERE workspace_id = %s AND subject = %s "  # noqa: S608 (table name from model meta, values parametrised)
        "AND period_start = %s AND resolved_at IS NULL"
    )
    params = [now, workspace_id, subject, period_start]
    if thresholds is not None:
        sql += " AND threshold = ANY(%s)"
        params.append(list(thresholds))
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(sql + " RETURNING threshold", params)
            resolved = sorted(row[0] for row in cursor.fetchall())
        for threshold in resolved:
            event_emit(workspace=workspace_id, type=event, data={**data, "threshold": threshold}, now=now)
        gates = [
            threshold_gate_key(
                workspace_id=workspace_id, subject=subject, period_start=period_start, threshold=t
            )
            for t in resolved
        ]
        if gates:  # a resolved threshold may be reached again, and fire again
            # Now and after commit: should the resolution roll back, a missing gate costs the
            # next observation one statement that finds the state still open.
            cache.delete_many(gates)
            transaction.on_commit(lambda: cache.delete_many(gates), robust=True)
    return resolved


# --- the call path's door -----------------------------------------------------------------------


def _fire_reached(*, gate: str, **kwargs) -> None:
    """After the caller committed: the call that sets the gate goes on to the database (set
    before commit, a rolled-back call would leave it set and the alert unsent)."""
    if not cache.add(gate, 1, GATE_SECONDS):
        return
    try:
        threshold_reached(**kwargs)
    except Exception:
        # An alert must not fail the call that crossed (it is on the books already); without
        # its gate the next call past the threshold tries again.
        cache.delete(gate)
        logger.exception("threshold alert failed", extra={"subject": kwargs.get("subject")})


def _fire_resolved(**kwargs) -> None:
    try:
        threshold_resolved(**kwargs)
    except Exception:
        # The gates stay: the next observation that finds them no longer reached tries again.
        logger.exception("threshold resolve failed", extra={"subject": kwargs.get("subject")})


def threshold_levels_observe(
    *,
    workspace_id: int,
    subject: str,
    period_start: datetime,
    levels: Iterable[int],
    reached: Callable[[int], bool],
    event: str,
    data: Callable[[int], dict],
    resolve: bool = True,
) -> None:
    """Fire the ``levels`` that are ``reached`` and had not fired in the period; with
    ``resolve``, resolve those that fired and no longer hold. One shared-cache read when
    nothing changed; the firing runs after the caller's transaction commits (a call rolled
    back fires nothing), where a cache ``add`` of the gate picks the one caller that writes.
    ``data(level)`` is the reached event's data."""
    gates = {
        level: threshold_gate_key(
            workspace_id=workspace_id, subject=subject, period_start=period_start, threshold=level
        )
        for level in levels
    }
    if not gates:
        return
    fired = cache.get_many(list(gates.values()))
    gone = []
    for level, gate in gates.items():
        if reached(level):
            if gate in fired:
                continue
            kwargs = {
                "gate": gate,
                "workspace_id": workspace_id,
                "subject": subject,
                "threshold": level,
                "period_start": period_start,
                "event": event,
                "data": data(level),
            }
            transaction.on_commit(lambda kwargs=kwargs: _fire_reached(**kwargs))
        elif resolve and gate in fired:
            gone.append(level)
    if gone:
        resolved_data = {key: value for key, value in data(gone[0]).items() if key != "threshold"}
        kwargs = {
            "workspace_id": workspace_id,
            "subject": subject,
            "period_start": period_start,
            "event": RESOLVED_EVENTS[event],
            "data": resolved_data,
            "thresholds": gone,
        }
        transaction.on_commit(lambda: _fire_resolved(**kwargs))


def _percent_reached(*, used: int, limit: int) -> Callable[[int], bool]:
    return lambda percent: limit > 0 and used * 100 >= percent * limit


def _limit_usage_observed(
    *, workspace_id: int, owner: tuple[str, str, int], unit: str, window: str, period_start, used, limit
) -> None:
    """``<kind>.limit_reached`` for each of the workspace's limit thresholds (percents) that
    ``used`` reached first in this period, ``<kind>.limit_resolved`` for one that fired and no
    longer holds (the limit was raised). ``owner``: (kind, id field, id). At most one
    shared-cache round trip while nothing changes; no database."""
    kind, id_field, owner_id = owner
    threshold_levels_observe(
        workspace_id=workspace_id,
        subject=f"{kind}:{owner_id}:{unit}:{window}",
        period_start=period_start,
        levels=notification_settings_get(workspace_id=workspace_id).limits,
        reached=_percent_reached(used=used, limit=limit),
        event=f"{kind}.limit_reached",
        data=lambda level: {
            id_field: owner_id,
            "unit": unit,
            "window": window,
            "threshold": level,
            "used": used,
            "limit": limit,
            "period_start": period_start.isoformat(),
        },
    )


def key_limit_usage_observed(
    *,
    workspace_id: int,
    api_key_id: int,
    unit: str,
    window: str,
    period_start: datetime,
    used: int,
    limit: int,
) -> None:
    """After a key-limit settle: ``key.limit_reached`` / ``key.limit_resolved``."""
    _limit_usage_observed(
        workspace_id=workspace_id,
        owner=("key", "api_key_id", api_key_id),
        unit=unit,
        window=window,
        period_start=period_start,
        used=used,
        limit=limit,
    )


def member_limit_usage_observed(
    *,
    workspace_id: int,
    user_id: int,
    unit: str,
    window: str,
    period_start: datetime,
    used: int,
    limit: int,
) -> None:
    """For a member's cap (all the keys the member created): ``member.limit_reached`` /
    ``member.limit_resolved``."""
    _limit_usage_observed(
        workspace_id=workspace_id,
        owner=("member", "user_id", user_id),
        unit=unit,
        window=window,
        period_start=period_start,
        used=used,
        limit=limit,
    )
