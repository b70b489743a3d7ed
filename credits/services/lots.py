"""Credit lots: where each credit of a balance came from, when it expires, and the order in
which credits are spent.

A positive movement opens a lot (``_lot_open``); a negative one draws from lots in burn order
(``_lots_burn``): promotional lots with the earliest expiry first, then paid lots (earliest
expiry first, then oldest), never-expiring lots last within their kind. One ledger row per lot
drawn from, so every row says which lot paid for it (``metadata.lot_id``).

Lots change only inside the transaction that holds the workspace's ``CreditAccount`` row lock
and moves its balance, so ``balance == sum(ledger) == sum(lot.remaining)`` after every commit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection
from django.db.models import Case, F, IntegerField, Value, When
from django.utils import timezone

from ..models import CreditLot, LedgerEntry

# The burn order as SQL (kept in step with ``credit_lots_get``): an optional lot drawn before
# all others (a refund takes back from its own purchase first), promotional before paid,
# earliest expiry first with no expiry last, then the oldest.
_BURN_ORDER = (
    "CASE WHEN id = %(first_lot_id)s THEN 0 ELSE 1 END, "
    "CASE WHEN kind = 'promotional' THEN 0 ELSE 1 END, expires_at ASC NULLS LAST, id"
)

_LEDGER_COLUMNS = (
    "id",
    "workspace_id",
    "kind",
    "amount",
    "balance_after",
    "idempotency_key",
    "reference",
    "endpoint",
    "shortfall",
    "metadata",
    "created_at",
)

# One statement (the ``UPDATE`` of the lots drawn from and the ``INSERT`` of their ledger rows),
# so a burn costs the same round trips as the single ledger row it replaces. The caller holds
# the account row lock and has already moved the balance by ``amount``. The first row keeps the
# caller's idempotency key (replays find a burn by that one unique key) and, when the burn is
# split, its ``burn_total`` and ``burn_parts``; the others append ``:lot:<lot id>``.
# ``balance_after`` runs down row by row from ``balance_before``.
_BURN_SQL = f"""
WITH ordered AS (
    SELECT id, remaining,
           SUM(remaining) OVER (ORDER BY {_BURN_ORDER} ROWS UNBOUNDED PRECEDING) - remaining AS before
    FROM credits_creditlot
    WHERE workspace_id = %(workspace_id)s AND remaining > 0
      AND (%(only_lot_id)s::bigint IS NULL OR id = %(only_lot_id)s::bigint)
),
drawn AS (
    SELECT id, before, LEAST(remaining, %(amount)s - before) AS draw, COUNT(*) OVER () AS parts
    FROM ordered WHERE before < %(amount)s
),
burned AS (
    UPDATE credits_creditlot lot
    SET remaining = lot.remaining - drawn.draw, updated_at = %(now)s
    FROM drawn
    WHERE lot.id = drawn.id AND lot.remaining >= drawn.draw
    RETURNING lot.id, drawn.before, drawn.draw, drawn.parts
)
INSERT INTO credits_ledgerentry
    (workspace_id, kind, amount, balance_after, idempotency_key, reference, endpoint, shortfall,
     metadata, created_at)
SELECT %(workspace_id)s, %(kind)s, -burned.draw, %(balance_before)s - burned.before - burned.draw,
       CASE WHEN burned.before = 0 THEN %(key)s ELSE %(key)s || ':lot:' || burned.id END,
       %(reference)s, %(endpoint)s, CASE WHEN burned.before = 0 THEN %(shortfall)s ELSE 0 END,
       %(metadata)s::jsonb || jsonb_build_object('lot_id', burned.id)
           || CASE WHEN burned.before = 0 AND burned.parts > 1
                   THEN jsonb_build_object('burn_total', %(amount)s, 'burn_parts', burned.parts)
                   ELSE '{{}}'::jsonb END,
       %(now)s
FROM burned ORDER BY burned.before
RETURNING {", ".join(_LEDGER_COLUMNS)}
"""  # noqa: S608 (constant SQL; every value is a parameter)


class LotsShortfall(Exception):
    """The lots did not cover a burn the balance allowed: ``sum(lots) != balance`` (drift).
    Raised inside the caller's transaction, which rolls the balance move back."""


def _lot_open(
    *,
    entry: LedgerEntry,
    kind: str,
    expires_at: datetime | None = None,
    reason: str = "",
) -> CreditLot:
    """The lot a positive ledger entry opens (same transaction, same lock)."""
    return CreditLot.objects.create(
        workspace_id=entry.workspace_id,
        kind=kind,
        amount=entry.amount,
        remaining=entry.amount,
        expires_at=expires_at,
        reason=reason[:500],
        source_entry=entry,
    )


def _lots_burn(
    *,
    workspace_id: int,
    amount: int,
    balance_before: int,
    kind: str,
    idempotency_key: str,
    reference: str = "",
    endpoint: str = "",
    shortfall: int = 0,
    metadata: dict | None = None,
    first_lot_id: int | None = None,
    only_lot_id: int | None = None,
    now: datetime | None = None,
) -> list[LedgerEntry]:
    """Draw ``amount`` (> 0) credits from the workspace's lots in burn order and append one
    ``kind`` ledger row per lot drawn from, in that order. Raises ``LotsShortfall`` when the
    lots do not hold ``amount``."""
    params = {
        "workspace_id": workspace_id,
        "amount": amount,
        "balance_before": balance_before,
        "kind": kind,
        "key": idempotency_key,
        "reference": reference[:255],
        "endpoint": endpoint[:200],
        "shortfall": shortfall,
        "metadata": json.dumps(metadata or {}, cls=DjangoJSONEncoder),
        "first_lot_id": first_lot_id,
        "only_lot_id": only_lot_id,
        "now": now or timezone.now(),
    }
    with connection.cursor() as cursor:
        cursor.execute(_BURN_SQL, params)
        rows = cursor.fetchall()
    entries = [LedgerEntry.from_db(connection.alias, _LEDGER_COLUMNS, _decoded(row)) for row in rows]
    if sum(-entry.amount for entry in entries) != amount:
        raise LotsShortfall(f"lots of workspace {workspace_id} do not cover {amount} credits")
    return sorted(entries, key=lambda entry: -entry.balance_after)


def _decoded(row: tuple) -> tuple:
    """``from_db`` skips the field converters: Django's driver setup hands ``jsonb`` back as text."""
    index = _LEDGER_COLUMNS.index("metadata")
    if isinstance(row[index], str):
        row = (*row[:index], json.loads(row[index]), *row[index + 1 :])
    return row


def _burn_order() -> list:
    """``credit_lots_get``'s ORDER BY: the same order as ``_BURN_ORDER``."""
    is_paid = Case(
        When(kind=CreditLot.Kind.PROMOTIONAL, then=Value(0)), default=Value(1), output_field=IntegerField()
    )
    return [is_paid.asc(), F("expires_at").asc(nulls_last=True), "id"]


def credit_lots_get(*, workspace) -> list[CreditLot]:
    """The workspace's lots that still hold credits, in the order they will be spent (what the
    credits page shows: each lot's kind, what is left and when it expires). One query."""
    return list(CreditLot.objects.filter(workspace=workspace, remaining__gt=0).order_by(*_burn_order()))


@dataclass(frozen=True)
class BalanceDrift:
    """One workspace whose cached balance, ledger, holds and lots disagree."""

    workspace_id: int
    balance: int
    ledger_sum: int
    held: int
    open_holds: int
    lots_sum: int


# Every sum the credits keep, per workspace, in one statement (a nightly pass over all of them).
_RECONCILE_SQL = """
WITH ledger AS (
    SELECT workspace_id, SUM(amount) AS total FROM credits_ledgerentry GROUP BY workspace_id
), lots AS (
    SELECT workspace_id, SUM(remaining) AS total FROM credits_creditlot GROUP BY workspace_id
), holds AS (
    SELECT workspace_id, SUM(amount) AS total FROM credits_credithold
    WHERE status = 'held' GROUP BY workspace_id
), ids AS (
    SELECT workspace_id FROM credits_creditaccount
    UNION SELECT workspace_id FROM ledger UNION SELECT workspace_id FROM lots
), sums AS (
    SELECT ids.workspace_id, COALESCE(account.balance, 0) AS balance,
           COALESCE(ledger.total, 0) AS ledger_sum, COALESCE(account.held, 0) AS held,
           COALESCE(holds.total, 0) AS open_holds, COALESCE(lots.total, 0) AS lots_sum
    FROM ids
    LEFT JOIN credits_creditaccount account ON account.workspace_id = ids.workspace_id
    LEFT JOIN ledger ON ledger.workspace_id = ids.workspace_id
    LEFT JOIN holds ON holds.workspace_id = ids.workspace_id
    LEFT JOIN lots ON lots.workspace_id = ids.workspace_id
)
SELECT workspace_id, balance, ledger_sum, held, open_holds, lots_sum FROM sums
WHERE balance <> ledger_sum OR held <> open_holds OR lots_sum <> ledger_sum
ORDER BY workspace_id
"""


def credit_lots_reconcile() -> list[BalanceDrift]:
    """Every workspace where ``balance == Σ ledger == Σ lot.remaining`` or ``held == Σ open
    holds`` does not hold, in one read-only query (the nightly reconciliation reports them)."""
    with connection.cursor() as cursor:
        cursor.execute(_RECONCILE_SQL)
        return [BalanceDrift(*(int(value) for value in row)) for row in cursor.fetchall()]
