"""The pricing page's credit packs as a visitor reads them: the price per credit of each pack and
one "Best value" badge, on the pack that is cheapest per credit (computed, not the stored flag)."""

import re

import pytest

from credits.models import CreditPack
from credits.tests.factories import CreditPackFactory, seed_catalogue

pytestmark = pytest.mark.django_db


def _packs(client) -> str:
    html = client.get("/pricing/").content.decode()
    return re.search(r'aria-labelledby="packs-title".*?</section>', html, re.S).group(0)


def _pack(packs: str, code: str) -> str:
    return re.search(rf'data-pack="{code}">.*?</article>', packs, re.S).group(0)


def _badged(packs: str) -> list[str]:
    return re.findall(r'class="card credits-pack credits-pack--best" data-pack="([\w-]+)"', packs)


def test_a_visitor_reads_each_pack_s_price_per_credit(client):
    seed_catalogue()
    CreditPackFactory(code="pack_10e", name="Pack 10", credits=100, price_minor=1000, display_order=40)

    packs = _packs(client)

    assert "100</strong> credits for 10.00 EUR" in _pack(packs, "pack_10e")
    assert "0.10 EUR per credit" in _pack(packs, "pack_10e")
    assert "0.19 EUR per credit" in _pack(packs, "pack_100")
    assert "0.158 EUR per credit" in _pack(packs, "pack_500")


def test_the_badge_is_on_the_cheapest_per_credit_not_on_the_flagged_pack(client):
    seed_catalogue()  # flags Pack 500, which is not the cheapest per credit

    assert _badged(_packs(client)) == ["pack_1000"]

    CreditPackFactory(code="pack_10e", name="Pack 10", credits=100, price_minor=1000, display_order=40)
    packs = _packs(client)

    assert _badged(packs) == ["pack_10e"] and packs.count("Best value") == 1


def test_a_single_pack_has_no_badge(client):
    CreditPackFactory(code="pack_solo", name="Solo", credits=100, price_minor=1000)
    CreditPack.objects.exclude(code="pack_solo").update(is_active=False)  # the seeded packs

    packs = _packs(client)

    assert "0.10 EUR per credit" in packs
    assert _badged(packs) == [] and "Best value" not in packs


def test_dzd_packs_show_their_dzd_price_per_credit(client):
    seed_catalogue()
    CreditPack.objects.filter(code="pack_100").update(price_dzd_minor=250_000)  # 2 500 DZD
    CreditPack.objects.filter(code="pack_1000").update(price_dzd_minor=1_990_000)  # 19 900 DZD

    packs = _packs(client)

    dzd_100 = re.sub(r"</?span[^>]*>", "", _pack(packs, "pack_100"))
    dzd_1000 = re.sub(r"</?span[^>]*>", "", _pack(packs, "pack_1000"))
    assert "or 2,500.00 DZD (25.00 DZD per credit)" in dzd_100
    assert "or 19,900.00 DZD (19.90 DZD per credit)" in dzd_1000
    assert "Best value in DZD" in dzd_1000 and "Best value in DZD" not in dzd_100
