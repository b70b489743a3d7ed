"""Credit reads used by other apps: pack revenue in a period."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from credits.models import CreditPurchase, LedgerEntry
from credits.selectors import credit_revenue_minor_get

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("midday")]


def _purchase(*, user, amount_minor: int, currency: str = "eur", credits: int = 100) -> CreditPurchase:
    """A paid pack as credits fulfils it: the purchase row and its ledger entry."""
    entry = LedgerEntry.objects.create(
        user=user,
        kind=LedgerEntry.Kind.PURCHASE,
        amount=credits,
        balance_after=credits,
        idempotency_key=f"test-purchase:{uuid.uuid4().hex}",
    )
    return CreditPurchase.objects.create(
        user=user,
        checkout_reference=f"cs_{uuid.uuid4().hex}",
        credits=credits,
        amount_minor=amount_minor,
        currency=currency,
        ledger_entry=entry,
    )


def _day(offset: int = 0) -> datetime:
    today = timezone.now().date() + timedelta(days=offset)
    return datetime.combine(today, datetime.min.time(), tzinfo=UTC)


def test_credit_revenue_in_period(user):
    _purchase(user=user, amount_minor=1900)
    _purchase(user=user, amount_minor=500, currency="usd")
    assert credit_revenue_minor_get(start=_day(), end=_day(1)) == {"eur": 1900, "usd": 500}
    assert credit_revenue_minor_get(start=_day(-5), end=_day()) == {}
    assert credit_revenue_minor_get() == {"eur": 1900, "usd": 500}  # all time
