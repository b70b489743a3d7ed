from django import template

from core.money import format_minor

register = template.Library()


@register.filter
def money(amount_minor, currency: str) -> str:
    """``1900|money:"eur"`` → ``19.00 EUR`` (minor units in, never floats)."""
    return format_minor(int(amount_minor), currency)
