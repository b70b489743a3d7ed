"""Credit lots: burn order, one ledger row per lot drawn from, expiry, refunds from their own
lot, and ``balance == Σ ledger == Σ lots`` after each movement."""

import threading
from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.db.models import Sum
from django.utils import timezone

from credits.models import CreditAccount, CreditHold, CreditLot, LedgerEntry
from credits.reconciliation import credit_ledger_drift_find
from credits.services import (
    InsufficientCredits,
    LotsShortfall,
    credit_consume,
    credit_grant,
    credit_hold,
    credit_hold_release,
    credit_hold_settle,
    credit_lot_expire,
    credit_lots_expire,
    credit_lots_get,
    credit_purchase_fulfil,
    credit_refund_apply,
)
from credits.tasks import credit_lots_expire_task
from credits.tests.factories import EndpointCostFactory, StaffFactory, UserFactory, seed_catalogue

from .test_credit_purchase_fulfil import paid_session
from .test_credit_refund_apply import refund_event


def _sums(workspace) -> tuple[int, int, int]:
    """(cached balance, Σ ledger, Σ lots): the three must agree."""
    balance = CreditAccount.objects.get(workspace=workspace).balance
    ledger = LedgerEntry.objects.filter(workspace=workspace).aggregate(s=Sum("amount"))["s"] or 0
    lots = CreditLot.objects.filter(workspace=workspace).aggregate(s=Sum("remaining"))["s"] or 0
    return balance, ledger, lots


def _consistent(workspace) -> int:
    balance, ledger, lots = _sums(workspace)
    assert balance == ledger == lots
    return balance


def _lot(entry) -> CreditLot:
    return CreditLot.objects.get(source_entry=entry)


def _buy(workspace, *, session_id="cs_test_1", pack="pack_500", credits="500", amount=7900, days=None):
    session = paid_session(workspace, session_id=session_id, pack=pack, credits=credits, amount=amount)
    if days:
        session["metadata"]["expires_after_days"] = str(days)
    return credit_purchase_fulfil(session=session, event_id=f"evt_{session_id}")


@pytest.mark.django_db
def test_a_settle_burns_promotional_lots_earliest_expiry_first_then_paid(catalogue, workspace, admin_user):
    now = timezone.now()
    paid = _lot(_buy(workspace))  # 500 paid, never expires
    late = _lot(
        credit_grant(
            workspace=workspace, amount=10, admin_user=admin_user, expires_at=now + timedelta(days=30)
        )
    )
    soon = _lot(
        credit_grant(workspace=workspace, amount=5, admin_user=admin_user, expires_at=now + timedelta(days=2))
    )
    forever = _lot(credit_grant(workspace=workspace, amount=3, admin_user=admin_user, reason="goodwill"))
    assert [lot.pk for lot in credit_lots_get(workspace=workspace)] == [soon.pk, late.pk, forever.pk, paid.pk]

    hold = credit_hold(workspace=workspace, amount=25)
    first = credit_hold_settle(hold=hold, actual=20, idempotency_key="proxy-call:1")

    rows = list(LedgerEntry.objects.filter(kind="consume").order_by("id"))
    assert [(row.metadata["lot_id"], row.amount, row.balance_after) for row in rows] == [
        (soon.pk, -5, 513),
        (late.pk, -10, 503),
        (forever.pk, -3, 500),
        (paid.pk, -2, 498),
    ]
    assert [row.idempotency_key for row in rows] == [
        "proxy-call:1",
        f"proxy-call:1:lot:{late.pk}",
        f"proxy-call:1:lot:{forever.pk}",
        f"proxy-call:1:lot:{paid.pk}",
    ]
    assert first == rows[0] and (first.metadata["burn_total"], first.metadata["burn_parts"]) == (20, 4)
    hold.refresh_from_db()
    assert (hold.status, hold.ledger_entry_id, hold.settled_amount) == ("settled", rows[0].pk, 20)
    assert [lot.remaining for lot in CreditLot.objects.order_by("pk")] == [498, 0, 0, 0]
    assert _consistent(workspace) == 498
    assert CreditAccount.objects.get(workspace=workspace).held == 0

    assert credit_hold_settle(hold=hold, actual=20, idempotency_key="proxy-call:1") == rows[0]  # replay
    assert LedgerEntry.objects.filter(kind="consume").count() == 4


@pytest.mark.django_db
def test_paid_lots_burn_the_one_expiring_first_then_the_oldest(catalogue, workspace):
    older = _lot(_buy(workspace, session_id="cs_a", pack="pack_100", credits="100", amount=1900))
    expiring = _lot(_buy(workspace, session_id="cs_b", pack="pack_100", credits="100", amount=1900, days=30))
    newer = _lot(_buy(workspace, session_id="cs_c", pack="pack_100", credits="100", amount=1900))

    assert [lot.pk for lot in credit_lots_get(workspace=workspace)] == [expiring.pk, older.pk, newer.pk]
    assert expiring.expires_at is not None and older.expires_at is None


@pytest.mark.django_db
def test_a_replayed_consume_of_a_split_burn_answers_the_whole_charge(catalogue, workspace, fund):
    EndpointCostFactory(endpoint="/api/test/seven", per_call=7)
    fund(workspace, 4)
    _buy(workspace)

    first = credit_consume(workspace=workspace, endpoint="/api/test/seven", idempotency_key="render-1")
    replay = credit_consume(workspace=workspace, endpoint="/api/test/seven", idempotency_key="render-1")

    assert (first.charged, first.balance_after, first.replayed) == (7, 497, False)
    assert (replay.charged, replay.balance_after, replay.replayed) == (7, 497, True)
    assert LedgerEntry.objects.filter(kind="consume").count() == 2
    assert _consistent(workspace) == 497


@pytest.mark.django_db
def test_a_refund_takes_back_from_its_own_purchase_first(catalogue, workspace, fund):
    EndpointCostFactory(endpoint="/api/test/ten", per_call=10)
    big = _lot(_buy(workspace))  # 500, never expires
    fund(workspace, 50)  # promotional, spent first
    small = _lot(
        _buy(workspace, session_id="cs_test_2", pack="pack_100", credits="100", amount=1900, days=30)
    )
    for n in range(8):  # 80: the 50 promotional, then 30 of the expiring paid lot
        credit_consume(workspace=workspace, endpoint="/api/test/ten", idempotency_key=f"k{n}")
    small.refresh_from_db()
    assert small.remaining == 70

    first = credit_refund_apply(
        event=refund_event(amount_refunded=1900, amount=1900, payment_intent="pi_cs_test_2")
    )

    rows = list(LedgerEntry.objects.filter(kind="refund").order_by("id"))
    assert [(row.metadata["lot_id"], row.amount) for row in rows] == [(small.pk, -70), (big.pk, -30)]
    assert first == rows[0] and rows[0].idempotency_key.startswith("refund:")
    assert [CreditLot.objects.get(pk=pk).remaining for pk in (small.pk, big.pk)] == [0, 470]
    assert _consistent(workspace) == 470


@pytest.mark.django_db
def test_a_refund_of_an_unspent_pack_leaves_the_other_lots_alone(catalogue, workspace, fund):
    fund(workspace, 50)
    big = _lot(_buy(workspace))

    credit_refund_apply(event=refund_event(amount_refunded=7900))

    big.refresh_from_db()
    assert big.remaining == 0
    assert [lot.remaining for lot in credit_lots_get(workspace=workspace)] == [50]
    assert _consistent(workspace) == 50


@pytest.mark.django_db
def test_expiry_writes_its_own_entry_and_keeps_balance_ledger_and_lots_equal(
    catalogue, workspace, admin_user
):
    start = timezone.now()
    _buy(workspace, session_id="cs_p", pack="pack_100", credits="100", amount=1900)
    promo = _lot(
        credit_grant(
            workspace=workspace,
            amount=30,
            admin_user=admin_user,
            reason="launch",
            expires_at=start + timedelta(days=1),
        )
    )
    credit_hold_settle(hold=credit_hold(workspace=workspace, amount=10), actual=10, idempotency_key="c1")

    with time_machine.travel(start + timedelta(hours=23), tick=False):
        assert credit_lots_expire() == 0  # not yet
    with time_machine.travel(start + timedelta(days=1, minutes=5), tick=False):
        assert credit_lots_expire() == 1

    (entry,) = LedgerEntry.objects.filter(kind="expiry")
    assert (entry.amount, entry.balance_after, entry.idempotency_key) == (-20, 100, f"expiry:lot:{promo.pk}")
    assert entry.metadata["lot_id"] == promo.pk
    promo.refresh_from_db()
    assert promo.remaining == 0 and promo.expired_at is not None
    assert _consistent(workspace) == 100
    assert credit_ledger_drift_find(now=timezone.now()) == []


@pytest.mark.django_db
def test_the_expiry_task_is_idempotent(workspace, admin_user):
    lot = _lot(
        credit_grant(
            workspace=workspace,
            amount=15,
            admin_user=admin_user,
            expires_at=timezone.now() + timedelta(minutes=1),
        )
    )

    with time_machine.travel(timezone.now() + timedelta(minutes=2), tick=False):
        assert credit_lots_expire_task() == 1
        assert credit_lots_expire_task() == 0
        assert credit_lot_expire(lot_id=lot.pk) is None

    assert LedgerEntry.objects.filter(kind="expiry").count() == 1
    assert _consistent(workspace) == 0


@pytest.mark.django_db
def test_expiry_leaves_what_open_holds_need_and_takes_the_rest_once_they_release(workspace, admin_user):
    now = timezone.now()
    promo = _lot(
        credit_grant(
            workspace=workspace, amount=10, admin_user=admin_user, expires_at=now + timedelta(hours=1)
        )
    )
    credit_grant(workspace=workspace, amount=5, admin_user=admin_user)
    hold = credit_hold(workspace=workspace, amount=12)  # needs 2 of the expiring credits

    with time_machine.travel(now + timedelta(hours=2), tick=False):
        partial = credit_lot_expire(lot_id=promo.pk)
        assert credit_lot_expire(lot_id=promo.pk) is None  # nothing more while the hold is open
        credit_hold_release(hold=hold)
        rest = credit_lot_expire(lot_id=promo.pk)

    assert (partial.amount, partial.idempotency_key) == (-3, f"expiry:lot:{promo.pk}:10")
    assert (rest.amount, rest.idempotency_key) == (-7, f"expiry:lot:{promo.pk}")
    account = CreditAccount.objects.get(workspace=workspace)
    assert (account.balance, account.held) == (5, 0)
    assert _consistent(workspace) == 5


@pytest.mark.django_db
def test_a_hold_open_at_expiry_settles_from_the_expired_lot_first(workspace, admin_user):
    now = timezone.now()
    promo = _lot(
        credit_grant(
            workspace=workspace, amount=10, admin_user=admin_user, expires_at=now + timedelta(hours=1)
        )
    )
    credit_grant(workspace=workspace, amount=5, admin_user=admin_user)
    hold = credit_hold(workspace=workspace, amount=12)

    with time_machine.travel(now + timedelta(hours=2), tick=False):
        credit_lots_expire()  # 3 expire, 7 stay for the hold
        credit_hold_settle(hold=hold, actual=12, idempotency_key="call-1")
        assert credit_lots_expire() == 0

    consumed = list(
        LedgerEntry.objects.filter(kind="consume").order_by("id").values_list("metadata__lot_id", "amount")
    )
    assert consumed[0] == (promo.pk, -7) and sum(amount for _, amount in consumed) == -12
    assert _consistent(workspace) == 0


@pytest.mark.django_db(transaction=True)
def test_concurrent_settles_drawing_from_two_lots_are_exact():
    """12 calls of 3 credits race for a 10-credit promotional lot and a 20-credit paid lot:
    exactly 10 are paid, each lot ends at zero (never below), one call is split across both."""
    seed_catalogue()
    workspace = UserFactory().personal_workspace
    admin = StaffFactory()
    promo = _lot(
        credit_grant(
            workspace=workspace, amount=10, admin_user=admin, expires_at=timezone.now() + timedelta(days=1)
        )
    )
    paid = _lot(_buy(workspace, session_id="cs_race", pack="pack_100", credits="20", amount=1900))
    barrier = threading.Barrier(12)
    results: list[str] = []

    def call(n: int) -> None:
        try:
            barrier.wait()
            try:
                hold = credit_hold(workspace=workspace, amount=3, reference=f"call {n}")
            except InsufficientCredits:
                results.append("refused")
                return
            credit_hold_settle(hold=hold, actual=3, idempotency_key=f"proxy-call:{n}")
            results.append("paid")
        finally:
            connection.close()

    threads = [threading.Thread(target=call, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(results) == ["paid"] * 10 + ["refused"] * 2
    promo.refresh_from_db()
    paid.refresh_from_db()
    assert (promo.remaining, paid.remaining) == (0, 0)
    rows = LedgerEntry.objects.filter(kind="consume")
    assert rows.count() == 11  # ten calls, one of them drawn from both lots
    assert sum(rows.filter(metadata__lot_id=promo.pk).values_list("amount", flat=True)) == -10
    # Serialized by the account lock: 3 at a time, the fourth call split 1 (promo) + 2 (paid).
    assert sorted(rows.values_list("balance_after", flat=True), reverse=True) == [
        27,
        24,
        21,
        20,
        18,
        15,
        12,
        9,
        6,
        3,
        0,
    ]
    assert _consistent(workspace) == 0
    assert CreditAccount.objects.get(workspace=workspace).held == 0
    assert not CreditHold.objects.filter(status="held").exists()


@pytest.mark.django_db
def test_reconciliation_reports_lots_that_do_not_match_the_ledger(workspace, fund):
    entry = fund(workspace, 40)
    assert credit_ledger_drift_find(now=timezone.now()) == []

    CreditLot.objects.filter(source_entry=entry).update(remaining=35)  # behind the services' back

    (finding,) = credit_ledger_drift_find(now=timezone.now())
    assert (finding.source, finding.subject, finding.expected, finding.actual) == (
        "credits.lots",
        f"workspace:{workspace.pk}",
        "40",
        "35",
    )


@pytest.mark.django_db
def test_a_purchase_of_an_expiring_pack_opens_a_paid_lot_with_its_expiry(catalogue, workspace):
    entry = _buy(workspace, days=90)

    lot = _lot(entry)
    assert (lot.kind, lot.amount, lot.remaining) == ("paid", 500, 500)
    assert timedelta(days=89, hours=23) < lot.expires_at - entry.created_at <= timedelta(days=90, minutes=1)


@pytest.mark.django_db
def test_a_settle_split_over_lots_costs_the_same_queries_as_one_from_a_single_lot(
    workspace, admin_user, django_assert_num_queries
):
    """Lots add no round trip to a credit-funded call: the lots' UPDATE and the ledger rows'
    INSERT are one statement, whatever the number of lots drawn from."""
    credit_grant(
        workspace=workspace, amount=2, admin_user=admin_user, expires_at=timezone.now() + timedelta(days=1)
    )
    credit_grant(
        workspace=workspace, amount=2, admin_user=admin_user, expires_at=timezone.now() + timedelta(days=2)
    )
    credit_grant(workspace=workspace, amount=100, admin_user=admin_user)
    single, split = credit_hold(workspace=workspace, amount=1), credit_hold(workspace=workspace, amount=6)

    # savepoint, account lock, hold lock, replay lookup, balance UPDATE, lots + ledger, hold
    # UPDATE, release savepoint
    with django_assert_num_queries(8):
        credit_hold_settle(hold=single, actual=1, idempotency_key="one")
    with django_assert_num_queries(8):
        credit_hold_settle(hold=split, actual=6, idempotency_key="three")

    assert LedgerEntry.objects.filter(kind="consume").count() == 4
    assert _consistent(workspace) == 97


@pytest.mark.django_db
def test_lots_that_do_not_cover_a_burn_refuse_it_and_change_nothing(workspace, fund):
    entry = fund(workspace, 10)
    EndpointCostFactory(endpoint="/api/test/eight", per_call=8)
    CreditLot.objects.filter(source_entry=entry).update(remaining=5)  # drift, behind the services' back

    with pytest.raises(LotsShortfall):
        credit_consume(workspace=workspace, endpoint="/api/test/eight", idempotency_key="k")

    assert CreditAccount.objects.get(workspace=workspace).balance == 10
    assert not LedgerEntry.objects.filter(kind="consume").exists()
    assert CreditLot.objects.get(source_entry=entry).remaining == 5
