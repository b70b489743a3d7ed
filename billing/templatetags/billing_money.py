"""``{{ amount_minor|money:currency }}``: integer minor units shown as money (``core.money``)."""

from django import template

from core.money import format_minor

register = template.Library()


@register.filter
def money(amount_minor, currency: str) -> str:
    """Negative amounts (credits) keep their sign: ``-12.34 EUR``."""
    amount = int(amount_minor or 0)
    text = format_minor(abs(amount), currency or "eur")
    return f"-{text}" if amount < 0 else text
