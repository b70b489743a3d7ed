import pytest
from django.core.management import call_command

from credits.models import CreditAccount
from credits.services import credit_consume, credit_hold, credit_ledger_reconcile


@pytest.mark.django_db
def test_consistent_ledgers_report_no_drift(catalogue, user, other_user, fund, capsys):
    fund(user, 30)
    fund(other_user, 7)
    credit_consume(user=user, endpoint="/api/ai/generate", idempotency_key="k")
    credit_hold(user=user, amount=4)

    assert credit_ledger_reconcile() == []
    call_command("credits_reconcile")
    assert "no drift" in capsys.readouterr().out


@pytest.mark.django_db
def test_drifted_balance_and_holds_are_reported(user, other_user, fund, capsys):
    fund(user, 30)
    fund(other_user, 10)
    CreditAccount.objects.filter(user=user).update(balance=31)  # written behind the services' back
    CreditAccount.objects.filter(user=other_user).update(held=2)

    drifts = {d.user_id: d for d in credit_ledger_reconcile()}

    assert (drifts[user.pk].balance, drifts[user.pk].ledger_sum) == (31, 30)
    assert (drifts[other_user.pk].held, drifts[other_user.pk].open_holds) == (2, 0)
    with pytest.raises(SystemExit) as excinfo:
        call_command("credits_reconcile")
    assert excinfo.value.code == 1
    assert f"user={user.pk} balance=31 ledger_sum=30" in capsys.readouterr().out
