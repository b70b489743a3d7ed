"""Writes of the shared kernel: per-day counter rows, shared-cache counters, recording
reconciliation drift (operational records only)."""

from __future__ import annotations

import logging
from datetime import datetime

from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from .models import ReconciliationDrift
from .reconciliation import RECONCILIATION_CHECKS, DriftFinding

logger = logging.getLogger("tollgate.reconciliation")


def counter_row_bump(model, *, field: str, **keys) -> None:
    """Add one to ``field`` of the row identified by ``keys`` (unique together), creating it at 1.

    An UPDATE first (the usual case: the row exists), an INSERT when it does not, and the UPDATE
    again when a concurrent writer inserted it first.
    """
    bump = {field: F(field) + 1}
    if model.objects.filter(**keys).update(**bump):
        return
    try:
        with transaction.atomic():
            model.objects.create(**keys, **{field: 1})
    except IntegrityError:
        model.objects.filter(**keys).update(**bump)


def cache_counter_incr(key: str, *, ttl: int) -> int:
    """INCR a shared-cache counter, creating it with ``ttl`` when missing.

    ``incr`` raises when the key is missing, and a concurrent ``delete`` or an expiry can remove
    it between our ``add`` and ``incr``: retry, and if it keeps vanishing count this event
    alone rather than fail the request.
    """
    for _ in range(3):
        try:
            return cache.incr(key)
        except ValueError:
            if cache.add(key, 1, ttl):
                return 1
    return 1


def reconciliation_drift_record(*, finding: DriftFinding, now: datetime | None = None) -> ReconciliationDrift:
    """Record one finding: a new open drift, or the open one of the same subject refreshed.

    The partial unique constraint keeps one open row per source + subject, so a nightly run
    that sees the same drift again (or two runs at once) never piles up duplicates.
    """
    now = now or timezone.now()
    with transaction.atomic():
        drift, created = ReconciliationDrift.objects.select_for_update().get_or_create(
            source=finding.source,
            subject=finding.subject,
            resolved_at=None,
            defaults={
                "expected": finding.expected,
                "actual": finding.actual,
                "detail": finding.detail,
                "detected_at": now,
                "last_seen_at": now,
            },
        )
        if not created:
            drift.expected, drift.actual, drift.detail = finding.expected, finding.actual, finding.detail
            drift.last_seen_at = now
            drift.save(update_fields=["expected", "actual", "detail", "last_seen_at"])
    return drift


def reconciliation_run(*, now: datetime | None = None) -> list[ReconciliationDrift]:
    """Run every check and record what drifted. Never corrects anything: operators do.

    A failing check is logged and does not stop the others (one app's bug must not hide
    another app's drift).
    """
    now = now or timezone.now()
    recorded = []
    for source, check in RECONCILIATION_CHECKS.items():
        try:
            rows = check(now=now)
        except Exception as exc:  # recorded as drift of its own so the operator sees it
            logger.exception("reconciliation check failed", extra={"source": source})
            rows = [
                DriftFinding(
                    source=source,
                    subject="check",
                    expected="check runs",
                    actual="check failed",
                    detail={"error": type(exc).__name__},
                )
            ]
        for finding in rows:
            drift = reconciliation_drift_record(finding=finding, now=now)
            recorded.append(drift)
            logger.error(
                "reconciliation drift",
                extra={
                    "source": source,
                    "subject": finding.subject,
                    "expected": finding.expected,
                    "actual": finding.actual,
                },
            )
    return recorded


def reconciliation_drift_resolve(*, drift: ReconciliationDrift, note: str = "", now=None) -> bool:
    """Mark an open drift handled (the operator fixed the data). False when already resolved."""
    now = now or timezone.now()
    updated = ReconciliationDrift.objects.filter(pk=drift.pk, resolved_at__isnull=True).update(
        resolved_at=now, resolved_note=note[:500]
    )
    return bool(updated)
