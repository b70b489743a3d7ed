"""Credit packs as the pages sell them: price per credit, and a "Best value" badge computed from
the prices (the lowest price per credit; no flag to keep in step)."""

from decimal import Decimal

import pytest

from credits.models import CreditPack
from credits.selectors import credit_pack_offer_list

from .factories import CreditPackFactory

pytestmark = pytest.mark.django_db


def _offers():
    return {offer.pack.code: offer for offer in credit_pack_offer_list()}


def test_best_value_is_the_lowest_price_per_credit(catalogue):
    offers = _offers()

    assert [code for code, offer in offers.items() if offer.is_best_value] == ["pack_1000"]
    assert offers["pack_100"].price_per_credit == Decimal("0.19")
    assert offers["pack_500"].price_per_credit == Decimal("0.158")
    assert offers["pack_1000"].price_per_credit == Decimal("0.139")


def test_the_badge_follows_a_price_change(catalogue):
    CreditPack.objects.filter(code="pack_500").update(price_minor=5900)  # 0.118 per credit

    assert [code for code, offer in _offers().items() if offer.is_best_value] == ["pack_500"]


def test_a_tie_goes_to_the_bigger_pack_and_one_badge_per_currency(catalogue):
    CreditPack.objects.filter(code="pack_500").update(price_minor=6950)  # 0.139, like pack_1000
    CreditPackFactory(code="usd_50", name="USD 50", credits=50, price_minor=1000, currency="usd")
    CreditPackFactory(code="usd_20", name="USD 20", credits=20, price_minor=500, currency="usd")

    offers = _offers()

    assert {code for code, offer in offers.items() if offer.is_best_value} == {"pack_1000", "usd_50"}


def test_dzd_prices_have_their_own_best_value(catalogue):
    CreditPack.objects.filter(code="pack_100").update(price_dzd_minor=250_000)  # 25 DZD per credit
    CreditPack.objects.filter(code="pack_500").update(price_dzd_minor=1_000_000)  # 20 DZD per credit

    offers = _offers()

    assert [code for code, offer in offers.items() if offer.is_best_value_dzd] == ["pack_500"]
    assert offers["pack_500"].price_dzd_per_credit == Decimal("20.00")
    assert offers["pack_1000"].price_dzd_per_credit is None
    assert offers["pack_1000"].is_best_value  # the EUR badge is unchanged
