"""``{% load dashboards_activity %}``: what a call was charged, in words, for the Activity pages."""

from __future__ import annotations

from django import template
from django.contrib.humanize.templatetags.humanize import intcomma

from dashboards.selectors.activity import call_charge

register = template.Library()


@register.filter
def activity_charge(call) -> str:
    """``3 credits``, ``1,234 tokens of the plan``, ``own provider key`` or ``not charged``."""
    charge = call_charge(
        status_code=call.status_code,
        credits_charged=call.credits_charged,
        total_tokens=call.total_tokens,
        emails=call.emails,
        key_source=call.key_source,
    )
    if charge.kind == "credits":
        return f"{intcomma(charge.amount)} credit{'s' if charge.amount != 1 else ''}"
    if charge.kind == "plan":
        unit = charge.unit[:-1] if charge.amount == 1 else charge.unit
        return f"{intcomma(charge.amount)} {unit} of the plan"
    if charge.kind == "own_key":
        return "own provider key"
    return "not charged"
