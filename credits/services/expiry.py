"""Expiry of credit lots: what a lot still holds when its ``expires_at`` passes leaves the
balance through its own ``expiry`` ledger entry (beat task ``credits.lots_expire``).

Credits held by calls in flight are never expired from under them: a sweep expires at most
``balance - held`` (``_balance_move`` refuses anything more), so a lot that holds credits an
open hold needs keeps them; the hold then settles from it first (it expires soonest) and the
next sweep expires what is left once the hold is settled or released.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from ..models import CreditLot, LedgerEntry
from .ledger import _account_locked, _burn

logger = logging.getLogger("tollgate.credits")


def credit_lot_expire(*, lot_id: int, now: datetime | None = None) -> LedgerEntry | None:
    """Expire what lot ``lot_id`` still holds if its expiry has passed; None when there is
    nothing to expire. Idempotent: keyed ``expiry:lot:<id>`` (``expiry:lot:<id>:<remaining>``
    for a part left behind for open holds), under the account lock, and a lot at zero is done.
    """
    now = now or timezone.now()
    workspace_id = CreditLot.objects.filter(pk=lot_id).values_list("workspace_id", flat=True).first()
    if workspace_id is None:
        return None
    with transaction.atomic():
        account = _account_locked(workspace_id=workspace_id)
        lot = CreditLot.objects.get(pk=lot_id)  # read under the account lock: lots move only under it
        if lot.remaining <= 0 or lot.expires_at is None or lot.expires_at > now:
            return None
        expirable = min(lot.remaining, account.balance - account.held)
        if expirable <= 0:
            logger.info("credit lot expiry waits for open holds", extra={"lot_id": lot.pk})
            return None
        whole = expirable == lot.remaining
        key = f"expiry:lot:{lot.pk}" if whole else f"expiry:lot:{lot.pk}:{lot.remaining}"
        existing = LedgerEntry.objects.filter(idempotency_key=key).first()
        if existing is not None:
            return existing
        entry = _burn(
            account=account,
            kind=LedgerEntry.Kind.EXPIRY,
            amount=expirable,
            idempotency_key=key,
            reference=f"lot:{lot.pk}",
            metadata={"expires_at": lot.expires_at.isoformat(), "lot_kind": lot.kind},
            only_lot_id=lot.pk,
            now=now,
        )
        if whole:
            CreditLot.objects.filter(pk=lot.pk).update(expired_at=now, updated_at=now)
    logger.info(
        "credit lot expired",
        extra={
            "workspace_id": workspace_id,
            "lot_id": lot_id,
            "credits": expirable,
            "held_back": lot.remaining - expirable,
        },
    )
    return entry


def credit_lots_expire(*, now: datetime | None = None) -> int:
    """Expire every lot past its ``expires_at`` that still holds credits; returns how many
    expiry entries were written. Safe to run twice or concurrently."""
    now = now or timezone.now()
    due = CreditLot.objects.filter(remaining__gt=0, expires_at__lte=now).values_list("pk", flat=True)
    expired = 0
    for lot_id in list(due.order_by("expires_at", "pk")[:10_000]):
        if credit_lot_expire(lot_id=lot_id, now=now) is not None:
            expired += 1
    return expired
