"""Holds, the proxy's overage seam: reserve before a metered call, settle to what it used,
release what it did not (or everything when the upstream call failed)."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import Workspace
from core.locks import lock_objects

from ..models import CreditAccount, CreditHold, LedgerEntry
from .ledger import InsufficientCredits, _account_locked, _burn

logger = logging.getLogger("tollgate.credits")


def credit_hold(*, workspace: Workspace, amount: int, reference: str = "", endpoint: str = "") -> CreditHold:
    """Reserve ``amount`` of the workspace's credits before a metered call; ``available`` never
    goes below zero, whichever member's calls race for it."""
    if amount <= 0:
        raise ValueError("A hold must reserve a positive number of credits.")
    with transaction.atomic():
        account = _account_locked(workspace_id=workspace.pk)
        updated = CreditAccount.objects.filter(pk=account.pk, balance__gte=F("held") + amount).update(
            held=F("held") + amount, updated_at=timezone.now()
        )
        if updated != 1:
            raise InsufficientCredits(balance=account.balance, available=account.available, cost=amount)
        return CreditHold.objects.create(
            workspace_id=workspace.pk, amount=amount, reference=reference[:255], endpoint=endpoint[:200]
        )


def credit_hold_settle(
    *, hold: CreditHold, actual: int, idempotency_key: str, endpoint: str = ""
) -> LedgerEntry | None:
    """Charge what the call really used (at most the held amount) and release the rest.

    The charge is drawn from the workspace's lots in burn order (one ledger row per lot; the
    first one, keyed ``idempotency_key``, is returned and linked to the hold). Safe to call
    twice: a settled hold returns its entry. ``actual == 0`` releases the hold and returns None.
    """
    actual = max(int(actual), 0)
    with transaction.atomic():
        account = _account_locked(workspace_id=hold.workspace_id)
        hold = lock_objects(CreditHold.objects.filter(pk=hold.pk))[0]
        endpoint = endpoint or hold.endpoint
        if hold.status == CreditHold.Status.SETTLED:
            return hold.ledger_entry
        if hold.status == CreditHold.Status.RELEASED:
            logger.warning("credit hold settle after release", extra={"hold_id": hold.pk})
            return None
        charge = min(actual, hold.amount)
        if actual > hold.amount:
            logger.warning(
                "credit hold settled above its reservation; charged the reservation",
                extra={"hold_id": hold.pk, "actual": actual, "held": hold.amount},
            )
        now = timezone.now()
        entry = None
        if charge:
            entry = LedgerEntry.objects.filter(idempotency_key=idempotency_key).first()
            if entry is None:
                entry = _burn(
                    account=account,
                    kind=LedgerEntry.Kind.CONSUME,
                    amount=charge,
                    idempotency_key=idempotency_key,
                    reference=hold.reference,
                    endpoint=endpoint,
                    metadata={"hold_id": hold.pk, "held": hold.amount},
                    release_held=hold.amount,
                    now=now,
                )
            else:
                _release_held(account=account, amount=hold.amount)
        else:
            _release_held(account=account, amount=hold.amount)
        CreditHold.objects.filter(pk=hold.pk).update(
            status=CreditHold.Status.SETTLED if entry else CreditHold.Status.RELEASED,
            settled_amount=charge,
            ledger_entry=entry,
            resolved_at=now,
            updated_at=now,
        )
    if entry is not None:
        logger.info(
            "credit usage",
            extra={
                "workspace_id": hold.workspace_id,
                "endpoint": endpoint,
                "cost": charge,
                "balance_after": account.balance,
            },
        )
    return entry


def _release_held(*, account: CreditAccount, amount: int) -> None:
    CreditAccount.objects.filter(pk=account.pk).update(held=F("held") - amount, updated_at=timezone.now())
    account.held -= amount


def credit_hold_release(*, hold: CreditHold) -> None:
    """Give back a hold (the upstream call failed). Idempotent."""
    with transaction.atomic():
        account = _account_locked(workspace_id=hold.workspace_id)
        hold = lock_objects(CreditHold.objects.filter(pk=hold.pk))[0]
        if hold.status != CreditHold.Status.HELD:
            return
        _release_held(account=account, amount=hold.amount)
        now = timezone.now()
        CreditHold.objects.filter(pk=hold.pk).update(
            status=CreditHold.Status.RELEASED, settled_amount=0, resolved_at=now, updated_at=now
        )


def credit_holds_expire(*, older_than: timedelta | None = None, now=None) -> int:
    """Release holds a crashed worker never settled (older than STALE_RESERVATION_SECONDS by
    default). Returns how many were released."""
    if older_than is None:
        older_than = timedelta(seconds=settings.STALE_RESERVATION_SECONDS)
    cutoff = (now or timezone.now()) - older_than
    released = 0
    for hold in CreditHold.objects.filter(status=CreditHold.Status.HELD, created_at__lt=cutoff).only(
        "pk", "workspace_id"
    ):
        credit_hold_release(hold=hold)
        released += 1
    if released:
        logger.warning("released stale credit holds", extra={"count": released})
    return released
