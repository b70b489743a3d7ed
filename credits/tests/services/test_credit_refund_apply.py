import pytest

from accounts.models import AuditEvent
from credits.models import CreditAccount, CreditPurchase, LedgerEntry
from credits.services import credit_consume, credit_hold, credit_purchase_fulfil, credit_refund_apply

from .test_credit_purchase_fulfil import paid_session


def refund_event(*, amount_refunded, amount=7900, payment_intent="pi_cs_test_1", charge_id="ch_1"):
    return {
        "id": f"evt_refund_{amount_refunded}",
        "type": "charge.refunded",
        "data": {
            "object": {
                "id": charge_id,
                "object": "charge",
                "amount": amount,
                "amount_refunded": amount_refunded,
                "currency": "eur",
                "payment_intent": payment_intent,
                "refunded": amount_refunded == amount,
                "metadata": {},
            }
        },
    }


@pytest.fixture
def purchased(catalogue, workspace):
    """The workspace, after buying pack_500 (500 credits for 79 €)."""
    credit_purchase_fulfil(session=paid_session(workspace), event_id="evt_1")
    return workspace


def _balance(workspace):
    return CreditAccount.objects.get(workspace=workspace).balance


@pytest.mark.django_db
def test_full_refund_reverses_the_pack(purchased):
    entry = credit_refund_apply(event=refund_event(amount_refunded=7900))

    assert (entry.kind, entry.amount, entry.balance_after, entry.shortfall) == ("refund", -500, 0, 0)
    assert _balance(purchased) == 0
    (event,) = AuditEvent.objects.filter(action="credits.refunded")
    assert (event.workspace_id, event.actor_id) == (purchased.pk, None)
    assert (event.details["credits"], event.details["shortfall"]) == (500, 0)


@pytest.mark.django_db
def test_partial_refunds_are_proportional_and_cumulative(purchased):
    credit_refund_apply(event=refund_event(amount_refunded=1975))  # a quarter: 125 credits
    assert _balance(purchased) == 375

    credit_refund_apply(event=refund_event(amount_refunded=1975))  # same event again: nothing
    assert _balance(purchased) == 375

    credit_refund_apply(event=refund_event(amount_refunded=3950))  # now half in total: 125 more
    assert _balance(purchased) == 250
    assert CreditPurchase.objects.get().refunded_credits == 250
    assert LedgerEntry.objects.filter(kind="refund").count() == 2


@pytest.mark.django_db
def test_refund_of_spent_credits_clamps_at_zero_and_flags_the_shortfall(purchased, caplog):
    for n in range(90):  # 450 of the 500 credits spent
        credit_consume(workspace=purchased, endpoint="/api/ai/generate", idempotency_key=f"k{n}")
    caplog.set_level("WARNING", logger="tollgate.credits")

    entry = credit_refund_apply(event=refund_event(amount_refunded=7900))

    assert (entry.amount, entry.balance_after, entry.shortfall) == (-50, 0, 450)
    purchase = CreditPurchase.objects.get()
    assert (purchase.refunded_credits, purchase.refund_shortfall) == (500, 450)
    assert _balance(purchased) == 0
    assert any("shortfall" in r.getMessage() for r in caplog.records)


@pytest.mark.django_db
def test_refund_leaves_credits_held_by_calls_in_flight(purchased):
    credit_hold(workspace=purchased, amount=100)

    entry = credit_refund_apply(event=refund_event(amount_refunded=7900))

    account = CreditAccount.objects.get(workspace=purchased)
    assert (account.balance, account.held) == (100, 100)
    assert (entry.amount, entry.shortfall) == (-400, 100)


@pytest.mark.django_db
def test_refund_of_a_charge_that_is_not_a_credit_pack_is_ignored(purchased):
    assert credit_refund_apply(event=refund_event(amount_refunded=4900, payment_intent="pi_plan")) is None
    assert _balance(purchased) == 500
