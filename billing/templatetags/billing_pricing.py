"""``{% pricing_summary as pricing %}``: the public plan ladders (``billing.selectors.pricing_get``)
for pages of layers that may not import billing — the landing page lives in ``core``."""

from django import template

from billing.selectors import Pricing, pricing_get

register = template.Library()


@register.simple_tag
def pricing_summary() -> Pricing:
    return pricing_get()
