"""``{% load money %}``: money on pages in the reader's language (``core.money.money_format``).

``{{ amount_minor|money:currency }}`` for integer minor units (``99,00 €`` in French, ``99.00 EUR``
in English); ``{{ value|money_major:currency }}`` for a ``Decimal`` of major units such as a price
per credit, which keeps a third decimal when it has a tenth of a cent (``0,158 €``).
"""

from decimal import Decimal

from django import template

from core.money import ZERO_DECIMAL_CURRENCIES, money_format, money_major_format

register = template.Library()


@register.filter
def money(amount_minor, currency: str) -> str:
    """Negative amounts (credits, refunds) keep their sign: ``-12,34 €``."""
    return money_format(int(amount_minor or 0), currency or "eur")


@register.filter
def money_major(value, currency: str) -> str:
    """A ``Decimal`` of major units: the currency's decimals, or three for a tenth of a cent."""
    if value in (None, ""):
        return ""
    amount = Decimal(value)
    currency = currency or "eur"
    places = 0 if currency.lower() in ZERO_DECIMAL_CURRENCIES else 2
    if amount != amount.quantize(Decimal(1).scaleb(-places)):
        places = 3
    return money_major_format(amount, currency, places=places)
