"""The credits page sells packs in DZD with Chargily Pay next to the Stripe button."""

import re

import pytest

from billing.models import CheckoutSession
from credits.models import CreditPack
from credits.selectors import credit_balance_get

pytestmark = pytest.mark.django_db


@pytest.fixture
def page_client(client, user):
    client.force_login(user)
    return client


@pytest.fixture
def chargily_simulated(settings):
    settings.DEBUG = True
    settings.CHARGILY_API_KEY = ""
    settings.CHARGILY_SECRET_KEY = "chargily_credits_page_tests_secret"
    settings.SITE_URL = "http://testserver"
    settings.CHECKOUT_REDIRECT_HOSTS = ["testserver"]
    return settings


@pytest.fixture
def dzd_pack(catalogue):
    CreditPack.objects.filter(code="pack_500").update(price_dzd_minor=250_000)  # 2 500 DZD
    return CreditPack.objects.get(code="pack_500")


def _pack_form(html: str, code: str) -> str:
    return re.search(rf'<form method="post" action="/credits/buy/{code}/".*?</form>', html, re.S).group(0)


def test_page_shows_the_dzd_price_and_chargily_button_only_for_packs_priced_in_dzd(dzd_pack, page_client):
    html = page_client.get("/credits/").content.decode()

    with_dzd = _pack_form(html, "pack_500")
    assert "or 2,500 DZD" in with_dzd
    assert 'name="gateway" value="chargily"' in with_dzd and "Pay with Chargily (DZD)" in with_dzd
    assert "Buy Pack 500" in with_dzd  # the Stripe button stays
    others = [code for code in CreditPack.objects.exclude(pk=dzd_pack.pk).values_list("code", flat=True)]
    assert others
    for code in others:
        form = _pack_form(html, code)
        assert "DZD" not in form and "chargily" not in form


def test_chargily_button_opens_a_dzd_checkout_whose_payment_grants_the_pack(
    dzd_pack, workspace, page_client, chargily_simulated
):
    response = page_client.post(f"/credits/buy/{dzd_pack.code}/", {"gateway": "chargily"})

    assert response.status_code == 302
    checkout = CheckoutSession.objects.get(workspace=workspace)
    assert (checkout.gateway, checkout.currency, checkout.amount_minor) == ("chargily", "dzd", 250_000)
    assert response["Location"] == checkout.checkout_url
    assert "/payment/chargily/simulated-checkout/" in checkout.checkout_url
    paid = page_client.post(checkout.checkout_url.removeprefix("http://testserver"), {"action": "paid"})
    assert paid["Location"] == "http://testserver/credits/?purchase=success"
    assert credit_balance_get(workspace=workspace).balance == dzd_pack.credits


def test_stripe_button_still_opens_a_stripe_checkout(dzd_pack, workspace, page_client, chargily_simulated):
    chargily_simulated.SIMULATED_CHECKOUT_ENABLED = True
    chargily_simulated.STRIPE_SECRET_KEY = ""

    page_client.post(f"/credits/buy/{dzd_pack.code}/")

    checkout = CheckoutSession.objects.get(workspace=workspace)
    assert (checkout.gateway, checkout.currency) == ("stripe", dzd_pack.currency)


@pytest.mark.parametrize(
    ("code", "gateway", "message"),
    [("pack_100", "chargily", "has no DZD price"), ("pack_500", "paypal", "Unknown payment gateway")],
)
def test_refused_gateway_comes_back_with_a_message(
    dzd_pack, page_client, chargily_simulated, code, gateway, message
):
    response = page_client.post(f"/credits/buy/{code}/", {"gateway": gateway}, follow=True)

    assert response.redirect_chain[-1][0] == "/credits/"
    assert message in response.content.decode()
    assert not CheckoutSession.objects.exists()
