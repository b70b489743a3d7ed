"""``{% new_key_dialog %}``: the key a form just created, shown once in a dialog with Copy."""

from django import template

from ..key_flash import key_flash_pop

register = template.Library()


@register.inclusion_tag("accounts/_new_key_dialog.html", takes_context=True)
def new_key_dialog(context) -> dict:
    return {"new_key": key_flash_pop(context.get("request"))}
