"""The pricing page's reads: one ladder per currency sorted by price, one highlighted plan, a
comparison table, and the page that shows them with the credit packs."""

import re

import pytest

from billing.models import Gateway, Plan
from billing.selectors import plan_comparison_get, plan_list_public, pricing_ladder_list
from credits.tests.factories import seed_catalogue

pytestmark = pytest.mark.django_db


def _ladders():
    return {ladder.currency: ladder for ladder in pricing_ladder_list(plans=list(plan_list_public()))}


def test_each_currency_has_its_own_ladder_sorted_by_price():
    Plan.objects.filter(code="pro").update(price_dzd_minor=790_000)  # 7 900 DZD
    Plan.objects.filter(code="scale").update(is_public=False)

    ladders = pricing_ladder_list(plans=list(plan_list_public()))

    assert [ladder.currency for ladder in ladders] == ["eur", "dzd"]  # the default currency first
    eur, dzd = ladders
    assert eur.gateway == Gateway.STRIPE and dzd.gateway == Gateway.CHARGILY
    # The catalogue's sort_order puts Pro (49 €) before Discovery (29 €); a ladder goes by price.
    assert [tier.plan.code for tier in eur.tiers] == ["free", "student", "discovery", "pro", "business"]
    assert [tier.price_minor for tier in eur.tiers] == [0, 1590, 2900, 4900, 9900]
    assert {tier.currency for tier in eur.tiers} == {"eur"}
    # DZD: only the plans Chargily sells, at their DZD price.
    assert [(tier.plan.code, tier.price_minor) for tier in dzd.tiers] == [
        ("student", 159_000),
        ("pro", 790_000),
    ]
    assert {tier.currency for tier in dzd.tiers} == {"dzd"}


def test_a_plan_in_another_currency_gets_its_own_ladder():
    Plan.objects.create(code="usd-team", name="Team (USD)", price_minor=5000, currency="usd")

    ladders = _ladders()

    assert set(ladders) == {"eur", "usd", "dzd"}
    assert [tier.plan.code for tier in ladders["usd"].tiers] == ["usd-team"]
    assert "usd-team" not in [tier.plan.code for tier in ladders["eur"].tiers]


def test_one_plan_is_highlighted_the_middle_paid_one():
    ladders = _ladders()

    eur = ladders["eur"]
    highlighted = [tier.plan.code for tier in eur.tiers if tier.is_highlighted]
    # Paid EUR plans by price: student, discovery, pro, business, scale -> the middle is Pro.
    assert highlighted == ["pro"] and eur.highlighted.plan.code == "pro"
    # One paid plan leaves nothing to recommend over: the DZD ladder (Student only) has none.
    assert ladders["dzd"].highlighted is None


def test_with_an_even_number_of_paid_plans_the_upper_middle_is_highlighted():
    Plan.objects.filter(code="scale").update(is_public=False)  # student, discovery, pro, business

    assert _ladders()["eur"].highlighted.plan.code == "pro"
    Plan.objects.filter(code="business").update(is_active=False)  # student, discovery, pro

    assert _ladders()["eur"].highlighted.plan.code == "discovery"


def test_comparison_lists_quotas_rate_limit_and_providers_per_plan():
    plans = list(Plan.objects.filter(code__in=["pro", "business"]).order_by("price_minor"))

    comparison = plan_comparison_get(plans=plans)

    rows = {row.label: row for row in comparison.rows}
    assert [plan.code for plan in comparison.plans] == ["pro", "business"]
    tokens = rows["LLM tokens"]
    assert tokens.kind == "quota" and [cell.limit for cell in tokens.cells] == [20_000_000, 10_000_000]
    assert [cell.limit for cell in rows["Requests (messages)"].cells] == [2_000, None]  # None: unlimited
    assert rows["Rate limit"].cells == [60, 120]
    # What explains Pro's bigger token quota at half the price: another provider.
    assert rows["Providers"].cells == [["OpenRouter"], ["DeepSeek"]]


def test_pricing_page_shows_both_ladders_the_table_and_the_packs(client, django_assert_max_num_queries):
    seed_catalogue()

    with django_assert_max_num_queries(5):  # plans, quotas, packs, endpoint costs (+ session-less visitor)
        response = client.get("/pricing/")

    html = response.content.decode()
    assert response.status_code == 200
    eur = re.search(r'data-ladder="eur".*?</section>', html, re.S).group(0)
    dzd = re.search(r'data-ladder="dzd".*?</section>', html, re.S).group(0)
    assert re.findall(r'data-plan="([\w-]+)"', eur) == [
        "free",
        "student",
        "discovery",
        "pro",
        "business",
        "scale",
    ]
    assert re.findall(r'data-plan="([\w-]+)"', dzd) == ["student"]
    assert "1,590.00 DZD" in dzd and "EUR" not in dzd
    assert eur.count("per month") == 6 and "49.00 EUR" in eur
    assert html.count("data-highlighted") == 1
    assert re.search(r'data-plan="pro" data-highlighted>\s*<p class="pricing-tier__flag">Recommended', eur)

    table = re.search(r'<table class="pricing-compare">.*?</table>', html, re.S).group(0)
    assert re.findall(r'data-plan-column="([\w-]+)"', table) == [
        "free",
        "student",
        "discovery",
        "pro",
        "business",
        "scale",
    ]
    assert "20,000,000 per month" in table and "OpenRouter" in table and "DeepSeek" in table

    packs = re.search(r'aria-labelledby="packs-title".*?</section>', html, re.S).group(0)
    best = re.search(r'class="card credits-pack credits-pack--best" data-pack="([\w-]+)"', packs).group(1)
    assert best == "pack_1000" and packs.count("Best value") == 1
    assert "0.139 EUR per credit" in packs and "0.19 EUR per credit" in packs


def test_pricing_page_says_what_a_credit_buys_from_the_endpoint_costs(client):
    seed_catalogue()

    html = client.get("/pricing/").content.decode()

    table = re.search(r'<table class="credit-buys.*?</table>', html, re.S).group(0)
    row = re.search(r'data-endpoint="/api/proxy/deepseek/chat".*?</tr>', table, re.S).group(0)
    # 2 credits per 1 000 tokens: 100 credits buy about 50 000 tokens.
    assert "2 credits per 1,000 tokens" in row and "50,000 tokens" in row
    assert "/api/proxy/deepseek/chat</code>" not in table  # the compact table leaves the paths out
