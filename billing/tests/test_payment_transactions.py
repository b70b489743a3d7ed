"""PaymentTransaction for Stripe checkouts (start → paid / failed / expired / canceled) and the
revenue selectors the operator dashboard reads."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.conf import settings

import billing.tests.stripe_events as se
from billing.models import CheckoutSession, PaymentTransaction
from billing.selectors import payment_revenue_by_plan_get, payment_revenue_get
from billing.services import (
    plan_checkout_start,
    simulated_checkout_cancel,
    stripe_event_process,
    stripe_event_store,
)
from core.money import minor_to_decimal

from . import chargily_events as ce
from .factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def stripe_checkout(simulated_settings, webhook_settings):
    workspace = UserFactory().personal_workspace
    result = plan_checkout_start(
        workspace=workspace,
        plan_code="business",
        success_url="http://testserver/ok",
        cancel_url="http://testserver/ko",
    )
    return CheckoutSession.objects.get(checkout_reference=result["session_id"])


def _deliver(evt):
    row, _ = stripe_event_store(event=evt)
    return stripe_event_process(event=row)


def _session(checkout, **extra):
    session = se.checkout_session(
        workspace=checkout.workspace, session_id=checkout.checkout_reference, plan_code="business"
    )
    session.update(extra)
    return session


def test_stripe_checkout_start_records_a_pending_attempt(stripe_checkout):
    tx = PaymentTransaction.objects.get()
    assert (tx.gateway, tx.kind, tx.status, tx.reference) == (
        "stripe",
        "plan",
        "pending",
        stripe_checkout.checkout_reference,
    )
    assert (tx.amount_minor, tx.currency, tx.checkout_id) == (9900, "eur", stripe_checkout.pk)


def test_completed_session_marks_it_paid_with_the_amount_charged(stripe_checkout):
    _deliver(se.event("checkout.session.completed", _session(stripe_checkout, amount_total=8900)))
    tx = PaymentTransaction.objects.get()
    assert (tx.status, tx.amount_minor) == ("paid", 8900)
    assert tx.completed_at is not None


def test_async_failure_then_expiry_keep_the_first_outcome(stripe_checkout):
    _deliver(se.event("checkout.session.async_payment_failed", _session(stripe_checkout)))
    _deliver(se.event("checkout.session.expired", _session(stripe_checkout, status="expired")))
    assert PaymentTransaction.objects.get().status == "failed"


def test_expired_session_is_recorded(stripe_checkout):
    row = _deliver(se.event("checkout.session.expired", _session(stripe_checkout, status="expired")))
    assert row.status == "processed"
    assert PaymentTransaction.objects.get().status == "expired"
    stripe_checkout.refresh_from_db()
    assert stripe_checkout.status == "canceled"


def test_paid_after_expired_wins_and_paid_is_final(stripe_checkout):
    _deliver(se.event("checkout.session.expired", _session(stripe_checkout, status="expired")))
    _deliver(se.event("checkout.session.completed", _session(stripe_checkout)))
    _deliver(se.event("checkout.session.async_payment_failed", _session(stripe_checkout)))
    assert PaymentTransaction.objects.get().status == "paid"


def test_simulated_cancel_is_recorded(stripe_checkout):
    simulated_checkout_cancel(checkout=stripe_checkout)
    assert PaymentTransaction.objects.get().status == "canceled"


def test_a_paid_checkout_without_a_row_gets_one(stripe_checkout):
    PaymentTransaction.objects.all().delete()
    _deliver(se.event("checkout.session.completed", _session(stripe_checkout)))
    tx = PaymentTransaction.objects.get()
    assert (tx.status, tx.reference) == ("paid", stripe_checkout.checkout_reference)


# --- revenue ---------------------------------------------------------------------------------


def _tx(workspace, *, gateway, currency, amount, status="paid", at, kind="plan", plan_code="student"):
    checkout = CheckoutSession.objects.create(
        workspace=workspace,
        kind=kind,
        gateway=gateway,
        mode="payment",
        line_item={},
        metadata={"plan_code": plan_code} if kind == "plan" else {"pack": "p"},
        amount_minor=amount,
        currency=currency,
        success_url="http://testserver/ok",
        cancel_url="http://testserver/ko",
        checkout_reference=f"ref_{CheckoutSession.objects.count()}",
    )
    return PaymentTransaction.objects.create(
        workspace=workspace,
        gateway=gateway,
        kind=kind,
        reference=checkout.checkout_reference,
        checkout=checkout,
        amount_minor=amount,
        currency=currency,
        status=status,
        completed_at=at if status != "pending" else None,
    )


def test_revenue_counts_paid_dzd_and_eur_in_the_range_once(django_assert_num_queries):
    workspace = UserFactory().personal_workspace
    day = datetime(2026, 5, 10, tzinfo=UTC)
    _tx(workspace, gateway="chargily", currency="dzd", amount=159_000, at=day)
    _tx(workspace, gateway="chargily", currency="dzd", amount=250_000, at=day, kind="credit_pack")
    _tx(workspace, gateway="stripe", currency="eur", amount=9900, at=day, plan_code="business")
    _tx(workspace, gateway="chargily", currency="dzd", amount=159_000, at=day, status="failed")
    _tx(workspace, gateway="chargily", currency="dzd", amount=159_000, at=day, status="pending")
    _tx(workspace, gateway="chargily", currency="dzd", amount=159_000, at=day - timedelta(days=40))
    start, end = day - timedelta(days=1), day + timedelta(days=1)
    with django_assert_num_queries(1):
        revenue = payment_revenue_get(start=start, end=end)
    assert revenue == [("dzd", 409_000), ("eur", 9900)]
    assert payment_revenue_get(start=start, end=end, gateway="chargily", kind="plan") == [("dzd", 159_000)]
    assert payment_revenue_by_plan_get(start=start, end=end) == {
        "student": {"dzd": 159_000},
        "business": {"eur": 9900},
    }
    # What the dashboard does with it: DZD centimes → dinars → USD at the configured rate.
    usd = sum(minor_to_decimal(amount, cur) * settings.EXCHANGE_RATES_TO_USD[cur] for cur, amount in revenue)
    assert settings.EXCHANGE_RATES_TO_USD["dzd"] == Decimal("0.0074")
    assert usd == Decimal("4090") * Decimal("0.0074") + Decimal("99") * Decimal("1.08")


def test_chargily_payment_end_to_end_is_dzd_revenue(chargily_settings, client):
    user = UserFactory()
    client.force_login(user)
    with time_machine.travel(datetime(2026, 5, 10, 9, tzinfo=UTC), tick=False):
        body = client.post("/payment/subscribe/student", content_type="application/json").json()
        checkout = CheckoutSession.objects.get(checkout_reference=body["reference"])
        assert ce.post(client, *ce.signed(ce.checkout_event("checkout.paid", checkout))).status_code == 200
    day = datetime(2026, 5, 10, tzinfo=UTC)
    assert payment_revenue_get(start=day, end=day + timedelta(days=1)) == [("dzd", 159_000)]
