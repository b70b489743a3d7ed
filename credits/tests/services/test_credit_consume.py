import threading

import pytest
from django.core import mail
from django.db import connection
from django.db.models import Sum

from core.exceptions import ApiError
from credits.models import CreditAccount, EndpointCost, LedgerEntry
from credits.services import InsufficientCredits, credit_consume, credit_grant, credit_purchase_fulfil
from credits.tests.factories import EndpointCostFactory, UserFactory, seed_catalogue


def _ledger_sum(workspace):
    return LedgerEntry.objects.filter(workspace=workspace).aggregate(s=Sum("amount"))["s"] or 0


@pytest.mark.django_db
def test_consume_charges_the_endpoint_cost_and_writes_one_entry(catalogue, workspace, fund, caplog):
    fund(workspace, 12)
    caplog.set_level("INFO", logger="tollgate.credits")

    result = credit_consume(workspace=workspace, endpoint="/api/ai/generate", idempotency_key="req-1")

    assert (result.charged, result.balance_after, result.replayed) == (5, 7, False)
    account = CreditAccount.objects.get(workspace=workspace)
    assert account.balance == 7 == _ledger_sum(workspace)
    entry = LedgerEntry.objects.get(kind=LedgerEntry.Kind.CONSUME, workspace=workspace)
    assert (entry.amount, entry.endpoint, entry.balance_after) == (-5, "/api/ai/generate", 7)
    record = next(r for r in caplog.records if r.getMessage() == "credit usage")
    assert (record.workspace_id, record.endpoint, record.cost, record.balance_after) == (
        workspace.pk,
        "/api/ai/generate",
        5,
        7,
    )


@pytest.mark.django_db
def test_consume_per_units_rounds_up(workspace, fund):
    EndpointCostFactory(endpoint="/api/proxy/deepseek/chat", per_call=0, per_1000_units=2, unit="tokens")
    fund(workspace, 10)

    result = credit_consume(
        workspace=workspace, endpoint="/api/proxy/deepseek/chat", idempotency_key="k", units=1001
    )

    assert result.charged == 3  # 2 credits per 1 000 tokens: 2.002 rounds up to 3


@pytest.mark.django_db
def test_replay_returns_the_first_result_and_charges_nothing(catalogue, workspace, fund):
    fund(workspace, 20)
    first = credit_consume(workspace=workspace, endpoint="/api/ai/generate/hd", idempotency_key="same")
    credit_consume(workspace=workspace, endpoint="/api/ai/generate", idempotency_key="other")

    replay = credit_consume(workspace=workspace, endpoint="/api/ai/generate/hd", idempotency_key="same")

    assert replay.replayed is True
    assert (replay.charged, replay.balance_after) == (first.charged, first.balance_after) == (10, 10)
    assert CreditAccount.objects.get(workspace=workspace).balance == 5
    assert LedgerEntry.objects.filter(workspace=workspace, kind="consume").count() == 2


@pytest.mark.django_db
def test_idempotency_keys_are_per_workspace(catalogue, workspace, other_workspace, fund):
    fund(workspace, 10)
    fund(other_workspace, 10)
    credit_consume(workspace=workspace, endpoint="/api/ai/generate", idempotency_key="shared")

    result = credit_consume(workspace=other_workspace, endpoint="/api/ai/generate", idempotency_key="shared")

    assert result.replayed is False
    assert CreditAccount.objects.get(workspace=other_workspace).balance == 5


@pytest.mark.django_db
def test_replay_for_another_endpoint_is_a_conflict(catalogue, workspace, fund):
    fund(workspace, 20)
    credit_consume(workspace=workspace, endpoint="/api/ai/generate", idempotency_key="k1")

    with pytest.raises(ApiError) as excinfo:
        credit_consume(workspace=workspace, endpoint="/api/ai/generate/hd", idempotency_key="k1")

    assert excinfo.value.status_code == 409
    assert CreditAccount.objects.get(workspace=workspace).balance == 15


@pytest.mark.django_db
def test_insufficient_credits_records_nothing_and_the_key_can_be_retried(catalogue, workspace, fund):
    fund(workspace, 4)

    with pytest.raises(InsufficientCredits) as excinfo:
        credit_consume(workspace=workspace, endpoint="/api/ai/generate", idempotency_key="k")

    assert (excinfo.value.balance, excinfo.value.available, excinfo.value.cost) == (4, 4, 5)
    assert not LedgerEntry.objects.filter(kind="consume").exists()
    fund(workspace, 1)
    assert (
        credit_consume(workspace=workspace, endpoint="/api/ai/generate", idempotency_key="k").balance_after
        == 0
    )


@pytest.mark.django_db
def test_unknown_or_inactive_endpoint_is_a_400(catalogue, workspace, fund):
    fund(workspace, 50)
    EndpointCost.objects.filter(endpoint="/api/ai/generate/hd").update(is_active=False)

    for endpoint in ("/api/nope", "/api/ai/generate/hd"):
        with pytest.raises(ApiError) as excinfo:
            credit_consume(workspace=workspace, endpoint=endpoint, idempotency_key=endpoint)
        assert excinfo.value.status_code == 400
        assert excinfo.value.param == "endpoint"


@pytest.mark.django_db
def test_low_balance_email_once_per_crossing_rearmed_by_purchase(
    catalogue, user, workspace, member, fund, settings, django_capture_on_commit_callbacks
):
    """The email goes to the workspace's billing contacts (owners and billing members), not to
    the developer whose call crossed the threshold."""
    settings.CREDITS_LOW_THRESHOLD = 20
    accountant = member("billing")
    member("developer")
    fund(workspace, 30)

    def consume(key):
        with django_capture_on_commit_callbacks(execute=True):
            credit_consume(workspace=workspace, endpoint="/api/ai/generate", idempotency_key=key)

    consume("a")  # 25: above
    assert len(mail.outbox) == 0
    consume("b")  # 20: not below
    consume("c")  # 15: crosses
    consume("d")  # 10: still low
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == sorted([user.email, accountant.email])
    assert "15" in mail.outbox[0].body and "/credits/" in mail.outbox[0].body
    assert workspace.name in mail.outbox[0].body

    credit_purchase_fulfil(
        session={
            "id": "cs_rearm",
            "payment_status": "paid",
            "metadata": {
                "kind": "credit_pack",
                "pack": "pack_100",
                "credits": "100",
                "workspace_id": str(workspace.pk),
            },
        },
        event_id="evt_1",
    )
    for key in "efghijklmnopqrstuvwx":  # 110 → 10 crosses the threshold again
        consume(key)
    assert len(mail.outbox) == 2


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_fifty_threads_consuming_three_from_a_hundred():
    seed_catalogue()
    EndpointCostFactory(endpoint="/api/test/three", per_call=3)
    workspace = UserFactory().personal_workspace
    admin = UserFactory(is_staff=True)

    credit_grant(workspace=workspace, amount=100, admin_user=admin)
    results: list[str] = []
    barrier = threading.Barrier(50)

    def worker(n: int) -> None:
        try:
            barrier.wait()
            credit_consume(workspace=workspace, endpoint="/api/test/three", idempotency_key=f"t-{n}")
            results.append("ok")
        except InsufficientCredits:
            results.append("402")
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert results.count("ok") == 33
    assert results.count("402") == 17
    account = CreditAccount.objects.get(workspace=workspace)
    assert account.balance == 1
    assert LedgerEntry.objects.filter(workspace=workspace, kind="consume").count() == 33
    assert _ledger_sum(workspace) == account.balance
    balances = sorted(
        LedgerEntry.objects.filter(workspace=workspace, kind="consume").values_list(
            "balance_after", flat=True
        )
    )
    assert balances == list(range(1, 100, 3))  # every intermediate balance exactly once


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_replays_of_one_key_charge_once():
    seed_catalogue()
    workspace = UserFactory().personal_workspace

    credit_grant(workspace=workspace, amount=100, admin_user=UserFactory(is_staff=True))
    results = []
    barrier = threading.Barrier(20)

    def worker() -> None:
        try:
            barrier.wait()
            results.append(
                credit_consume(workspace=workspace, endpoint="/api/ai/generate", idempotency_key="dup")
            )
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(results) == 20
    assert sum(not r.replayed for r in results) == 1
    assert {r.balance_after for r in results} == {95}
    assert CreditAccount.objects.get(workspace=workspace).balance == 95
