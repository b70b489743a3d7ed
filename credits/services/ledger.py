"""The balance and its ledger: the one place a balance changes, and the movements that need no
payment (operator grants, consumption of a priced endpoint).

Every movement runs inside one transaction that first locks the workspace's ``CreditAccount`` row
(``core.locks.lock_objects``), then changes the balance with a conditional ``UPDATE … F()``
and appends exactly one ``LedgerEntry`` whose unique idempotency key makes replays no-ops.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import Workspace
from accounts.services import audit_record
from core.exceptions import ApiError
from core.locks import lock_objects
from notifications.services import event_emit

from ..models import CreditAccount, EndpointCost, LedgerEntry

logger = logging.getLogger("tollgate.credits")


class InsufficientCredits(Exception):
    """The workspace's available credits do not cover ``cost``."""

    def __init__(self, *, balance: int, available: int, cost: int):
        super().__init__(f"Insufficient credits: {available} available, {cost} needed.")
        self.balance = balance
        self.available = available
        self.cost = cost


@dataclass(frozen=True)
class ConsumeResult:
    charged: int
    balance_after: int
    entry: LedgerEntry
    replayed: bool


# --- internals ---------------------------------------------------------------------------------


def _account_locked(*, workspace_id: int) -> CreditAccount:
    """Lock the workspace's account row, creating it first if needed. Call inside ``transaction.atomic``."""
    locked = lock_objects(CreditAccount.objects.filter(workspace_id=workspace_id))
    if locked:
        return locked[0]
    CreditAccount.objects.get_or_create(workspace_id=workspace_id)  # survives a concurrent create
    return lock_objects(CreditAccount.objects.filter(workspace_id=workspace_id))[0]


def _apply(
    *,
    account: CreditAccount,
    kind: str,
    amount: int,
    idempotency_key: str,
    reference: str = "",
    endpoint: str = "",
    shortfall: int = 0,
    metadata: dict | None = None,
    release_held: int = 0,
) -> LedgerEntry:
    """Move ``amount`` (signed) on a locked account and append its ledger entry.

    The UPDATE is conditional, so even a caller that forgot the lock could never drop the
    balance below what is held: ``balance + amount >= held - release_held``.
    """
    updated = CreditAccount.objects.filter(
        pk=account.pk, balance__gte=F("held") - release_held - amount
    ).update(
        balance=F("balance") + amount,
        held=F("held") - release_held,
        updated_at=timezone.now(),
    )
    if updated != 1:
        raise InsufficientCredits(balance=account.balance, available=account.available, cost=-amount)
    account.balance += amount
    account.held -= release_held
    if amount < 0 and account.balance == 0:  # this movement spent the last credit
        event_emit(workspace=account.workspace_id, type="credits.depleted", data={"balance": 0})
    return LedgerEntry.objects.create(
        workspace_id=account.workspace_id,
        kind=kind,
        amount=amount,
        balance_after=account.balance,
        idempotency_key=idempotency_key,
        reference=reference[:255],
        endpoint=endpoint,
        shortfall=shortfall,
        metadata=metadata or {},
    )


def _low_balance_check(*, account: CreditAccount, now=None) -> None:
    """Send the low-balance email once per crossing; the next purchase re-arms it."""
    if account.available >= settings.CREDITS_LOW_THRESHOLD:
        return
    armed = CreditAccount.objects.filter(pk=account.pk, low_balance_alerted_at__isnull=True).update(
        low_balance_alerted_at=now or timezone.now()
    )
    if armed:
        from ..tasks import credit_low_balance_email_task  # noqa: PLC0415 (credits.tasks imports the services: a task is queued lazily to avoid a cycle)

        workspace_id = account.workspace_id
        transaction.on_commit(lambda: credit_low_balance_email_task.delay(workspace_id))
        event_emit(workspace=workspace_id, type="credits.low", data={"available": account.available})


def _rearm_low_balance(*, account: CreditAccount) -> None:
    if account.available >= settings.CREDITS_LOW_THRESHOLD:
        CreditAccount.objects.filter(pk=account.pk).update(low_balance_alerted_at=None)


# --- grants, consumption -----------------------------------------------------------------------


def credit_grant(
    *,
    workspace: Workspace,
    amount: int,
    admin_user,
    reason: str = "",
    idempotency_key: str | None = None,
    request=None,
) -> LedgerEntry:
    """An operator gives credits to a workspace. The admin user is the entry's reference and the
    audit event's actor (recorded once: a replayed key returns the first entry)."""
    if amount <= 0:
        raise ApiError("invalid_request", "A grant must be a positive number of credits.", param="amount")
    key = idempotency_key or f"grant:{uuid.uuid4().hex}"
    with transaction.atomic():
        account = _account_locked(workspace_id=workspace.pk)
        existing = LedgerEntry.objects.filter(idempotency_key=key).first()
        if existing is not None:
            return existing
        entry = _apply(
            account=account,
            kind=LedgerEntry.Kind.GRANT,
            amount=amount,
            idempotency_key=key,
            reference=f"admin:{admin_user.pk}",
            metadata={"reason": reason[:500], "admin_email": admin_user.email}
            if reason
            else {"admin_email": admin_user.email},
        )
        _rearm_low_balance(account=account)
        audit_record(
            action="credits.granted",
            actor=admin_user,
            workspace=workspace,
            target=f"ledger_entry:{entry.pk}",
            details={"amount": amount, "reason": reason[:500], "balance_after": entry.balance_after},
            request=request,
        )
        event_emit(
            workspace=workspace,
            type="credits.granted",
            data={"amount": amount, "balance": entry.balance_after},
        )
    logger.info(
        "credit grant", extra={"workspace_id": workspace.pk, "amount": amount, "admin_id": admin_user.pk}
    )
    return entry


def credit_consume(
    *,
    workspace: Workspace,
    endpoint: str,
    idempotency_key: str,
    units: int = 0,
    reference: str = "",
    now=None,
) -> ConsumeResult:
    """Charge one call of ``endpoint``. Replaying ``idempotency_key`` returns the first result.

    Raises ``ApiError`` 400 for an unknown endpoint and ``InsufficientCredits`` when the
    available balance does not cover the cost (nothing is recorded then, so the client may
    retry the same key after buying credits).
    """
    key = f"consume:{workspace.pk}:{idempotency_key}"  # per workspace: members share the key space
    first = LedgerEntry.objects.filter(idempotency_key=key).first()
    if first is not None:
        return _replay(first, endpoint)
    cost_row = EndpointCost.objects.filter(endpoint=endpoint, is_active=True).first()
    if cost_row is None:
        raise ApiError("invalid_request", f"Unknown endpoint: {endpoint}", param="endpoint")
    cost = cost_row.cost_for(units)
    with transaction.atomic():
        account = _account_locked(workspace_id=workspace.pk)
        first = LedgerEntry.objects.filter(idempotency_key=key).first()
        if first is not None:  # a concurrent twin won the lock first
            return _replay(first, endpoint)
        if account.available < cost:
            raise InsufficientCredits(balance=account.balance, available=account.available, cost=cost)
        entry = _apply(
            account=account,
            kind=LedgerEntry.Kind.CONSUME,
            amount=-cost,
            idempotency_key=key,
            reference=reference or idempotency_key,
            endpoint=endpoint,
            metadata={"units": units} if units else {},
        )
        _low_balance_check(account=account, now=now)
    logger.info(
        "credit usage",
        extra={
            "workspace_id": workspace.pk,
            "endpoint": endpoint,
            "cost": cost,
            "balance_after": entry.balance_after,
        },
    )
    return ConsumeResult(charged=cost, balance_after=entry.balance_after, entry=entry, replayed=False)


def _replay(entry: LedgerEntry, endpoint: str) -> ConsumeResult:
    if entry.endpoint != endpoint:
        raise ApiError(
            "conflict",
            "This idempotencyKey was already used for another endpoint.",
            param="idempotencyKey",
        )
    return ConsumeResult(charged=-entry.amount, balance_after=entry.balance_after, entry=entry, replayed=True)
