"""Chargily endpoints: the signed webhook, subscribe, subscription status."""

import json

import pytest
from django.core import mail

from billing.gateways import chargily as chargily_client
from billing.gateways.chargily import LOCAL_SECRET_KEY
from billing.models import ChargilyEvent, CheckoutSession, PaymentTransaction, Subscription
from core.time import isoformat_z

from . import chargily_events as ce
from .factories import SubscriptionFactory, UserFactory

pytestmark = pytest.mark.django_db

SUBSCRIBE = "/payment/subscribe/student"
STATUS = "/payment/subscription/status"


def _code(response) -> str:
    return response.json()["error"]["code"]


@pytest.fixture
def checkout(chargily_settings, api_client):
    user = UserFactory()
    api_client.force_authenticate(user)
    response = api_client.post(SUBSCRIBE, {}, format="json")
    assert response.status_code == 200, response.content
    return CheckoutSession.objects.get(checkout_reference=response.json()["reference"])


# --- webhook ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case",
    ["missing", "empty", "wrong_secret", "body_altered", "garbage", "timestamped_stripe_style"],
)
def test_signature_matrix_answers_400_and_stores_nothing(case, checkout, client):
    payload, signature = ce.signed(ce.checkout_event("checkout.paid", checkout))
    if case == "missing":
        signature = None
    elif case == "empty":
        signature = ""
    elif case == "wrong_secret":
        payload, signature = ce.signed(json.loads(payload), secret="test_sk_other")
    elif case == "body_altered":
        payload = payload.replace(b'"amount": 1590', b'"amount": 1591')
    elif case == "garbage":
        signature = "zz" * 32
    elif case == "timestamped_stripe_style":
        signature = f"t=1,v1={signature}"
    response = ce.post(client, payload, signature)
    assert response.status_code == 400
    assert _code(response) == "invalid_signature"
    assert set(response.json()["error"]) >= {"message", "type", "code", "param"}
    assert not ChargilyEvent.objects.exists()
    assert not Subscription.objects.exists()


def test_valid_signature_fulfils_and_a_duplicate_does_nothing(
    checkout, client, django_capture_on_commit_callbacks
):
    payload, signature = ce.signed(ce.checkout_event("checkout.paid", checkout))
    with django_capture_on_commit_callbacks(execute=True):
        first = ce.post(client, payload, signature)
    assert first.status_code == 200
    assert first.json() == {"received": True, "status": "processed", "duplicate": False}
    with django_capture_on_commit_callbacks(execute=True):
        again = ce.post(client, payload, signature)
    assert again.status_code == 200 and again.json() == {"received": True, "duplicate": True}
    assert ChargilyEvent.objects.get().attempts == 1
    assert Subscription.objects.filter(workspace=checkout.workspace).count() == 1
    assert len(mail.outbox) == 1
    assert PaymentTransaction.objects.get().status == "paid"


@pytest.mark.parametrize(
    "body", [b"not json", b"[1, 2]", b'{"type": "checkout.paid"}', b'{"id": 5, "type": "x"}']
)
def test_signed_garbage_is_a_400(body, chargily_settings, client):
    signature = chargily_client.signature_compute(payload=body, secret=ce.SECRET)
    response = ce.post(client, body, signature)
    assert response.status_code == 400 and _code(response) == "invalid_signature"


def test_unknown_event_type_is_stored_and_ignored(chargily_settings, client):
    event = {"id": "evt_other_1", "entity": "event", "type": "customer.updated", "data": {}}
    response = ce.post(client, *ce.signed(event))
    assert response.status_code == 200 and response.json()["status"] == "ignored"
    assert ChargilyEvent.objects.get().status == "ignored"


def test_processing_failure_is_a_503_and_the_event_stays_for_a_retry(checkout, client):
    payload, signature = ce.signed(ce.checkout_event("checkout.paid", checkout, amount=10))
    response = ce.post(client, payload, signature)
    assert response.status_code == 503 and _code(response) == "service_unavailable"
    assert ChargilyEvent.objects.get().status == "failed"
    again = ce.post(client, payload, signature)  # a retry runs it again (and fails again)
    assert again.status_code == 503 and ChargilyEvent.objects.get().attempts == 2


def test_local_default_secret_is_refused_outside_debug(chargily_settings, client):
    chargily_settings.DEBUG = False
    chargily_settings.CHARGILY_SECRET_KEY = LOCAL_SECRET_KEY
    event = {"id": "evt_forged", "type": "checkout.paid", "data": {}}
    response = ce.post(client, *ce.signed(event, secret=LOCAL_SECRET_KEY))
    assert response.status_code == 503
    assert not ChargilyEvent.objects.exists()


# --- subscribe -------------------------------------------------------------------------------


def test_subscribe_answers_checkout_url_and_amount(chargily_settings, api_client):
    user = UserFactory()
    api_client.force_authenticate(user)
    response = api_client.post(SUBSCRIBE, format="json")
    assert response.status_code == 200
    body = response.json()
    assert body["amount"] == 1590 and body["currency"] == "dzd"
    assert (
        body["checkout_url"] == f"http://testserver/payment/chargily/simulated-checkout/{body['reference']}/"
    )
    checkout = CheckoutSession.objects.get(checkout_reference=body["reference"])
    assert checkout.success_url == f"http://testserver/billing/success/?session_id={body['reference']}"
    assert checkout.cancel_url == "http://testserver/billing/cancel/"


def test_subscribe_needs_authentication(chargily_settings, api_client):
    response = api_client.post(SUBSCRIBE, format="json")
    assert response.status_code == 401 and _code(response) == "invalid_api_key"


@pytest.mark.parametrize(
    ("path", "data", "status", "param"),
    [
        ("/payment/subscribe/pro", {}, 400, "plan_code"),
        ("/payment/subscribe/nope", {}, 400, "plan_code"),
        (SUBSCRIBE, {"successUrl": "https://evil.example/"}, 400, "successUrl"),
        (SUBSCRIBE, {"failureUrl": "javascript:alert(1)"}, 400, "cancelUrl"),
        (SUBSCRIBE, {"successUrl": ["x"]}, 400, "successUrl"),
    ],
)
def test_subscribe_bad_input_is_a_json_error(path, data, status, param, chargily_settings, api_client):
    api_client.force_authenticate(UserFactory())
    response = api_client.post(path, data, format="json")
    assert response.status_code == status
    assert response.json()["error"]["param"] == param
    assert not PaymentTransaction.objects.exists()


def test_subscribe_while_on_stripe_is_a_conflict(chargily_settings, api_client):
    sub = SubscriptionFactory()
    api_client.force_authenticate(sub.workspace.personal_owner)
    response = api_client.post(SUBSCRIBE, format="json")
    assert response.status_code == 409 and _code(response) == "conflict"


# --- status ----------------------------------------------------------------------------------


def test_status_of_a_free_workspace(chargily_settings, api_client, django_assert_max_num_queries):
    api_client.force_authenticate(UserFactory())
    api_client.get(STATUS)  # warms the in-process catalogue and the workspace's plan entry
    with django_assert_max_num_queries(1):  # the workspace and the caller's role in it
        response = api_client.get(STATUS)
    assert response.json() == {"tier": "free", "is_active": False, "expires_at": None, "gateway": None}


def test_status_after_a_chargily_payment(checkout, api_client, client, django_assert_max_num_queries):
    ce.post(client, *ce.signed(ce.checkout_event("checkout.paid", checkout)))
    api_client.force_authenticate(checkout.created_by)
    api_client.get(STATUS)  # warms the in-process catalogue and the workspace's plan entry
    with django_assert_max_num_queries(2):  # the workspace and the caller's role; the subscription
        body = api_client.get(STATUS).json()
    sub = Subscription.objects.get(workspace=checkout.workspace)
    assert body == {
        "tier": "student",
        "is_active": True,
        "expires_at": isoformat_z(sub.current_period_end),
        "gateway": "chargily",
    }


def test_status_for_a_stripe_subscriber_has_no_expiry(chargily_settings, api_client):
    sub = SubscriptionFactory()
    api_client.force_authenticate(sub.workspace.personal_owner)
    assert api_client.get(STATUS).json() == {
        "tier": "business",
        "is_active": True,
        "expires_at": None,
        "gateway": "stripe",
    }
