"""An operator takes credits back from a workspace (the customer page's "revoke credits").

A correction is a new ledger entry, never an edit: an ``adjustment`` entry with a negative
amount, drawn from the lots in burn order (promotional first) through the ledger's own locked
burn, so the balance, the ledger and the lots stay equal. Credits held by calls in flight are
not available to take.
"""

from __future__ import annotations

import logging
import uuid

from django.db import transaction

from accounts.services import audit_record
from core.exceptions import ApiError

from ..models import LedgerEntry
from .ledger import _account_locked, _burn

logger = logging.getLogger("tollgate.credits")


def credit_revoke(
    *, workspace, amount: int, admin_user, reason: str, idempotency_key: str | None = None, request=None
) -> LedgerEntry:
    """Debit ``amount`` credits with an ``adjustment`` entry; refused (400) above the available
    balance. The operator is the entry's reference and the audit event's actor; a replayed key
    returns the first entry."""
    reason = (reason if isinstance(reason, str) else "").strip()
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise ApiError(
            "invalid_request", "A revocation must be a positive number of credits.", param="amount"
        )
    if not reason:
        raise ApiError("invalid_request", "Say why the credits are taken back.", param="reason")
    key = idempotency_key or f"revoke:{uuid.uuid4().hex}"
    with transaction.atomic():
        account = _account_locked(workspace_id=workspace.pk)
        existing = LedgerEntry.objects.filter(idempotency_key=key).first()
        if existing is not None:
            return existing
        if amount > account.available:
            raise ApiError(
                "invalid_request",
                f"Only {account.available} credits are available to take back "
                f"(balance {account.balance}, {account.held} held by calls in flight).",
                param="amount",
            )
        entry = _burn(
            account=account,
            kind=LedgerEntry.Kind.ADJUSTMENT,
            amount=amount,
            idempotency_key=key,
            reference=f"admin:{admin_user.pk}",
            metadata={"reason": reason[:500], "admin_email": admin_user.email},
        )
        audit_record(
            action="credits.revoked",
            actor=admin_user,
            workspace=workspace,
            target=f"ledger_entry:{entry.pk}",
            details={"amount": amount, "reason": reason[:500], "balance_after": account.balance},
            request=request,
        )
    logger.info(
        "credit revoke", extra={"workspace_id": workspace.pk, "amount": amount, "admin_id": admin_user.pk}
    )
    return entry
