import pytest
from django.core.management import call_command
from django.utils import timezone

from credits.models import CreditAccount, CreditLot
from credits.reconciliation import credit_ledger_drift_find
from credits.services import credit_consume, credit_hold, credit_ledger_reconcile


@pytest.mark.django_db
def test_consistent_ledgers_report_no_drift(catalogue, workspace, other_workspace, fund, capsys):
    fund(workspace, 30)
    fund(other_workspace, 7)
    credit_consume(workspace=workspace, endpoint="/api/ai/generate", idempotency_key="k")
    credit_hold(workspace=workspace, amount=4)

    assert credit_ledger_reconcile() == []
    call_command("credits_reconcile")
    assert "no drift" in capsys.readouterr().out


@pytest.mark.django_db
def test_drifted_balance_and_holds_are_reported(workspace, other_workspace, fund, capsys):
    fund(workspace, 30)
    fund(other_workspace, 10)
    CreditAccount.objects.filter(workspace=workspace).update(balance=31)  # behind the services' back
    CreditAccount.objects.filter(workspace=other_workspace).update(held=2)

    drifts = {d.workspace_id: d for d in credit_ledger_reconcile()}

    assert (drifts[workspace.pk].balance, drifts[workspace.pk].ledger_sum) == (31, 30)
    assert (drifts[other_workspace.pk].held, drifts[other_workspace.pk].open_holds) == (2, 0)
    with pytest.raises(SystemExit) as excinfo:
        call_command("credits_reconcile")
    assert excinfo.value.code == 1
    assert f"workspace={workspace.pk} balance=31 ledger_sum=30" in capsys.readouterr().out


@pytest.mark.django_db
def test_lots_that_disagree_with_the_ledger_are_reported(workspace, fund, capsys):
    fund(workspace, 30)
    CreditLot.objects.filter(workspace=workspace).update(remaining=25)  # behind the services' back

    (drift,) = credit_ledger_reconcile()

    assert (drift.workspace_id, drift.balance, drift.ledger_sum, drift.lots_sum) == (workspace.pk, 30, 30, 25)
    with pytest.raises(SystemExit):
        call_command("credits_reconcile")
    assert f"workspace={workspace.pk} balance=30 ledger_sum=30 held=0 open_holds=0 lots_sum=25" in (
        capsys.readouterr().out
    )


@pytest.mark.django_db
def test_the_nightly_check_names_the_drifted_workspace(workspace, fund):
    fund(workspace, 30)
    CreditAccount.objects.filter(workspace=workspace).update(balance=29)

    (finding,) = credit_ledger_drift_find(now=timezone.now())

    assert (finding.source, finding.subject) == ("credits.ledger", f"workspace:{workspace.pk}")
    assert (finding.expected, finding.actual) == ("30", "29")
    assert finding.detail["workspace_id"] == workspace.pk
