"""``{{ amount_minor|money:currency }}`` on the credits pages: money in the reader's language
(``core.money.money_format``: ``19.00 EUR`` in English, ``19,00 €`` in French)."""

from django import template

from core.money import money_format

register = template.Library()


@register.filter
def money(amount_minor, currency: str) -> str:
    """``1900|money:"eur"`` → ``19.00 EUR`` (minor units in, never floats)."""
    return money_format(int(amount_minor), currency)
