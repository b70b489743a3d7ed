"""Purchases and refunds driven through billing's real webhook with signed events."""

import json
import threading
import time

import pytest
from django.db import connection
from django.test import Client

from billing.gateways.stripe import webhook_signature_header
from billing.models import CheckoutFulfilment, CheckoutSession, StripeEvent
from credits.models import CreditAccount, LedgerEntry
from credits.tests.factories import UserFactory, seed_catalogue

from .services.test_credit_purchase_fulfil import paid_session
from .services.test_credit_refund_apply import refund_event

WEBHOOK = "/api/billing/webhook"


@pytest.fixture(autouse=True)
def webhook_secret(settings):
    """A real-looking secret: billing refuses the local default outside DEBUG."""
    settings.STRIPE_WEBHOOK_SECRET = "whsec_credits_tests_0123456789"


def _event(event_id, event_type, obj):
    return {
        "id": event_id,
        "object": "event",
        "type": event_type,
        "created": int(time.time()),
        "livemode": False,
        "data": {"object": obj},
    }


def deliver(client, event, secret):
    payload = json.dumps(event).encode()
    return client.post(
        WEBHOOK,
        data=payload,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=webhook_signature_header(payload=payload, secret=secret),
    )


@pytest.mark.django_db
def test_completed_duplicate_and_async_events_grant_the_pack_once(catalogue, workspace, settings):
    client = Client()
    session = paid_session(workspace, session_id="cs_test_webhook")
    completed = _event("evt_completed", "checkout.session.completed", session)

    assert deliver(client, completed, settings.STRIPE_WEBHOOK_SECRET).status_code == 200
    assert deliver(client, completed, settings.STRIPE_WEBHOOK_SECRET).status_code == 200
    async_ok = _event("evt_async", "checkout.session.async_payment_succeeded", session)
    assert deliver(client, async_ok, settings.STRIPE_WEBHOOK_SECRET).status_code == 200

    assert CreditAccount.objects.get(workspace=workspace).balance == 500
    assert LedgerEntry.objects.filter(kind="purchase").count() == 1


@pytest.mark.django_db
def test_badly_signed_event_grants_nothing(catalogue, workspace):
    response = deliver(
        Client(), _event("evt_x", "checkout.session.completed", paid_session(workspace)), "whsec_wrong"
    )

    assert response.status_code == 400
    assert not LedgerEntry.objects.exists()


@pytest.mark.django_db
def test_charge_refunded_event_reverses_the_pack(catalogue, workspace, settings):
    client = Client()
    deliver(
        client,
        _event("evt_c", "checkout.session.completed", paid_session(workspace)),
        settings.STRIPE_WEBHOOK_SECRET,
    )
    refund = refund_event(amount_refunded=3950)

    response = deliver(
        client, _event("evt_r", "charge.refunded", refund["data"]["object"]), settings.STRIPE_WEBHOOK_SECRET
    )

    assert response.status_code == 200
    assert CreditAccount.objects.get(workspace=workspace).balance == 250


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_deliveries_through_the_webhook_grant_once(settings):
    seed_catalogue()
    workspace = UserFactory().personal_workspace
    session = paid_session(workspace, session_id="cs_test_race")
    events = [
        _event("evt_race_a", "checkout.session.completed", session),
        _event("evt_race_b", "checkout.session.async_payment_succeeded", session),
    ]
    statuses = []
    barrier = threading.Barrier(10)

    def worker(n):
        try:
            barrier.wait()
            statuses.append(deliver(Client(), events[n % 2], settings.STRIPE_WEBHOOK_SECRET).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert statuses == [200] * 10
    assert CreditAccount.objects.get(workspace=workspace).balance == 500
    assert LedgerEntry.objects.filter(kind="purchase").count() == 1


@pytest.mark.django_db
def test_an_event_naming_another_workspace_grants_nothing_and_is_stored_failed(
    catalogue, workspace, settings
):
    """A signed event with A's session id whose metadata names workspace B (and 1 000 credits) used to
    grant B the credits and mark A's checkout complete. Fulfilment reads our checkout row: the
    event disagrees with it, so it is stored as failed with the reason and nothing happens."""
    other = UserFactory().personal_workspace
    session = paid_session(workspace, session_id="cs_test_a", pack="pack_500", credits="500")
    session["metadata"] = {
        "kind": "credit_pack",
        "pack": "pack_500",
        "credits": "1000",
        "workspace_id": str(other.pk),
    }
    session["client_reference_id"] = str(other.pk)
    forged = _event("evt_forged", "checkout.session.completed", session)

    response = deliver(Client(), forged, settings.STRIPE_WEBHOOK_SECRET)

    assert response.status_code == 200  # Stripe need not retry: a retry is rejected the same way
    assert response.json()["status"] == "failed"
    row = StripeEvent.objects.get(stripe_event_id="evt_forged")
    assert row.status == StripeEvent.Status.FAILED
    assert "workspace_id" in row.error and "our checkout says" in row.error
    assert not LedgerEntry.objects.exists()
    assert not CreditAccount.objects.filter(workspace__in=[workspace, other], balance__gt=0).exists()
    assert CheckoutSession.objects.get(checkout_reference="cs_test_a").status == "open"
    assert not CheckoutFulfilment.objects.exists()

    # The genuine event for A's checkout still fulfils it, from our row.
    genuine = _event(
        "evt_genuine", "checkout.session.completed", paid_session(workspace, session_id="cs_test_a")
    )
    assert deliver(Client(), genuine, settings.STRIPE_WEBHOOK_SECRET).json()["status"] == "processed"
    assert CreditAccount.objects.get(workspace=workspace).balance == 500
    assert not CreditAccount.objects.filter(workspace=other, balance__gt=0).exists()


@pytest.mark.django_db
def test_an_event_for_a_checkout_we_never_started_grants_nothing(catalogue, workspace, settings):
    session = paid_session(workspace, session_id="cs_test_unknown")
    CheckoutSession.objects.filter(checkout_reference="cs_test_unknown").delete()

    response = deliver(
        Client(), _event("evt_unknown", "checkout.session.completed", session), settings.STRIPE_WEBHOOK_SECRET
    )

    assert response.status_code == 200
    row = StripeEvent.objects.get(stripe_event_id="evt_unknown")
    assert row.status == StripeEvent.Status.FAILED and "not one we started" in row.error
    assert not LedgerEntry.objects.exists()


@pytest.mark.django_db
def test_the_pack_comes_from_our_checkout_when_the_event_omits_metadata(catalogue, workspace, settings):
    """Only the payment facts come from the event: metadata it leaves out is not needed."""
    session = paid_session(workspace, session_id="cs_test_bare", pack="pack_500", credits="500")
    session["metadata"] = {}
    session["client_reference_id"] = None

    response = deliver(
        Client(), _event("evt_bare", "checkout.session.completed", session), settings.STRIPE_WEBHOOK_SECRET
    )

    assert response.json()["status"] == "processed"
    assert CreditAccount.objects.get(workspace=workspace).balance == 500
