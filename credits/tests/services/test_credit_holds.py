from datetime import timedelta

import pytest
from django.db.models import Sum
from django.utils import timezone

from credits.models import CreditAccount, CreditHold, LedgerEntry
from credits.services import (
    InsufficientCredits,
    credit_hold,
    credit_hold_release,
    credit_hold_settle,
    credit_holds_expire,
)


def _account(workspace):
    return CreditAccount.objects.get(workspace=workspace)


@pytest.mark.django_db
def test_hold_reserves_available_then_settle_charges_actual_and_releases_the_rest(workspace, fund):
    fund(workspace, 50)

    hold = credit_hold(workspace=workspace, amount=30, reference="req-1", endpoint="/api/proxy/deepseek/chat")
    assert (_account(workspace).balance, _account(workspace).held, _account(workspace).available) == (
        50,
        30,
        20,
    )

    entry = credit_hold_settle(hold=hold, actual=12, idempotency_key="proxy:req-1")

    account = _account(workspace)
    assert (account.balance, account.held) == (38, 0)
    assert (entry.kind, entry.amount, entry.balance_after) == ("consume", -12, 38)
    assert entry.endpoint == "/api/proxy/deepseek/chat"
    hold.refresh_from_db()
    assert (hold.status, hold.settled_amount, hold.ledger_entry_id) == ("settled", 12, entry.pk)


@pytest.mark.django_db
def test_hold_beyond_available_is_refused_and_available_never_goes_negative(workspace, fund):
    fund(workspace, 10)
    credit_hold(workspace=workspace, amount=8)

    with pytest.raises(InsufficientCredits) as excinfo:
        credit_hold(workspace=workspace, amount=3)

    assert (excinfo.value.balance, excinfo.value.available, excinfo.value.cost) == (10, 2, 3)
    assert CreditHold.objects.count() == 1
    assert _account(workspace).held == 8


@pytest.mark.django_db
def test_settle_is_idempotent(workspace, fund):
    fund(workspace, 20)
    hold = credit_hold(workspace=workspace, amount=10)

    first = credit_hold_settle(hold=hold, actual=7, idempotency_key="k")
    second = credit_hold_settle(hold=hold, actual=7, idempotency_key="k")

    assert first.pk == second.pk
    assert (_account(workspace).balance, _account(workspace).held) == (13, 0)


@pytest.mark.django_db
def test_settle_above_the_reservation_charges_only_the_reservation(workspace, fund):
    fund(workspace, 20)
    hold = credit_hold(workspace=workspace, amount=5)

    entry = credit_hold_settle(hold=hold, actual=9, idempotency_key="k")

    assert entry.amount == -5
    assert (_account(workspace).balance, _account(workspace).held) == (15, 0)


@pytest.mark.django_db
def test_settle_with_zero_usage_releases_and_writes_nothing(workspace, fund):
    fund(workspace, 20)
    hold = credit_hold(workspace=workspace, amount=5)

    assert credit_hold_settle(hold=hold, actual=0, idempotency_key="k") is None

    hold.refresh_from_db()
    assert hold.status == "released"
    assert (_account(workspace).balance, _account(workspace).held) == (20, 0)
    assert not LedgerEntry.objects.filter(kind="consume").exists()


@pytest.mark.django_db
def test_release_on_upstream_failure_charges_nothing_and_is_idempotent(workspace, fund):
    fund(workspace, 20)
    hold = credit_hold(workspace=workspace, amount=15)

    credit_hold_release(hold=hold)
    credit_hold_release(hold=hold)

    hold.refresh_from_db()
    assert hold.status == "released"
    assert (_account(workspace).balance, _account(workspace).held) == (20, 0)
    assert credit_hold_settle(hold=hold, actual=5, idempotency_key="late") is None
    assert _account(workspace).balance == 20


@pytest.mark.django_db
def test_a_settled_hold_cannot_be_released(workspace, fund):
    fund(workspace, 20)
    hold = credit_hold(workspace=workspace, amount=10)
    credit_hold_settle(hold=hold, actual=10, idempotency_key="k")

    credit_hold_release(hold=hold)

    assert (_account(workspace).balance, _account(workspace).held) == (10, 0)


@pytest.mark.django_db
def test_stale_holds_are_expired(workspace, fund):
    fund(workspace, 20)
    old = credit_hold(workspace=workspace, amount=5)
    fresh = credit_hold(workspace=workspace, amount=4)
    CreditHold.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(hours=2))

    assert credit_holds_expire() == 1

    old.refresh_from_db()
    fresh.refresh_from_db()
    assert (old.status, fresh.status) == ("released", "held")
    assert _account(workspace).held == 4
    assert (
        CreditHold.objects.filter(status="held").aggregate(s=Sum("amount"))["s"] == _account(workspace).held
    )
