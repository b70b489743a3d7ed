"""``{% credit_pack_offers as offers %}``: the packs on sale with their price per credit and the
computed "Best value" badge, for pages of apps that sit below credits (billing's pricing page)."""

from django import template

from credits.selectors import credit_pack_offer_list, endpoint_price_list

register = template.Library()


@register.simple_tag
def credit_pack_offers():
    return credit_pack_offer_list()


@register.simple_tag
def credit_endpoint_prices(budget: int = 100):
    """The "what a credit buys" rows, for the pricing page's compact table."""
    return endpoint_price_list(budget=budget)
