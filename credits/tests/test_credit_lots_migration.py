"""The data migration that gives every balance predating lots one paid lot, run for real on
PostgreSQL: back to the schema before lots, balances written with the historical models, then
forward to the latest schema."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from accounts.models import Workspace
from credits.models import CreditLot
from credits.reconciliation import credit_ledger_drift_find
from credits.services import credit_consume, credit_lots_get
from credits.tests.factories import EndpointCostFactory, UserFactory

BEFORE_LOTS = [("credits", "0007_tenant_workspace")]

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.fixture
def old():
    """The credits schema before lots; the latest schema again afterwards."""
    apps = _migrate(BEFORE_LOTS)
    yield apps
    _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())


def _customer(old, *, movements: list[int]):
    """A workspace (the accounts tables are at their latest schema) with credits as the schema
    before lots stored them."""
    workspace = UserFactory().personal_workspace
    email = workspace.personal_owner.email
    balance = 0
    for index, amount in enumerate(movements):
        balance += amount
        old.get_model("credits", "LedgerEntry").objects.create(
            workspace_id=workspace.pk,
            kind="purchase" if amount > 0 else "consume",
            amount=amount,
            balance_after=balance,
            idempotency_key=f"{email}:{index}",
        )
    old.get_model("credits", "CreditAccount").objects.create(workspace_id=workspace.pk, balance=balance)
    return workspace.pk


def test_each_existing_balance_becomes_one_paid_lot_that_never_expires(old):
    rich = _customer(old, movements=[500, -20, 100, -7])
    spent = _customer(old, movements=[100, -100])

    _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())

    (lot,) = CreditLot.objects.filter(workspace_id=rich)
    assert (lot.kind, lot.amount, lot.remaining, lot.expires_at, lot.source_entry_id) == (
        "paid",
        573,
        573,
        None,
        None,
    )
    assert not CreditLot.objects.filter(workspace_id=spent).exists()
    assert credit_ledger_drift_find(now=lot.created_at) == []

    EndpointCostFactory(endpoint="/api/test/five", per_call=5)
    workspace = Workspace.objects.get(pk=rich)
    result = credit_consume(workspace=workspace, endpoint="/api/test/five", idempotency_key="after")
    assert (result.charged, result.balance_after, result.entry.metadata["lot_id"]) == (5, 568, lot.pk)
    assert [lot.remaining for lot in credit_lots_get(workspace=workspace)] == [568]
