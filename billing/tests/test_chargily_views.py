"""The simulated Chargily checkout page (DEBUG, no API key): same webhook code path."""

import pytest
from django.core import mail

from billing.models import ChargilyEvent, CheckoutSession, PaymentTransaction, Subscription

from .factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def started(chargily_settings, client):
    user = UserFactory()
    client.force_login(user)
    body = client.post("/payment/subscribe/student", content_type="application/json").json()
    return body, CheckoutSession.objects.get(checkout_reference=body["reference"])


def test_page_shows_the_dzd_amount(started, client):
    body, _ = started
    page = client.get(body["checkout_url"])
    assert page.status_code == 200
    assert b"1590 DZD" in page.content


def test_pay_posts_a_signed_event_and_returns_to_the_success_url(
    started, client, django_capture_on_commit_callbacks
):
    body, checkout = started
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(body["checkout_url"], {"action": "paid"})
    assert response.status_code == 302
    assert response["Location"] == f"http://testserver/billing/success/?session_id={body['reference']}"
    assert ChargilyEvent.objects.get().type == "checkout.paid"
    assert Subscription.objects.get(workspace=checkout.workspace).gateway == "chargily"
    assert PaymentTransaction.objects.get().status == "paid"
    assert len(mail.outbox) == 1
    again = client.post(body["checkout_url"], {"action": "paid"})  # back button: nothing new
    assert again.status_code == 302 and ChargilyEvent.objects.count() == 1


@pytest.mark.parametrize(("action", "status"), [("failed", "failed"), ("expired", "expired")])
def test_decline_or_expiry_returns_to_the_failure_url(action, status, started, client):
    body, checkout = started
    response = client.post(body["checkout_url"], {"action": action})
    assert response.status_code == 302 and response["Location"] == "http://testserver/billing/cancel/"
    assert PaymentTransaction.objects.get().status == status
    assert not Subscription.objects.exists()


def test_unknown_action_is_a_400(started, client):
    body, _ = started
    assert client.post(body["checkout_url"], {"action": "steal"}).status_code == 400


def test_page_is_gone_with_a_real_api_key_or_an_unknown_reference(started, client, chargily_settings):
    body, _ = started
    assert client.get("/payment/chargily/simulated-checkout/chg_unknown/").status_code == 404
    chargily_settings.CHARGILY_API_KEY = "live_pk_real"
    assert client.get(body["checkout_url"]).status_code == 404
