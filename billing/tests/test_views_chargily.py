"""The pricing page offers Chargily Pay (DZD) for plans with a DZD price, through the same
upgrade door as Stripe (``gateway=chargily`` → ``plan_chargily_checkout_start``)."""

import re

import pytest

from billing.models import CheckoutSession
from billing.selectors import subscription_status_get

from .factories import UserFactory

pytestmark = pytest.mark.django_db


def _plan_card(html: str, code: str, *, ladder: str = "eur") -> str:
    """One plan's card in one currency's ladder ('' when that ladder does not sell it)."""
    section = re.search(rf'data-ladder="{ladder}".*?</section>', html, re.S).group(0)
    card = re.search(rf'data-plan="{code}".*?</article>', section, re.S)
    return card.group(0) if card else ""


def test_pricing_shows_dzd_price_and_chargily_button_for_plans_priced_in_dzd(client):
    visitor = client.get("/pricing/").content.decode()
    student_dzd = _plan_card(visitor, "student", ladder="dzd")
    assert "1,590.00 DZD" in student_dzd and "per month" in student_dzd
    assert "DZD" not in _plan_card(visitor, "student")  # the EUR ladder shows euros only
    assert "Pay with Chargily" not in visitor  # visitors sign up first

    client.force_login(UserFactory())
    html = client.get("/pricing/").content.decode()
    student = _plan_card(html, "student", ladder="dzd")
    assert 'name="gateway" value="chargily"' in student and "Pay with Chargily (DZD)" in student
    assert "Choose Student" in _plan_card(html, "student")
    assert _plan_card(html, "pro", ladder="dzd") == ""  # no DZD price, not in the DZD ladder
    pro = _plan_card(html, "pro")
    assert "DZD" not in pro and "chargily" not in pro


def test_chargily_button_opens_a_dzd_checkout_and_payment_activates_the_plan(client, chargily_settings):
    user = UserFactory()
    workspace = user.personal_workspace
    client.force_login(user)

    response = client.post("/billing/upgrade/student/", {"gateway": "chargily"})

    assert response.status_code == 302
    checkout = CheckoutSession.objects.get(workspace=workspace)
    assert (checkout.gateway, checkout.currency, checkout.amount_minor) == ("chargily", "dzd", 159_000)
    assert checkout.metadata["plan_code"] == "student"
    assert response["Location"] == checkout.checkout_url
    assert "/payment/chargily/simulated-checkout/" in checkout.checkout_url
    paid = client.post(checkout.checkout_url.removeprefix("http://testserver"), {"action": "paid"})
    assert paid.status_code == 302
    status = subscription_status_get(workspace=workspace)
    assert (status["tier"], status["is_active"], status["gateway"]) == ("student", True, "chargily")

    html = client.get("/pricing/").content.decode()
    student = _plan_card(html, "student", ladder="dzd")
    assert "Current plan" in student and "Renew with Chargily (DZD)" in student
    assert "Manage billing" not in student + _plan_card(html, "student")  # no Stripe customer behind it
    pro = _plan_card(client.get("/pricing/").content.decode(), "pro")
    assert "Switch in billing portal" not in pro and "Available when your current period ends" in pro

    renew = client.post("/billing/upgrade/student/", {"gateway": "chargily"})  # pay the next period early
    assert renew.status_code == 302 and "/payment/chargily/simulated-checkout/" in renew["Location"]
    assert CheckoutSession.objects.filter(workspace=workspace, gateway="chargily").count() == 2


def test_chargily_for_a_plan_without_dzd_price_comes_back_with_a_message(client, chargily_settings):
    client.force_login(UserFactory())

    response = client.post("/billing/upgrade/pro/", {"gateway": "chargily"}, follow=True)

    assert response.redirect_chain[-1][0].endswith("/pricing/")
    assert "has no DZD price" in response.content.decode()
    assert not CheckoutSession.objects.exists()
