"""The balance and its ledger: the one place a balance changes, and the movements that need no
payment (operator grants, consumption of a priced endpoint).

Every movement runs inside one transaction that first locks the workspace's ``CreditAccount`` row
(``core.locks.lock_objects``), then changes the balance with a conditional ``UPDATE … F()``
and moves its lots (``lots``): credits added append one ``LedgerEntry`` and open one lot,
credits taken append one entry per lot drawn from. The unique idempotency key of the (first)
entry makes replays no-ops.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import Workspace
from accounts.services import audit_record
from core.exceptions import ApiError
from core.locks import lock_objects
from notifications.services import event_emit

from ..models import CreditAccount, CreditLot, EndpointCost, LedgerEntry
from .alerts import credit_balance_alerts_check, credit_balance_alerts_resolve
from .auto_top_up import auto_top_up_trigger
from .lots import _lot_open, _lots_burn

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


# The debits that may buy an auto top-up: spending and expiry. Never a refund or an operator's
# adjustment: taking credits back must not charge the customer's card.
AUTO_TOP_UP_KINDS = frozenset({LedgerEntry.Kind.CONSUME, LedgerEntry.Kind.EXPIRY})


def _balance_move(
    *, account: CreditAccount, amount: int, release_held: int = 0, may_top_up: bool = False
) -> None:
    """Move the locked account's balance by ``amount`` (signed) and release ``release_held``;
    ``may_top_up``: a debit that may start an auto top-up (``AUTO_TOP_UP_KINDS``).

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
    # The workspace's balance thresholds (credits.low / credits.depleted, and their resolved
    # events after a top-up): fired after commit, once until resolved.
    if amount < 0:
        credit_balance_alerts_check(
            workspace_id=account.workspace_id, balance=account.balance, available=account.available
        )
        # Auto top-up: the locked row carries the threshold while it is on (no query when off).
        below = account.auto_top_up_below
        if may_top_up and below is not None and account.available < below:
            auto_top_up_trigger(workspace_id=account.workspace_id)
    elif amount > 0:
        credit_balance_alerts_resolve(
            workspace_id=account.workspace_id, balance=account.balance, available=account.available
        )


def _apply(
    *,
    account: CreditAccount,
    kind: str,
    amount: int,
    idempotency_key: str,
    reference: str = "",
    shortfall: int = 0,
    metadata: dict | None = None,
    lot_kind: str = CreditLot.Kind.PAID,
    expires_at=None,
    lot_reason: str = "",
) -> LedgerEntry:
    """Add ``amount`` (>= 0) credits to a locked account: one ledger entry, and the lot it
    opens (``lot_kind``, ``expires_at``). Zero (a refund that could take nothing back) writes
    the entry alone."""
    if amount < 0:
        raise ValueError("_apply adds credits; _burn takes them.")
    _balance_move(account=account, amount=amount)
    entry = LedgerEntry.objects.create(
        workspace_id=account.workspace_id,
        kind=kind,
        amount=amount,
        balance_after=account.balance,
        idempotency_key=idempotency_key,
        reference=reference[:255],
        shortfall=shortfall,
        metadata=metadata or {},
    )
    if amount:
        _lot_open(entry=entry, kind=lot_kind, expires_at=expires_at, reason=lot_reason)
    return entry


def _burn(
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
    first_lot_id: int | None = None,
    only_lot_id: int | None = None,
    now=None,
) -> LedgerEntry:
    """Take ``amount`` (> 0) credits from a locked account, drawn from its lots in burn order:
    one ledger row per lot drawn from (``_lots_burn``). Returns the first row, which carries
    ``idempotency_key`` itself; a split burn's first row also records its ``burn_total``."""
    balance_before = account.balance
    _balance_move(
        account=account, amount=-amount, release_held=release_held, may_top_up=kind in AUTO_TOP_UP_KINDS
    )
    entries = _lots_burn(  # raises LotsShortfall (rolling the balance move back) on drift
        workspace_id=account.workspace_id,
        amount=amount,
        balance_before=balance_before,
        kind=kind,
        idempotency_key=idempotency_key,
        reference=reference,
        endpoint=endpoint,
        shortfall=shortfall,
        metadata=metadata,
        first_lot_id=first_lot_id,
        only_lot_id=only_lot_id,
        now=now,
    )
    return entries[0]


def _burn_total(entry: LedgerEntry) -> tuple[int, int]:
    """(credits taken, balance after) of the whole burn whose first row is ``entry``."""
    taken = int(entry.metadata.get("burn_total", -entry.amount))
    return taken, entry.balance_after - taken - entry.amount


# --- grants, consumption -----------------------------------------------------------------------


def credit_grant(
    *,
    workspace: Workspace,
    amount: int,
    admin_user,
    reason: str = "",
    expires_at=None,
    idempotency_key: str | None = None,
    request=None,
    now=None,
) -> LedgerEntry:
    """An operator gives promotional credits to a workspace, optionally expiring at
    ``expires_at`` (they are spent before paid credits, the earliest expiry first). The admin
    user is the entry's reference and the audit event's actor (recorded once: a replayed key
    returns the first entry); the entry's ``lot`` is the promotional lot it opened."""
    if amount <= 0:
        raise ApiError("invalid_request", "A grant must be a positive number of credits.", param="amount")
    if expires_at is not None and expires_at <= (now or timezone.now()):
        raise ApiError("invalid_request", "A grant's expiry must be in the future.", param="expires_at")
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
            metadata={
                **({"reason": reason[:500]} if reason else {}),
                "admin_email": admin_user.email,
                **({"expires_at": expires_at.isoformat()} if expires_at else {}),
            },
            lot_kind=CreditLot.Kind.PROMOTIONAL,
            expires_at=expires_at,
            lot_reason=reason,
        )
        expiry = {"expires_at": expires_at.isoformat()} if expires_at else {}
        audit_record(
            action="credits.granted",
            actor=admin_user,
            workspace=workspace,
            target=f"ledger_entry:{entry.pk}",
            details={
                "amount": amount,
                "reason": reason[:500],
                "balance_after": entry.balance_after,
                **expiry,
            },
            request=request,
        )
        event_emit(
            workspace=workspace,
            type="credits.granted",
            data={"amount": amount, "balance": entry.balance_after, **expiry},
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
        if cost == 0:  # a free call: nothing to draw from any lot
            entry = LedgerEntry.objects.create(
                workspace_id=workspace.pk,
                kind=LedgerEntry.Kind.CONSUME,
                amount=0,
                balance_after=account.balance,
                idempotency_key=key,
                reference=(reference or idempotency_key)[:255],
                endpoint=endpoint,
                metadata={"units": units} if units else {},
            )
        else:
            entry = _burn(
                account=account,
                kind=LedgerEntry.Kind.CONSUME,
                amount=cost,
                idempotency_key=key,
                reference=reference or idempotency_key,
                endpoint=endpoint,
                metadata={"units": units} if units else {},
                now=now,
            )
        balance_after = account.balance
    logger.info(
        "credit usage",
        extra={
            "workspace_id": workspace.pk,
            "endpoint": endpoint,
            "cost": cost,
            "balance_after": balance_after,
        },
    )
    return ConsumeResult(charged=cost, balance_after=balance_after, entry=entry, replayed=False)


def _replay(entry: LedgerEntry, endpoint: str) -> ConsumeResult:
    if entry.endpoint != endpoint:
        raise ApiError(
            "conflict",
            "This idempotencyKey was already used for another endpoint.",
            param="idempotencyKey",
        )
    charged, balance_after = _burn_total(entry)
    return ConsumeResult(charged=charged, balance_after=balance_after, entry=entry, replayed=True)
