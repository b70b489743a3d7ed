"""What the credits page tells a buyer: each pack's price per credit, the computed "Best value"
badge, what a credit buys on each endpoint, and a receipt link on each purchase in the history."""

import re
from datetime import timedelta

import pytest
import responses
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billing.models import CheckoutSession
from billing.tests import chargily_events as ce
from credits.models import CreditPack, EndpointCost
from credits.selectors import credit_balance_get
from credits.services import credit_grant

from .factories import CreditPackFactory, EndpointCostFactory
from .services.test_credit_purchase_fulfil import paid_session
from .test_billing_webhook import _event, deliver

pytestmark = pytest.mark.django_db

CHARGILY_PAGE = "https://pay.chargily.dz/test/checkouts/01hj5mmk0ewa5e8pgzrgsxd8ka/pay"


@pytest.fixture
def page_client(client, user):
    client.force_login(user)
    return client


def _pack(html: str, code: str) -> str:
    return re.search(rf'<form method="post" action="/credits/buy/{code}/".*?</form>', html, re.S).group(0)


def _badged(html: str) -> list[str]:
    return re.findall(r'action="/credits/buy/([\w-]+)/" class="card credits-pack credits-pack--best"', html)


def _row(html: str, endpoint: str) -> str:
    return re.search(rf'<tr data-endpoint="{re.escape(endpoint)}">.*?</tr>', html, re.S).group(0)


def _cells(row: str) -> tuple[str, str]:
    price = re.search(r"<td [^>]*data-price>(.*?)</td>", row, re.S).group(1)
    buys = re.search(r"<td [^>]*data-buys>(.*?)</td>", row, re.S).group(1)
    return " ".join(price.split()), " ".join(buys.split())


def test_each_pack_shows_its_price_per_credit(catalogue, page_client):
    CreditPackFactory(code="pack_10e", name="Pack 10", credits=100, price_minor=1000, display_order=40)

    html = page_client.get("/credits/").content.decode()

    assert "0.10 EUR per credit" in _pack(html, "pack_10e")
    assert "0.19 EUR per credit" in _pack(html, "pack_100")
    assert "0.158 EUR per credit" in _pack(html, "pack_500")  # a tenth of a cent is kept
    assert "0.139 EUR per credit" in _pack(html, "pack_1000")


def test_the_cheapest_per_credit_gets_the_badge_not_the_flagged_pack(catalogue, page_client):
    # The seeded catalogue flags Pack 500; Pack 1000 is cheaper per credit (0.139 < 0.158).
    html = page_client.get("/credits/").content.decode()

    assert _badged(html) == ["pack_1000"]
    assert "Best value" in _pack(html, "pack_1000") and "Best value" not in _pack(html, "pack_500")

    CreditPack.objects.filter(code="pack_100").update(price_minor=1000)  # now 0.10 per credit

    assert _badged(page_client.get("/credits/").content.decode()) == ["pack_100"]


def test_a_tie_goes_to_the_larger_pack(catalogue, page_client):
    CreditPack.objects.filter(code="pack_100").update(price_minor=1390)  # 0.139, like Pack 1000

    assert _badged(page_client.get("/credits/").content.decode()) == ["pack_1000"]


def test_no_badge_when_only_one_pack_is_on_sale(catalogue, page_client):
    CreditPack.objects.exclude(code="pack_500").update(is_active=False)

    html = page_client.get("/credits/").content.decode()

    assert "0.158 EUR per credit" in _pack(html, "pack_500")
    assert _badged(html) == [] and "Best value" not in html


def test_dzd_prices_per_credit_and_their_own_badge(catalogue, page_client):
    CreditPack.objects.filter(code="pack_100").update(price_dzd_minor=250_000)  # 25 DZD per credit
    CreditPack.objects.filter(code="pack_500").update(price_dzd_minor=1_000_000)  # 20 DZD per credit

    html = page_client.get("/credits/").content.decode()

    assert "(25.00 DZD per credit)" in re.sub(r"</?span[^>]*>", "", _pack(html, "pack_100"))
    assert "Best value in DZD" in _pack(html, "pack_500")
    assert "Best value in DZD" not in _pack(html, "pack_100")


def test_what_a_credit_buys_lists_every_active_endpoint_with_its_price(catalogue, page_client):
    EndpointCostFactory(
        endpoint="/api/proxy/instantly/send",
        description="Instantly send, per email",
        per_call=1,
        unit=EndpointCost.Unit.EMAILS,
    )
    EndpointCostFactory(
        endpoint="/api/proxy/v1/chat/completions",
        description="Routed chat, per request",
        per_call=1,
        unit=EndpointCost.Unit.REQUESTS,
    )
    EndpointCostFactory(endpoint="/api/retired", description="Retired", per_call=3, is_active=False)
    EndpointCost.objects.filter(endpoint="/api/proxy/deepseek/chat").update(
        description="DeepSeek chat, per 1 000 tokens"
    )

    html = page_client.get("/credits/").content.decode()

    section = re.search(r'<h2 id="credit-buys-title">What a credit buys</h2>.*?</section>', html, re.S).group(
        0
    )
    assert "100 credits buy" in section
    deepseek = _row(section, "/api/proxy/deepseek/chat")
    assert "DeepSeek chat" in deepseek and "per 1 000 tokens" not in deepseek  # the name, not the price
    assert _cells(deepseek) == ("2 credits per 1,000 tokens", "≈ 50,000 tokens")
    assert _cells(_row(section, "/api/proxy/instantly/send")) == ("1 credit per email", "100 emails")
    assert _cells(_row(section, "/api/proxy/v1/chat/completions")) == ("1 credit per request", "100 requests")
    assert _cells(_row(section, "/api/ai/generate")) == ("5 credits per call", "20 calls")
    assert _cells(_row(section, "/api/ar/convert-2d-to-3d")) == ("15 credits per call", "6 calls")
    assert "/api/retired" not in section


def test_a_price_change_in_the_admin_shows_on_the_next_view(catalogue, page_client):
    page_client.get("/credits/")
    EndpointCost.objects.filter(endpoint="/api/ai/generate").update(per_call=4)

    row = _row(page_client.get("/credits/").content.decode(), "/api/ai/generate")

    assert _cells(row) == ("4 credits per call", "25 calls")


def test_a_per_call_fee_on_top_of_a_token_price_and_a_free_endpoint(catalogue, page_client):
    EndpointCostFactory(
        endpoint="/api/proxy/mixed", per_call=1, per_1000_units=2, unit=EndpointCost.Unit.TOKENS
    )
    EndpointCostFactory(endpoint="/api/free", per_call=0)

    html = page_client.get("/credits/").content.decode()

    assert _cells(_row(html, "/api/proxy/mixed")) == (
        "1 credit per call + 2 credits per 1,000 tokens",
        "≈ 49,500 tokens in one call",
    )
    assert _cells(_row(html, "/api/free")) == ("Free", "No limit")


def _receipt_links(html: str) -> list[tuple[str, str, str]]:
    history = re.search(r'aria-label="Credit history">.*?</table>', html, re.S).group(0)
    return re.findall(r'<a href="([^"]+)" data-receipt="(\w+)"[^>]*>([^<]+)</a>', history)


@responses.activate
def test_a_chargily_purchase_links_to_its_payment_page(catalogue, workspace, page_client, settings):
    settings.DEBUG = True
    settings.CHARGILY_API_KEY = "test_pk_chargily_tests"
    settings.CHARGILY_MODE = "test"
    settings.CHARGILY_API_BASE = ""
    settings.CHARGILY_SECRET_KEY = ce.SECRET
    settings.SITE_URL = "http://testserver"
    settings.CHECKOUT_REDIRECT_HOSTS = ["testserver"]
    CreditPack.objects.filter(code="pack_500").update(price_dzd_minor=250_000)
    responses.post(
        "https://pay.chargily.net/test/api/v2/checkouts",
        json={"id": "01hj5mmk0ewa5e8pgzrgsxd8ka", "entity": "checkout", "amount": 2500,
              "currency": "dzd", "status": "pending", "checkout_url": CHARGILY_PAGE},
    )  # fmt: skip

    response = page_client.post("/credits/buy/pack_500/", {"gateway": "chargily"})
    assert response["Location"] == CHARGILY_PAGE
    checkout = CheckoutSession.objects.get(workspace=workspace)
    assert ce.post(Client(), *ce.signed(ce.checkout_event("checkout.paid", checkout))).status_code == 200
    assert credit_balance_get(workspace=workspace).balance == 500

    html = page_client.get("/credits/").content.decode()

    assert _receipt_links(html) == [(CHARGILY_PAGE, "chargily", "Chargily payment page")]


def test_a_simulated_stripe_purchase_links_to_the_simulated_checkout(
    catalogue, workspace, page_client, settings
):
    settings.DEBUG = True
    settings.SIMULATED_CHECKOUT_ENABLED = True
    settings.STRIPE_SECRET_KEY = ""
    settings.SITE_URL = "http://testserver"
    settings.CHECKOUT_REDIRECT_HOSTS = ["testserver"]
    checkout_url = page_client.post("/credits/buy/pack_100/")["Location"]
    page_client.post(checkout_url.removeprefix("http://testserver"), {"action": "pay"})
    assert credit_balance_get(workspace=workspace).balance == 100

    links = _receipt_links(page_client.get("/credits/").content.decode())

    assert links == [(checkout_url, "stripe", "Receipt (simulated)")]
    receipt = page_client.get(checkout_url.removeprefix("http://testserver"))
    assert receipt.status_code == 200 and "This checkout is complete." in receipt.content.decode()

    settings.DEBUG = False  # the simulator is off: its page would 404, so no link
    assert _receipt_links(page_client.get("/credits/").content.decode()) == []


def test_a_stripe_purchase_has_no_link_until_its_receipt_url_is_stored(
    catalogue, workspace, page_client, settings
):
    """Stripe's checkout URL closes once paid, and ``receipt_url`` (on the charge) is not
    stored: no link rather than a dead one."""
    settings.STRIPE_WEBHOOK_SECRET = "whsec_credits_tests_0123456789"
    session = paid_session(workspace, session_id="cs_test_receipt")
    CheckoutSession.objects.filter(checkout_reference="cs_test_receipt").update(
        checkout_url="https://checkout.stripe.com/c/pay/cs_test_receipt"
    )
    event = _event("evt_receipt", "checkout.session.completed", session)
    assert deliver(Client(), event, settings.STRIPE_WEBHOOK_SECRET).status_code == 200

    html = page_client.get("/credits/").content.decode()

    assert "Purchase" in html and "+500" in html
    assert _receipt_links(html) == []


def test_another_workspace_s_checkout_is_never_linked(
    catalogue, workspace, other_workspace, page_client, settings
):
    """A purchase row is matched to its checkout inside the page's workspace only."""
    settings.STRIPE_WEBHOOK_SECRET = "whsec_credits_tests_0123456789"
    settings.DEBUG = True
    settings.SIMULATED_CHECKOUT_ENABLED = True
    settings.STRIPE_SECRET_KEY = ""
    session = paid_session(workspace, session_id="cs_test_own")
    assert (
        deliver(
            Client(), _event("evt_own", "checkout.session.completed", session), settings.STRIPE_WEBHOOK_SECRET
        ).status_code
        == 200
    )
    CheckoutSession.objects.filter(checkout_reference="cs_test_own").update(
        workspace=other_workspace, is_simulated=True, checkout_url="http://testserver/elsewhere/"
    )

    assert _receipt_links(page_client.get("/credits/").content.decode()) == []


def test_receipt_links_cost_the_same_queries_for_one_purchase_or_many(
    catalogue, workspace, page_client, settings
):
    settings.STRIPE_WEBHOOK_SECRET = "whsec_credits_tests_0123456789"

    def buy(n):
        session = paid_session(workspace, session_id=f"cs_test_many_{n}")
        event = _event(f"evt_many_{n}", "checkout.session.completed", session)
        assert deliver(Client(), event, settings.STRIPE_WEBHOOK_SECRET).status_code == 200

    def queries():
        with CaptureQueriesContext(connection) as captured:
            response = page_client.get("/credits/")
        return len(captured), response.content.decode().count("+500")

    buy(0)
    one = queries()
    for n in range(1, 5):
        buy(n)

    assert queries() == (one[0], 5) and one[1] == 1


def test_a_simulated_chargily_purchase_links_to_the_simulated_page(
    catalogue, workspace, page_client, settings
):
    settings.DEBUG = True
    settings.CHARGILY_API_KEY = ""
    settings.CHARGILY_SECRET_KEY = ce.SECRET
    settings.SITE_URL = "http://testserver"
    settings.CHECKOUT_REDIRECT_HOSTS = ["testserver"]
    CreditPack.objects.filter(code="pack_500").update(price_dzd_minor=250_000)
    checkout_url = page_client.post("/credits/buy/pack_500/", {"gateway": "chargily"})["Location"]
    page_client.post(checkout_url.removeprefix("http://testserver"), {"action": "paid"})
    assert credit_balance_get(workspace=workspace).balance == 500

    links = _receipt_links(page_client.get("/credits/").content.decode())

    assert links == [(checkout_url, "chargily", "Chargily payment page (simulated)")]


def test_the_page_lists_promotional_credits_with_their_expiry_before_paid_ones(
    page_client, workspace, admin_user
):
    credit_grant(workspace=workspace, amount=500, admin_user=admin_user, reason="Launch offer")
    credit_grant(
        workspace=workspace,
        amount=200,
        admin_user=admin_user,
        reason="Conference",
        expires_at=timezone.now() + timedelta(days=30),
    )

    html = page_client.get("/credits/").content.decode()

    table = re.search(r"<table[^>]*data-credit-lots.*?</table>", html, re.S).group(0)
    rows = re.findall(r"<tr data-lot.*?</tr>", table, re.S)
    # Spent first comes first: the expiring grant, then the one that never expires.
    assert "Conference" in rows[0] and "200 / 200" in rows[0] and "<time" in rows[0]
    assert "Launch offer" in rows[1] and "Never" in rows[1]
