"""Credit reads used by other apps: pack revenue in a period, the workspace delete guard."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from accounts.registry import workspace_delete_blockers
from credits.models import CreditPurchase, LedgerEntry
from credits.selectors import credit_revenue_minor_get, credit_workspace_delete_guard
from credits.services import credit_consume

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("midday")]


def _purchase(*, workspace, amount_minor: int, currency: str = "eur", credits: int = 100) -> CreditPurchase:
    """A paid pack as credits fulfils it: the purchase row and its ledger entry."""
    entry = LedgerEntry.objects.create(
        workspace=workspace,
        kind=LedgerEntry.Kind.PURCHASE,
        amount=credits,
        balance_after=credits,
        idempotency_key=f"test-purchase:{uuid.uuid4().hex}",
    )
    return CreditPurchase.objects.create(
        workspace=workspace,
        checkout_reference=f"cs_{uuid.uuid4().hex}",
        credits=credits,
        amount_minor=amount_minor,
        currency=currency,
        ledger_entry=entry,
    )


def _day(offset: int = 0) -> datetime:
    today = timezone.now().date() + timedelta(days=offset)
    return datetime.combine(today, datetime.min.time(), tzinfo=UTC)


def test_credit_revenue_in_period(workspace):
    _purchase(workspace=workspace, amount_minor=1900)
    _purchase(workspace=workspace, amount_minor=500, currency="usd")
    assert credit_revenue_minor_get(start=_day(), end=_day(1)) == {"eur": 1900, "usd": 500}
    assert credit_revenue_minor_get(start=_day(-5), end=_day()) == {}
    assert credit_revenue_minor_get() == {"eur": 1900, "usd": 500}  # all time


def test_a_workspace_with_credits_cannot_be_deleted(catalogue, workspace, other_workspace, fund):
    assert credit_workspace_delete_guard(workspace=workspace) is None  # no account row yet
    fund(workspace, 5)
    fund(other_workspace, 5)
    credit_consume(workspace=other_workspace, endpoint="/api/ai/generate", idempotency_key="all")

    assert credit_workspace_delete_guard(workspace=workspace) == "Credits remain (5)"
    assert "Credits remain (5)" in workspace_delete_blockers(workspace=workspace)  # registered in ready()
    assert credit_workspace_delete_guard(workspace=other_workspace) is None  # spent to 0
