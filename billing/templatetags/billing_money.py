"""``{{ amount_minor|money:currency }}``: integer minor units as money in the reader's language
(``core.money.money_format``: ``12.50 EUR`` in English, ``12,50 €`` in French).

``{{ value|money_exact:currency }}``: a ``Decimal`` of major units that may carry up to six
decimals (a spend total in micros): every significant decimal, at least the currency's own."""

from decimal import Decimal

from django import template

from core.money import ZERO_DECIMAL_CURRENCIES, money_format, money_major_format

register = template.Library()


@register.filter
def money(amount_minor, currency: str) -> str:
    """Negative amounts (credits) keep their sign: ``-12.34 EUR``."""
    return money_format(int(amount_minor or 0), currency or "eur")


@register.filter
def money_exact(value, currency: str) -> str:
    """``0.075 EUR`` / ``0,075 €``: no rounding of a sub-cent charge to ``0.08``."""
    if value in (None, ""):
        return ""
    amount = Decimal(value).normalize()
    currency = currency or "eur"
    minimum = 0 if currency.lower() in ZERO_DECIMAL_CURRENCIES else 2
    places = max(minimum, -amount.as_tuple().exponent)
    return money_major_format(amount, currency, places=places)
