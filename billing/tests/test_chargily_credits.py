"""``POST /api/credits/buy`` with ``"gateway": "chargily"``: a DZD checkout whose payment
grants the pack once, through credits' registered ``credit_pack`` handler."""

import pytest

from billing.models import CheckoutSession, PaymentTransaction
from credits.models import CreditPack
from credits.selectors import credit_balance_get

from . import chargily_events as ce
from .factories import UserFactory

pytestmark = pytest.mark.django_db

BUY = "/api/credits/buy"


@pytest.fixture
def pack():
    return CreditPack.objects.create(
        code="pack_dz", name="Pack DZ", credits=500, price_minor=2900, price_dzd_minor=250_000
    )


def _buy(api_client, pack_code, gateway="chargily"):
    return api_client.post(
        BUY,
        {
            "packId": pack_code,
            "successUrl": "http://testserver/credits/?ok={CHECKOUT_SESSION_ID}",
            "cancelUrl": "http://testserver/credits/",
            "gateway": gateway,
        },
        format="json",
    )


def test_buy_with_chargily_then_paid_grants_the_pack_once(chargily_settings, api_client, client, pack):
    user = UserFactory()
    workspace = user.personal_workspace
    api_client.force_authenticate(user)
    response = _buy(api_client, pack.code)
    assert response.status_code == 200, response.content
    reference = response.json()["sessionId"]
    assert response.json()["checkoutUrl"].endswith(f"/payment/chargily/simulated-checkout/{reference}/")
    checkout = CheckoutSession.objects.get(checkout_reference=reference)
    assert (checkout.gateway, checkout.amount_minor, checkout.currency) == ("chargily", 250_000, "dzd")
    payload, signature = ce.signed(ce.checkout_event("checkout.paid", checkout))
    assert ce.post(client, payload, signature).status_code == 200
    assert ce.post(client, *ce.signed(ce.checkout_event("checkout.paid", checkout))).status_code == 200
    assert credit_balance_get(workspace=workspace).balance == 500
    tx = PaymentTransaction.objects.get()
    assert (tx.kind, tx.status, tx.amount_minor, tx.currency) == ("credit_pack", "paid", 250_000, "dzd")


def test_pack_without_dzd_price_or_unknown_gateway_is_a_400(chargily_settings, api_client, pack):
    CreditPack.objects.create(code="eur_only", name="EUR only", credits=100, price_minor=1900)
    api_client.force_authenticate(UserFactory())
    response = _buy(api_client, "eur_only")
    assert response.status_code == 400 and response.json()["error"]["param"] == "gateway"
    response = _buy(api_client, pack.code, gateway="paypal")
    assert response.status_code == 400 and response.json()["error"]["param"] == "gateway"
    assert not PaymentTransaction.objects.exists()
