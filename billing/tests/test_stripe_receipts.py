"""Receipts of Stripe payments (the charge's ``receipt_url``), whichever order Stripe's events
arrive in, and the off-session PaymentIntent fulfilled by its own event."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from accounts.tests.factories import UserFactory
from billing.gateways.stripe import webhook_signature_header
from billing.gateways.stripe_payments import off_session_checkout_record
from billing.models import CheckoutSession, PaymentTransaction, StripeEvent

from .stripe_events import WEBHOOK_SECRET, checkout_row, event

RECEIPT_URL = "https://pay.stripe.com/receipts/payment/CAcaFwoVYWNjdF8xReceiptTest"


@pytest.fixture
def workspace(db):
    return UserFactory().personal_workspace


def deliver(evt: dict):
    payload = json.dumps(evt).encode()
    return Client().post(
        "/api/billing/webhook",
        data=payload,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=webhook_signature_header(payload=payload, secret=WEBHOOK_SECRET),
    )


def _paid_checkout(workspace, *, session_id: str, payment_intent: str) -> dict:
    metadata = {"kind": "other_kind", "workspace_id": str(workspace.pk)}
    checkout_row(
        workspace=workspace,
        session_id=session_id,
        kind="other_kind",
        mode="payment",
        metadata=metadata,
        amount_minor=1900,
    )
    PaymentTransaction.objects.create(
        workspace=workspace,
        gateway="stripe",
        kind="other",
        reference=session_id,
        checkout=CheckoutSession.objects.get(checkout_reference=session_id),
        amount_minor=1900,
        currency="eur",
    )
    return {
        "id": session_id,
        "object": "checkout.session",
        "mode": "payment",
        "payment_status": "paid",
        "payment_intent": payment_intent,
        "amount_total": 1900,
        "currency": "eur",
        "client_reference_id": str(workspace.pk),
        "metadata": metadata,
    }


def _charge(payment_intent: str, *, receipt_url: str = RECEIPT_URL) -> dict:
    return {
        "id": f"ch_{payment_intent}",
        "object": "charge",
        "amount": 1900,
        "currency": "eur",
        "paid": True,
        "status": "succeeded",
        "payment_intent": payment_intent,
        "receipt_url": receipt_url,
    }


@pytest.fixture(autouse=True)
def _handler(webhook_settings):
    """A checkout kind of a test app (billing never imports the apps that register theirs)."""
    from billing import registry  # noqa: PLC0415 (the registry is module state the test extends)

    registry.checkout_handler_register("other_kind", lambda *, session, event_id: None)
    yield
    registry._checkout_handlers.pop("other_kind", None)


@pytest.mark.django_db
def test_the_charge_event_after_the_payment_stores_its_receipt(workspace):
    session = _paid_checkout(workspace, session_id="cs_test_receipt_1", payment_intent="pi_receipt_1")
    assert deliver(event("checkout.session.completed", session)).status_code == 200

    assert deliver(event("charge.succeeded", _charge("pi_receipt_1"))).status_code == 200

    payment = PaymentTransaction.objects.get(reference="cs_test_receipt_1")
    assert (payment.status, payment.gateway_payment_id, payment.receipt_url) == (
        "paid",
        "pi_receipt_1",
        RECEIPT_URL,
    )
    assert StripeEvent.objects.get(type="charge.succeeded").status == "processed"


@pytest.mark.django_db
def test_a_charge_event_before_the_payment_is_applied_once_the_payment_is_ours(workspace):
    session = _paid_checkout(workspace, session_id="cs_test_receipt_2", payment_intent="pi_receipt_2")

    assert deliver(event("charge.succeeded", _charge("pi_receipt_2"))).status_code == 200
    assert PaymentTransaction.objects.get(reference="cs_test_receipt_2").receipt_url == ""
    assert deliver(event("checkout.session.completed", session)).status_code == 200

    assert PaymentTransaction.objects.get(reference="cs_test_receipt_2").receipt_url == RECEIPT_URL


@pytest.mark.django_db
def test_charges_that_are_not_ours_or_not_https_are_not_kept(workspace):
    session = _paid_checkout(workspace, session_id="cs_test_receipt_3", payment_intent="pi_receipt_3")
    deliver(event("checkout.session.completed", session))

    deliver(event("charge.updated", _charge("pi_someone_else")))
    deliver(event("charge.updated", _charge("pi_receipt_3", receipt_url="javascript:alert(1)")))

    assert PaymentTransaction.objects.get(reference="cs_test_receipt_3").receipt_url == ""
    assert set(StripeEvent.objects.filter(type="charge.updated").values_list("status", flat=True)) == {
        "ignored"
    }


@pytest.mark.django_db
def test_an_off_session_payment_is_fulfilled_by_its_own_event_when_the_charging_worker_died(workspace):
    """The worker got Stripe's ``succeeded`` but died before fulfilling: the event does it, once."""
    fulfilled = []
    from billing import registry  # noqa: PLC0415 (the registry is module state the test extends)

    registry.checkout_handler_register("other_kind", lambda *, session, event_id: fulfilled.append(session))
    checkout = off_session_checkout_record(
        workspace=workspace,
        kind="other_kind",
        amount_minor=1900,
        currency="eur",
        metadata={"note": "top-up"},
        description="Auto top-up",
        idempotency_key="test-off-session-1",
        is_simulated=False,
    )
    intent = {
        "id": "pi_off_1",
        "object": "payment_intent",
        "status": "succeeded",
        "amount": 1900,
        "amount_received": 1900,
        "currency": "eur",
        "customer": "cus_1",
        "metadata": dict(checkout.metadata),
        "latest_charge": "ch_off_1",
    }

    assert deliver(event("payment_intent.succeeded", intent)).status_code == 200
    assert deliver(event("payment_intent.succeeded", intent)).status_code == 200
    assert deliver(event("charge.succeeded", _charge("pi_off_1"))).status_code == 200

    assert len(fulfilled) == 1
    assert fulfilled[0]["id"] == checkout.checkout_reference
    assert fulfilled[0]["metadata"]["note"] == "top-up"
    payment = PaymentTransaction.objects.get(reference=checkout.checkout_reference)
    assert (payment.status, payment.gateway_payment_id, payment.receipt_url) == (
        "paid",
        "pi_off_1",
        RECEIPT_URL,
    )


@pytest.mark.django_db
def test_a_payment_intent_naming_an_off_session_payment_we_never_started_fulfils_nothing(workspace):
    intent = {
        "id": "pi_forged",
        "object": "payment_intent",
        "status": "succeeded",
        "amount_received": 1900,
        "currency": "eur",
        "metadata": {
            "checkout_reference": "ots_0000",
            "kind": "other_kind",
            "workspace_id": str(workspace.pk),
        },
    }

    deliver(event("payment_intent.succeeded", intent))

    assert StripeEvent.objects.get(type="payment_intent.succeeded").status == "failed"
    assert not PaymentTransaction.objects.exists()
