"""Property: any sequence of grants, consumptions, purchases, refunds and holds keeps
``balance == sum(ledger) >= 0`` and ``0 <= held <= balance``."""

import pytest
from django.db.models import Sum
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from credits.models import CreditAccount, CreditHold, LedgerEntry
from credits.services import (
    InsufficientCredits,
    credit_consume,
    credit_grant,
    credit_hold,
    credit_hold_release,
    credit_hold_settle,
    credit_purchase_fulfil,
    credit_refund_apply,
)
from credits.tests.factories import EndpointCostFactory, StaffFactory, UserFactory

operations = st.lists(
    st.one_of(
        st.tuples(st.just("grant"), st.integers(1, 60)),
        st.tuples(st.just("consume"), st.integers(0, 40)),
        st.tuples(st.just("purchase"), st.integers(1, 80)),
        st.tuples(st.just("refund"), st.integers(0, 100)),  # percent of the last purchase refunded
        st.tuples(st.just("hold"), st.integers(1, 30)),
        st.tuples(st.just("settle"), st.integers(0, 35)),
        st.tuples(st.just("release"), st.just(0)),
    ),
    max_size=25,
)


@pytest.mark.django_db
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations)
def test_balance_always_equals_the_ledger_sum_and_never_goes_negative(ops):
    workspace = UserFactory().personal_workspace
    admin = StaffFactory()
    purchases: list[tuple[str, int]] = []
    holds: list = []
    for step, (op, value) in enumerate(ops):
        key = f"{workspace.pk}-{step}"
        try:
            if op == "grant":
                credit_grant(workspace=workspace, amount=value, admin_user=admin)
            elif op == "consume":
                EndpointCostFactory(endpoint=f"/cost/{value}", per_call=value)
                credit_consume(workspace=workspace, endpoint=f"/cost/{value}", idempotency_key=key)
            elif op == "purchase":
                session_id = f"cs_{key}"
                credit_purchase_fulfil(
                    session={
                        "id": session_id,
                        "payment_status": "paid",
                        "payment_intent": f"pi_{key}",
                        "amount_total": value * 100,
                        "metadata": {"pack": "p", "credits": str(value), "workspace_id": str(workspace.pk)},
                    }
                )
                purchases.append((f"pi_{key}", value * 100))
            elif op == "refund" and purchases:
                payment_intent, amount = purchases[-1]
                charge = {"id": f"ch_{payment_intent}", "amount": amount, "payment_intent": payment_intent}
                charge["amount_refunded"] = amount * value // 100
                credit_refund_apply(event={"data": {"object": charge}})
            elif op == "hold":
                holds.append(credit_hold(workspace=workspace, amount=value))
            elif op == "settle" and holds:
                credit_hold_settle(hold=holds.pop(), actual=value, idempotency_key=f"settle-{key}")
            elif op == "release" and holds:
                credit_hold_release(hold=holds.pop(0))
        except InsufficientCredits:
            pass  # refused movements must leave everything unchanged, checked below

        account = CreditAccount.objects.filter(workspace=workspace).first()
        balance = account.balance if account else 0
        held = account.held if account else 0
        ledger_sum = LedgerEntry.objects.filter(workspace=workspace).aggregate(s=Sum("amount"))["s"] or 0
        open_holds = (
            CreditHold.objects.filter(workspace=workspace, status="held").aggregate(s=Sum("amount"))["s"] or 0
        )
        assert balance == ledger_sum >= 0
        assert 0 <= held == open_holds <= balance
        last = LedgerEntry.objects.filter(workspace=workspace).order_by("-id").first()
        assert last is None or last.balance_after == balance
